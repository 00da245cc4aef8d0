"""The motion gate on real parts: a worker process (router + edge detector) on tansu with
``AUTOSTEER_MOTION_GATE=on``; a quiet stretch of a real vtest frame (sensor noise only)
gets ``reused`` results carrying the detected frame's seq and boxes, and motion is
detected fresh."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from autosteer.processors.decode import encode_jpeg
from autosteer.settings import Settings
from autosteer.topics.names import TopicNames
from autosteer.topics.records import Detection, FrameRecord, now_ms
from helpers import Worker, consume, produce

pytestmark = pytest.mark.integration


def test_a_quiet_stretch_gets_reused_results_and_motion_is_detected(
        make_settings: Callable[..., Settings], start_worker: Callable[[Settings], Worker],
        frames: list[np.ndarray]) -> None:
    s = make_settings(roles="router,edge", offload_policy="edge-only", motion_gate="on",
                      gate_check_rate=0.0, shadow_rate=0.0)
    names = TopicNames(s.topic_prefix)
    start_worker(s)
    rng = np.random.default_rng(1)
    still = frames[3].astype(np.float32)
    quiet = [np.clip(still + rng.normal(0, 3, still.shape), 0, 255).astype(np.uint8)
             for _ in range(8)]
    clip = quiet + [frames[9], frames[9]]  # then the scene changes
    t0 = now_ms()
    produce(s, names.frames, [(b"cam1", FrameRecord(
        camera="cam1", seq=i, ts_ms=t0 + i * 100, jpeg=encode_jpeg(f, s.jpeg_quality)).dumps())
        for i, f in enumerate(clip)])
    got: dict[int, Detection] = {}

    def done(msgs: list) -> bool:
        d = Detection.parse(msgs[-1].value())
        assert msgs[-1].key() == f"{d.camera}:{d.seq}".encode()
        got[d.seq] = d
        return len(got) == len(clip)

    consume(s, names.detections, until=done, timeout_s=120, what="a result for every frame")
    statuses = [(got[i].status, got[i].reused_from) for i in range(len(clip))]
    assert statuses == [("ok", None)] + [("reused", 0)] * 7 + [("ok", None), ("reused", 8)]
    assert got[0].boxes and all(got[i].boxes == got[0].boxes for i in range(1, 8))
    assert all(got[i].tier == "edge" and got[i].model_id == got[0].model_id for i in range(8))
    assert all(got[i].latency.infer_ms == 0 for i in range(1, 8))
