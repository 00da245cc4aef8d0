"""The testbed (infra/testbed.py): edge and cloud as network namespaces with CPU budgets,
a user-space WAN link between them, the broker on the cloud side. Needs root."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from autosteer.errors import InfraError
from autosteer.infra.process import free_port
from autosteer.infra.testbed import HostSpec, LinkSpec, Testbed
from autosteer.processors.decode import encode_jpeg
from autosteer.settings import Settings
from autosteer.topics.names import TopicNames
from autosteer.topics.records import Detection, FrameRecord, now_ms
from helpers import consume, produce, unique

NOT_ROOT = ("the testbed needs root (network namespaces, tun devices, cgroups); without it "
            "the router's emulated link (AUTOSTEER_LINK_*) is the fallback")
pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason=NOT_ROOT)]

DELAY_MS = 20.0


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    tb = Testbed(unique("t")[:8], state_dir=tmp_path_factory.mktemp("testbed"),
                 edge=HostSpec("0", 0.5), link=LinkSpec(50, DELAY_MS))
    tb.up()
    try:
        yield tb
    finally:
        tb.down()


def leftovers(tb: Testbed, pids: list[int]) -> list[str]:
    out = [f"netns {tb.ns(h)}" for h in ("edge", "cloud") if Path(f"/run/netns/{tb.ns(h)}").exists()]
    out += [str(tb.cgroup(c, h)) for c in ("cpu", "cpuset", "cpuacct") for h in ("edge", "cloud")
            if tb.cgroup(c, h).exists()]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    out += [f"device {tb.tun(h)}" for h in ("edge", "cloud") if tb.tun(h) in links]
    out += [f"pid {p}" for p in pids if Path(f"/proc/{p}").exists()
            and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    return out


def test_up_is_idempotent(testbed: Testbed) -> None:
    before = testbed.status()["processes"]
    testbed.up()
    assert testbed.status()["processes"] == before


def test_rtt_is_twice_the_delay(testbed: Testbed) -> None:
    rtt = testbed.ping(count=20, interval_s=0.05)
    assert rtt["loss"] == 0
    assert 2 * DELAY_MS <= rtt["min"] and rtt["avg"] <= 2 * DELAY_MS + 3, rtt
    testbed.set(link=LinkSpec(50, 5 * DELAY_MS))  # at run time
    try:
        assert 10 * DELAY_MS <= testbed.ping(count=5)["avg"] <= 10 * DELAY_MS + 3
    finally:
        testbed.set(link=LinkSpec(50, DELAY_MS))


def test_cpu_budget_is_enforced(testbed: Testbed) -> None:
    loops = [subprocess.Popen([*testbed.wrap("edge"), "python3", "-c", "while True: pass"])
             for _ in range(2)]
    try:
        def share() -> float:
            u0, t0 = testbed.cpu_usage_s("edge"), time.monotonic()
            time.sleep(2.0)
            return (testbed.cpu_usage_s("edge") - u0) / (time.monotonic() - t0)

        time.sleep(0.3)
        assert 0.4 <= share() <= 0.6  # two busy loops, half a core
        testbed.set(edge_cpu=0.25)
        assert 0.17 <= share() <= 0.33
    finally:
        testbed.set(edge_cpu=0.5)
        for p in loops:
            p.kill()
            p.wait(5)


def test_frames_cross_the_link_and_down_leaves_nothing(
        testbed: Testbed, model_dir: Path, tmp_path: Path, frames: list[np.ndarray]) -> None:
    """router (edge host) -> cloud detector (cloud host) on the cloud's tansu; then
    ``down`` removes the namespaces, cgroups, tun devices and every process."""
    s = Settings(kafka_bootstrap=testbed.bootstrap, topic_prefix=unique("t"), partitions=2,
                 state_dir=tmp_path, model_dir=model_dir, store="embedded",
                 chdb_path=tmp_path / "chdb", offload_policy="cloud-only", max_frame_age_ms=0,
                 intra_op_threads=1)
    workers = [testbed.worker(s.model_copy(update={"roles": role, "web_port": free_port(),
                                                   "node": f"{host}-{role}"}),
                              host, tmp_path / f"{role}.log", loglevel="warning")
               for host, role in (("edge", "router"), ("cloud", "cloud"))]
    names = TopicNames(s.topic_prefix)
    workers[0].start(90)
    workers[1].start(90, create_topics=False)
    jpeg = encode_jpeg(frames[0], 85)
    n = 10
    got: dict[int, Detection] = {}

    def done(msgs: list) -> bool:
        d = Detection.parse(msgs[-1].value())
        if d.camera == "camT":
            got[d.seq] = d
        return len(got) >= n

    with testbed.netns("edge"):  # the camera is on the edge host
        for i in range(n):
            produce(s, names.frames, [(b"camT", FrameRecord(
                camera="camT", seq=i, ts_ms=now_ms(), jpeg=jpeg).dumps())])
            time.sleep(0.1)
        consume(s, names.detections, until=done, timeout_s=120, what=f"{n} detections")
    assert {d.tier for d in got.values()} == {"cloud"}
    # router -> cloud detector crosses the link once at least (20 ms one way)
    assert min(d.latency.link_ms for d in got.values()) >= DELAY_MS
    pids = [w.pid for w in workers if w.pid] + [
        p["pid"] for p in testbed._load()["procs"].values()]
    assert all(w.running() for w in workers)
    testbed.down()  # with the workers still running on the hosts
    for w in workers:
        w.proc.wait(10)  # reap them: down killed them
    assert leftovers(testbed, pids) == []
    assert not testbed.state_file.exists()


def test_without_root_the_error_names_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(InfraError, match="AUTOSTEER_LINK_MBPS"):
        Testbed("x").up()
