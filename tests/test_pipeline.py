"""The whole pipeline on real parts: a worker process on tansu, real detectors, the
telemetry sink into chdb or the ClickHouse server, and the CLI from a second process."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from autosteer.infra.clickhouse import LocalClickHouse
from autosteer.infra.rtsp import RtspTestServer
from autosteer.processors.decode import decode_jpeg, encode_jpeg
from autosteer.processors.detector import load_detector
from autosteer.settings import Settings
from autosteer.telemetry.store import ServerStore
from autosteer.topics.names import TopicNames
from autosteer.topics.records import CameraCommand, DeadLetter, Detection, FrameRecord, now_ms
from boxes import same_boxes
from helpers import Worker, cli, consume, produce, unique, wait_for

pytestmark = pytest.mark.integration


def frame_message(camera: str, seq: int, jpeg: bytes) -> tuple[bytes, bytes]:
    return camera.encode(), FrameRecord(camera=camera, seq=seq, ts_ms=now_ms(), jpeg=jpeg).dumps()


def detections(s: Settings, want: set[tuple[str, int]], timeout_s: float = 90) -> dict:
    """Detections for ``want`` (camera, seq) keys, de-duplicated by their idempotent key."""
    got: dict[tuple[str, int], Detection] = {}

    def done(msgs: list) -> bool:
        for m in msgs[-1:]:
            d = Detection.parse(m.value())
            assert m.key() == f"{d.camera}:{d.seq}".encode()
            got[(d.camera, d.seq)] = d
        return want <= set(got)

    consume(s, TopicNames(s.topic_prefix).detections, until=done, timeout_s=timeout_s,
            what=f"detections for {sorted(want)}")
    return got


def test_frames_get_detections_equal_to_the_bare_detector_and_bad_input_is_dead_lettered(
        make_settings: Callable[..., Settings], start_worker: Callable[[Settings], Worker],
        frames: list[np.ndarray], model_dir: Path) -> None:
    s = make_settings(store="embedded", edge_ratio=0.5)
    names = TopicNames(s.topic_prefix)
    start_worker(s)
    jpegs = [encode_jpeg(f, 90) for f in frames[:6]]
    good_before = [frame_message("camA", i, j) for i, j in enumerate(jpegs[:4])]
    bad = [
        (b"camA", b"this is not json"),
        frame_message("camA", 100, b"\xff\xd8\xff\xe0 truncated jpeg"),
        (b"camB", FrameRecord(camera="camA", seq=101, ts_ms=1, jpeg=jpegs[0]).dumps()),
    ]
    good_after = [frame_message("camA", 4 + i, j) for i, j in enumerate(jpegs[4:])]
    produce(s, names.frames, good_before + bad + good_after)

    got = detections(s, {("camA", i) for i in range(6)})
    assert {d.tier for d in got.values()} == {"edge", "cloud"}, "edge_ratio 0.5 uses both tiers"
    bare = {tier: load_detector(model_dir, getattr(s, f"{tier}_model"),
                                score_threshold=s.score_threshold) for tier in ("edge", "cloud")}
    for seq, jpeg in enumerate(jpegs):
        d = got[("camA", seq)]
        expected = bare[d.tier].detect([decode_jpeg(jpeg)])[0]
        assert d.model_id == bare[d.tier].model_id and d.model_version == bare[d.tier].version
        problem = same_boxes(expected, d.boxes, threshold=s.score_threshold)
        assert problem is None, f"frame {seq} ({d.tier}): {problem}"
        assert d.latency.total_ms >= d.latency.infer_ms > 0
        assert (d.width, d.height) == (768, 576)
    assert sum(d.counts().get("person", 0) for d in got.values()) >= 6

    letters = consume(s, names.deadletter, until=lambda m: len(m) >= 3, timeout_s=30,
                      what="three dead letters")
    dls = [DeadLetter.parse(m.value()) for m in letters]
    reasons = " | ".join(d.reason for d in dls)
    assert "Invalid JSON" in reasons
    assert "corrupt JPEG" in reasons
    assert "key" in reasons and "camera" in reasons
    assert {d.source_topic for d in dls} <= {names.frames, names.frames_edge, names.frames_cloud}
    assert b"this is not json" in [d.payload for d in dls]

    # telemetry lands in the embedded store; `autosteer sql` asks it from another process
    query = f"SELECT count() AS n FROM autosteer.telemetry_frames WHERE node = '{s.node}'"

    def counted() -> int:
        res = cli(s, "sql", query, "--format", "json")
        assert res.returncode == 0, res.stderr
        return int(json.loads(res.stdout.splitlines()[0])["n"])

    wait_for(lambda: counted() >= 6, 30, "telemetry rows in chdb")
    res = cli(s, "sql", "DROP TABLE autosteer.telemetry_frames")
    assert res.returncode != 0 and "only SELECT" in res.stderr


def worker_status(s: Settings) -> str:
    """The worker's ``/status`` (cameras, routed and detected counts, agents), for a failure
    message."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{s.web_port}/status", timeout=10) as r:
            return r.read().decode()
    except OSError as exc:
        return f"unavailable ({exc})"


def test_rtsp_camera_through_the_pipeline_into_the_clickhouse_server(
        make_settings: Callable[..., Settings], start_worker: Callable[[Settings], Worker],
        clickhouse: LocalClickHouse, rtsp: RtspTestServer, tmp_path: Path) -> None:
    database = unique("db")
    # a fixed split (one frame in four to the edge): this test is about the way into
    # ClickHouse, so both tiers must have rows whatever a controller would decide
    s = make_settings(store="server", clickhouse_url=clickhouse.url(database),
                      offload_policy="fixed", edge_ratio=0.25)
    names = TopicNames(s.topic_prefix)
    worker = start_worker(s)
    cam = unique("cam")
    produce(s, names.cameras, [(cam.encode(), CameraCommand(
        action="start", camera=cam, url=rtsp.url, max_fps=5).dumps())])
    try:
        got = detections(s, {(cam, i) for i in range(8)}, timeout_s=120)
    except AssertionError as exc:  # say where the frames stopped: camera, router or detector
        raise AssertionError(f"{exc}\nworker /status: {worker_status(s)}\nworker log:\n"
                             + "\n".join([ln for ln in worker.log().splitlines()
                                       if " DEBUG " not in ln][-40:])) from None
    produce(s, names.cameras, [(cam.encode(), CameraCommand(action="stop", camera=cam).dumps())])
    assert sum(d.counts().get("person", 0) for d in got.values()) >= 8

    store = ServerStore(s.clickhouse_url)
    try:
        sql = (f"SELECT tier, count(), quantile(0.95)(total_ms) FROM {database}.telemetry_frames "
               f"WHERE camera = '{cam}' GROUP BY tier ORDER BY tier")
        # both tiers: the edge's rows may land later (its model loads on its first frame)
        rows = wait_for(lambda: (lambda r: r if sum(x[1] for x in r) >= 8
                                 and {x[0] for x in r} == {"cloud", "edge"} else None)(
            store.query(sql, readonly=True)[1]), 60,
            "telemetry rows of both tiers in the ClickHouse server")
        assert all(r[2] > 0 for r in rows)
    finally:
        store.close()
    store = ServerStore(s.clickhouse_url)
    try:  # windows close 1 s after they end; heartbeats every 5 s
        windows = wait_for(lambda: store.query(
            f"SELECT sum(frames), sum(detections), count() FROM {database}.telemetry_windows "
            f"WHERE camera = '{cam}'")[1][0] if store.query(
            f"SELECT count() FROM {database}.telemetry_windows WHERE camera = '{cam}'")[1][0][0]
            else None, 40, "a closed telemetry window")
        assert windows[0] >= 1 and windows[1] >= windows[0]
        _, p95 = store.query(f"SELECT tier, p95_ms FROM {database}.p95_latency_per_tier_minute")
        assert p95 and all(r[1] > 0 for r in p95)
        nodes = wait_for(lambda: store.query(
            f"SELECT count(), max(rss_bytes), max(detected_edge + detected_cloud) "
            f"FROM {database}.telemetry_nodes WHERE node = '{s.node}'")[1][0] if store.query(
            f"SELECT count() FROM {database}.telemetry_nodes WHERE node = '{s.node}'")[1][0][0]
            else None, 30, "a node heartbeat")
        assert nodes[1] > 50_000_000
    finally:
        store.close()
    res = cli(s, "sql", f"SELECT count() FROM {database}.telemetry_frames", "--format", "csv")
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.splitlines()[1]) >= 8

    def shares() -> list[float] | None:  # a minute may hold one tier only; one holds both
        res = cli(s, "sql", "--view", "cloud_share_per_minute", "--format", "json")
        assert res.returncode == 0, res.stderr
        got = [json.loads(line)["offload_ratio"] for line in res.stdout.splitlines() if line]
        return got if any(0.0 < x < 1.0 for x in got) else None

    wait_for(shares, 40, "a minute of cloud_share_per_minute with both tiers")
    out = tmp_path / "report.html"
    res = cli(s, "report", "--minutes", "10", "--out", str(out))
    assert res.returncode == 0, res.stderr
    page = out.read_text()
    assert page.count("<polyline") >= 3 and "edge p95" in page
