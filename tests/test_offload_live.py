"""The offload controller in the real pipeline: an emulated WAN link between router and
cloud (both ways), decisions published, link time measured on the detections."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest
from autosteer.processors.decode import encode_jpeg
from autosteer.settings import Settings
from autosteer.topics.names import TopicNames
from autosteer.topics.records import (
    Detection,
    FrameRecord,
    OffloadDecision,
    TelemetryRecord,
    now_ms,
)
from helpers import Worker, consume, produce

pytestmark = pytest.mark.integration


def test_controller_routes_publishes_decisions_and_sees_the_link(
        make_settings: Callable[..., Settings], start_worker: Callable[[Settings], Worker],
        frames: list[np.ndarray]) -> None:
    s = make_settings(offload_policy="controller", link_mbps=50, link_delay_ms=40,
                      roles="router,edge,cloud")
    names = TopicNames(s.topic_prefix)
    start_worker(s)
    jpeg = encode_jpeg(frames[0], 85)
    n = 60
    for i in range(n):  # 10 fps for 6 s
        produce(s, names.frames, [(b"camC", FrameRecord(camera="camC", seq=i, ts_ms=now_ms(),
                                                         jpeg=jpeg).dumps())])
        time.sleep(0.1)
    got: dict[int, Detection] = {}

    def done(msgs: list) -> bool:
        d = Detection.parse(msgs[-1].value())
        got[d.seq] = d
        return len(got) >= n

    consume(s, names.detections, until=done, timeout_s=90, what=f"{n} detections")
    cloud = [d for d in got.values() if d.tier == "cloud"]
    assert cloud, "the controller explores the cloud tier"
    assert min(d.latency.link_ms for d in cloud) >= 40, "the emulated link delays cloud frames"
    assert min(d.latency.return_ms for d in cloud) >= 40, "and their results on the way back"
    assert all(d.latency.total_ms >= d.latency.link_ms + d.latency.return_ms for d in cloud)
    assert all(d.latency.return_ms == 0 for d in got.values() if d.tier == "edge")
    # the link time lands in telemetry too (root-cause analysis blames a slow link on it)
    rows = [TelemetryRecord.parse(m.value()) for m in consume(
        s, names.telemetry, until=lambda m: sum(
            TelemetryRecord.parse(x.value()).tier == "cloud" for x in m) >= len(cloud),
        timeout_s=30, what="the cloud frames' telemetry rows")]
    assert min(r.link_ms for r in rows if r.tier == "cloud") >= 40
    decisions = [OffloadDecision.parse(m.value()) for m in consume(
        s, names.offload_decisions, until=lambda m: len(m) >= 3, timeout_s=30,
        what="three offload decisions")]
    assert all(d.policy == "controller" and 0.0 <= d.offload_ratio <= 1.0 for d in decisions)
    assert all(d.reason for d in decisions)
