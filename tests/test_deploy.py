"""`autosteer deploy examples/video.yaml` runs the pipeline end to end from the spec."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from autosteer.infra.clickhouse import LocalClickHouse
from autosteer.infra.rtsp import RtspTestServer
from autosteer.rootcause.actions import ControlAction
from autosteer.settings import Settings
from autosteer.topics.names import TopicNames
from autosteer.topics.records import Detection
from helpers import cli, consume, produce, unique

pytestmark = pytest.mark.integration


def two_free_ports() -> int:
    """A port p with p + 1 free too (deploy gives its workers consecutive web ports)."""
    import socket

    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two consecutive free ports")
ROOT = Path(__file__).resolve().parent.parent


def test_deploy_the_video_example_from_its_spec(
        make_settings: Callable[..., Settings], clickhouse: LocalClickHouse,
        rtsp: RtspTestServer, tmp_path: Path) -> None:
    spec = tmp_path / "video.yaml"
    spec.write_text((ROOT / "examples" / "video.yaml").read_text()
                    .replace("rtsp://127.0.0.1:18554/cam1", rtsp.url))
    s = make_settings(store="server", clickhouse_url=clickhouse.url(unique("db")),
                      offload_policy="fixed", web_port=two_free_ports())
    # mid-run, a root cause blames edge-1: deploy re-plans around it
    action = ControlAction(anomaly_id="edge-1//edge/infer_ms@0", kind="replan",
                           cause_type="node_overload", dimension="node", value="edge-1",
                           metric="infer_ms", reason="node=edge-1 infer_ms 40 -> 160")
    timer = threading.Timer(12.0, produce, (s, TopicNames(s.topic_prefix).control_actions,
                                            [(b"edge-1", action.dumps())]))
    timer.start()
    try:
        res = cli(s, "deploy", str(spec), "--seconds", "25", "--log-dir",
                  str(tmp_path / "logs"), timeout_s=180)
    finally:
        timer.cancel()
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "edge-1" in res.stdout and "cloud-1" in res.stdout
    # the example has no spare core: the re-plan finds no placement and keeps this one
    assert "root cause edge-1//edge/infer_ms@0: node=edge-1" in res.stdout, res.stdout[-3000:]
    assert "around NodeOverloaded(node='edge-1', capacity=0.5)" in res.stdout
    dets: dict[int, Detection] = {}

    def enough(msgs: list) -> bool:
        d = Detection.parse(msgs[-1].value())
        dets[d.seq] = d
        return len(dets) >= 20 and {x.node for x in dets.values()} == {"edge-1", "cloud-1"}

    consume(s, TopicNames(s.topic_prefix).detections, until=enough, timeout_s=30,
            what="detections from both planned nodes")
    assert {d.camera for d in dets.values()} == {"cam1"}
    assert sum(d.counts().get("person", 0) for d in dets.values()) >= 20
