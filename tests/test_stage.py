"""The detector stage on the real edge model: results, shedding of stale frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from autosteer.processors.decode import encode_jpeg
from autosteer.processors.detector import load_detector
from autosteer.processors.prepare import INT8
from autosteer.streams.pipeline import DetectStage, Incoming
from autosteer.topics.records import FrameRecord, now_ms

pytestmark = pytest.mark.integration


def test_frames_older_than_the_max_age_are_shed_with_a_result(
        model_dir: Path, frames: list[np.ndarray]) -> None:
    stage = DetectStage(load_detector(model_dir, INT8), "edge", "n1", max_age_ms=1000)
    jpeg = encode_jpeg(frames[0])
    now = now_ms()
    items = [Incoming(FrameRecord(camera="c", seq=i, ts_ms=now - age, jpeg=jpeg).dumps())
             for i, age in enumerate([10, 5000, 20, 60_000])]
    prepared = stage.prepare(items, now=now)
    assert [f.seq for _, f in prepared.shed] == [1, 3]
    results, failed = stage.infer(prepared, now)
    assert [r.detection.seq for r in results] == [0, 2] and not failed
    assert all(r.detection.status == "ok" and r.detection.boxes for r in results)
    shed = stage.shed_results(prepared)
    assert [(d.seq, d.status, d.boxes) for d in shed] == [(1, "shed", []), (3, "shed", [])]
    assert shed[1].latency.total_ms >= 60_000


def test_a_result_on_the_way_back_counts_the_return_leg(
        model_dir: Path, frames: list[np.ndarray]) -> None:
    stage = DetectStage(load_detector(model_dir, INT8), "cloud", "n1", max_age_ms=0)
    now = now_ms()
    items = [Incoming(FrameRecord(camera="c", seq=0, ts_ms=now, jpeg=encode_jpeg(frames[0])).dumps())]
    (result,), _ = stage.infer(stage.prepare(items, now=now), now)
    back = result.returned(25.0)
    lat = back.detection.latency
    assert lat.return_ms == 25.0 and result.detection.latency.return_ms == 0.0
    assert lat.total_ms == pytest.approx(result.detection.latency.total_ms + 25.0)
    assert back.telemetry.total_ms == pytest.approx(result.telemetry.total_ms + 25.0)
    assert back.detection.boxes == result.detection.boxes and back.key == result.key
