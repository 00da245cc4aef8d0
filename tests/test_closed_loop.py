"""The closed loop on real parts: the scene darkens -> drift on the shadow pairs ->
retrain request -> a new, validated version on models.updates -> canary -> promoted ->
the detections carry the new version; no restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from autosteer.processors.decode import encode_jpeg
from autosteer.retrain.records import ModelUpdate, RetrainRequest
from autosteer.settings import Settings
from autosteer.topics.names import TopicNames
from autosteer.topics.records import Detection, FrameRecord, now_ms
from helpers import Worker, consume, produce, wait_for_swap

pytestmark = pytest.mark.integration


def test_drift_retrain_canary_promote(
        make_settings: Callable[..., Settings], start_worker: Callable[[Settings], Worker],
        frames: list[np.ndarray], tmp_path: Path, measurements: dict) -> None:
    s = make_settings(edge_ratio=1.0, shadow_rate=0.5, drift_warmup=10, retrain_collect_s=8,
                      canary_share=0.5, registry_dir=tmp_path / "registry",
                      retrain_requantize=True, roles="router,edge,cloud,retrain")
    names = TopicNames(s.topic_prefix)
    worker = start_worker(s)
    bright = [encode_jpeg(f, 85) for f in frames]
    dark = [encode_jpeg((f * 0.08).astype(np.uint8), 85) for f in frames]  # night
    stop = threading.Event()
    drift_at: list[int] = []

    def camera() -> None:  # 5 fps: 15 s of daylight, then dusk
        seq = 0
        while not stop.is_set():
            if seq == 75:
                drift_at.append(now_ms())
            jpeg = (bright if seq < 75 else dark)[seq % len(frames)]
            produce(s, names.frames, [(b"camD", FrameRecord(
                camera="camD", seq=seq, ts_ms=now_ms(), jpeg=jpeg).dumps())])
            seq += 1
            time.sleep(0.2)

    feeder = threading.Thread(target=camera)
    feeder.start()
    try:
        reqs = [RetrainRequest.parse(m.value()) for m in consume(
            s, names.retrain_requests, until=lambda m: len(m) >= 1, timeout_s=120,
            what="a retrain request after the drift")]
        asked = now_ms()
        updates = [ModelUpdate.parse(m.value()) for m in consume(
            s, names.models_updates, until=lambda m: any(
                ModelUpdate.parse(x.value()).canary in (0.0, 1.0) for x in m),
            timeout_s=150, what="a new version, then its verdict")]
        decided = now_ms()
        verdict = updates[-1]
        later = []
        if verdict.canary == 1.0:
            wait_for_swap(s, verdict.version, "serving")  # the detector swapped
            cut = now_ms()

            def served(msgs: list) -> bool:
                later.extend(d for d in (Detection.parse(x.value()) for x in msgs[-1:])
                             if d.ts_ms > cut)
                return len(later) >= 5

            consume(s, names.detections, until=served, timeout_s=30, what="later detections")
    finally:
        stop.set()
        feeder.join()
    assert drift_at and reqs[0].camera == "camD" and reqs[0].drifts
    assert reqs[0].requested_at_ms > drift_at[0], "no request before the lights went down"
    trial = updates[0]
    assert 0 < trial.canary < 1 and trial.metrics["agreement_after"] > trial.metrics[
        "agreement_before"]
    assert verdict.version == trial.version
    assert verdict.canary == 1.0, "the better version is promoted"
    assert {d.model_version for d in later} == {verdict.version}
    assert worker.proc.poll() is None, "no restart"
    measurements["closed_loop"] = {
        "request_after_drift_s": round((reqs[0].requested_at_ms - drift_at[0]) / 1000, 1),
        "verdict_after_request_s": round((decided - asked) / 1000, 1),
        "agreement_before": trial.metrics["agreement_before"],
        "agreement_after": trial.metrics["agreement_after"],
        "reason": reqs[0].reason}
