"""Drift detectors: river's contract, shifts found, quiet on stationary streams, typed,
localized per (camera, model, feature), and the KS test on sketches."""

from __future__ import annotations

import random

import cv2
import datasketches as ds
import numpy as np
import pytest
from autosteer.anomaly.drift import (
    DriftMonitor,
    ScalarDrift,
    ScoreDrift,
    fit_change,
    frame_features,
    image_stats,
    ks_distance,
    ks_p_value,
    ks_threshold,
)
from autosteer.retrain.records import Drift
from autosteer.telemetry.window import Sample, WindowAggregator
from autosteer.topics.records import Box


def changes(det: ScalarDrift, values: list[float]) -> list[tuple[int, str]]:
    out = []
    for i, v in enumerate(values):
        det.update(v)
        if det.drift_detected:
            assert det.change is not None
            out.append((i, det.change.kind))
    return out


def gauss(levels: list[tuple[int, float]], sigma: float = 1.0, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mean, sigma) for n, mean in levels for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_a_one_sigma_shift_is_found_within_a_few_hundred_values(seed: int) -> None:
    found = changes(ScalarDrift(), gauss([(600, 0.0), (600, 1.0)], seed=seed))
    assert len(found) == 1
    assert 600 <= found[0][0] < 800


@pytest.mark.parametrize("seed", range(5))
def test_a_stationary_stream_raises_no_alarm(seed: int) -> None:
    assert changes(ScalarDrift(), gauss([(6000, 3.0)], sigma=2.0, seed=seed)) == []


def test_the_scale_of_a_feature_does_not_matter() -> None:
    """A confidence-sized spread (0.02) is as visible as a unit one, unlike raw ADWIN."""
    small = gauss([(600, 0.5), (600, 0.52)], sigma=0.02, seed=3)
    unit = gauss([(600, 0.0), (600, 1.0)], sigma=1.0, seed=3)
    assert [i for i, _ in changes(ScalarDrift(), small)] == \
        [i for i, _ in changes(ScalarDrift(), unit)]


def test_evidence_is_in_the_features_units() -> None:
    det = ScalarDrift()
    changes(det, gauss([(600, 0.45), (300, 0.15)], sigma=0.02, seed=1))
    c = det.change
    assert c is not None
    assert c.before == pytest.approx(0.45, abs=0.01)
    assert c.after == pytest.approx(0.15, abs=0.01)
    assert c.effect > 10  # sigmas
    assert c.n_before >= 500 and c.n_after >= 1


def test_a_step_is_sudden_a_ramp_is_gradual_and_a_return_is_recurring() -> None:
    step = changes(ScalarDrift(), gauss([(600, 0.0), (800, 2.0)], seed=2))
    assert [k for _, k in step] == ["sudden"]
    rng = random.Random(4)
    ramp = [rng.gauss(0.0 if i < 500 else min(3.0, (i - 500) / 300), 1.0) for i in range(2000)]
    assert "gradual" in [k for _, k in changes(ScalarDrift(), ramp)]
    back = changes(ScalarDrift(), gauss([(600, 0.0), (800, 1.5), (800, 0.0)], seed=5))
    assert [k for _, k in back] == ["sudden", "recurring"]


def test_direction_ignores_the_other_way() -> None:
    values = gauss([(600, 1.0), (600, 0.0), (600, 1.0)], seed=6)
    assert [k for _, k in changes(ScalarDrift(direction="up"), values)] == ["sudden"]
    assert len(changes(ScalarDrift(direction="down"), values)) == 1
    assert len(changes(ScalarDrift(), values)) == 2


def test_fit_change_tells_a_step_from_a_ramp() -> None:
    rng = np.random.default_rng(0)
    step = np.r_[np.zeros(300), np.ones(100)] + rng.normal(0, 0.2, 400)
    ramp = np.r_[np.zeros(300), np.linspace(0, 1, 100)] + rng.normal(0, 0.2, 400)
    cut, before, after, gradual = fit_change(step)
    assert abs(cut - 300) <= 5 and not gradual
    assert before == pytest.approx(0.0, abs=0.05) and after == pytest.approx(1.0, abs=0.05)
    assert fit_change(ramp)[3]


def test_constructors_keep_their_arguments_so_repr_rebuilds_them() -> None:
    for det in (ScalarDrift(delta=0.01, warmup=10, direction="down"),
                ScoreDrift(reference=300, recent=200, p=0.01)):
        ns = {"ScalarDrift": ScalarDrift, "ScoreDrift": ScoreDrift}
        assert repr(eval(repr(det), ns)) == repr(det)


def test_bad_arguments_say_what_to_pass() -> None:
    with pytest.raises(ValueError, match="direction must be 'both', 'up' or 'down'"):
        ScalarDrift(direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="warmup must be at least 2"):
        ScalarDrift(warmup=1)


def sketch(values: np.ndarray, k: int = 200) -> ds.kll_floats_sketch:
    sk = ds.kll_floats_sketch(k)
    for v in values:
        sk.update(float(v))
    return sk


@pytest.mark.parametrize("shift", [0.0, 0.02, 0.05, 0.1, 0.3])
def test_our_ks_test_decides_as_datasketches_does(shift: float) -> None:
    rng = np.random.default_rng(int(shift * 100))
    a = sketch(rng.beta(5, 2, 3000))
    b = sketch(np.clip(rng.beta(5, 2, 3000) - shift, 0, 1))
    d, th = ks_distance(a, b), ks_threshold(a, b, 0.001)
    assert (d > th) == ds.ks_test(a, b, 0.001)
    assert (ks_p_value(a, b, d) < 0.001) == (d > th)


def test_score_drift_finds_a_shifted_distribution_on_sketches() -> None:
    rng = np.random.default_rng(1)
    det = ScoreDrift(reference=1000, recent=1000)
    found = []
    for i in range(60):
        scores = rng.beta(5, 2, 100) * (0.7 if i >= 30 else 1.0)  # dimmer scene, lower scores
        det.update(sketch(scores))
        if det.drift_detected:
            found.append((i, det.change))
    assert len(found) == 1
    i, c = found[0]
    assert 30 < i <= 40
    assert c is not None and c.statistic is not None and c.threshold is not None
    assert c.statistic > c.threshold and c.p_value is not None and c.p_value < 0.001
    assert c.after < c.before


def test_score_drift_is_quiet_on_one_distribution_and_recognises_a_return() -> None:
    rng = np.random.default_rng(2)
    det = ScoreDrift(reference=1000, recent=1000)
    kinds = []
    for i in range(120):
        dim = 40 <= i < 80
        det.update(list(rng.beta(5, 2, 100) * (0.6 if dim else 1.0)))
        if det.drift_detected:
            assert det.change is not None
            kinds.append(det.change.kind)
    assert kinds == ["sudden", "recurring"]


def test_score_drift_calls_a_slow_slide_gradual() -> None:
    rng = np.random.default_rng(3)
    det = ScoreDrift(reference=1000, recent=1000)
    kinds = []
    for i in range(200):
        det.update(list(rng.beta(5, 2, 100) * (1.0 - 0.5 * max(0, i - 20) / 180)))
        if det.drift_detected:
            assert det.change is not None
            kinds.append(det.change.kind)
    assert kinds and kinds[0] == "gradual"


def test_monitor_localizes_drift_to_camera_model_and_feature() -> None:
    mon = DriftMonitor(warmup=20)
    rng = random.Random(0)
    found: list[Drift] = []
    for i in range(500):
        for cam in ("cam1", "cam2"):
            dark = cam == "cam1" and i >= 250
            found += mon.update(cam, "edge", {
                "brightness": (0.15 if dark else 0.45) + rng.gauss(0, 0.01),
                "detections": 5 + rng.gauss(0, 1.0),
                "confidence": float("nan"),  # a frame without boxes: skipped
            }, ts_ms=1000 + i)
    assert [(d.camera, d.model, d.feature, d.kind, d.detector) for d in found] == \
        [("cam1", "edge", "brightness", "sudden", "adwin")]
    assert Drift.parse(found[0].dumps()) == found[0]
    assert 1250 <= found[0].ts_ms < 1400
    mon.reset("cam1")
    assert mon.scalar("cam1", "edge", "brightness").n_detections == 0


def test_monitor_reads_telemetry_window_sketches() -> None:
    mon = DriftMonitor(reference=500, recent=500)
    agg = WindowAggregator("n1", window_s=10)
    rng = np.random.default_rng(4)
    found: list[Drift] = []
    for w in range(30):
        gain = 0.6 if w >= 15 else 1.0
        for seq in range(40):
            agg.update(Sample(ts_ms=w * 10_000 + seq, camera="cam1", seq=w * 40 + seq,
                              tier="edge", model_id="ssd", model_version="1", total_ms=10.0,
                              infer_ms=5.0, queue_ms=0.0, queue_depth=0, labels=("person",) * 3,
                              scores=tuple(rng.beta(5, 2, 3) * gain)))
        for rec in agg.flush((w + 2) * 10_000):
            found += mon.update_window(rec)
    assert [(d.camera, d.model, d.feature, d.detector) for d in found] == \
        [("cam1", "ssd", "score_distribution", "ks")]
    assert found[0].statistic is not None and found[0].threshold is not None
    assert found[0].statistic > found[0].threshold


def test_image_stats_see_darkness_and_blur() -> None:
    squares = (np.indices((576, 768)).sum(axis=0) // 32 % 2 * 160 + 40).astype(np.uint8)
    img = np.ascontiguousarray(np.repeat(squares[:, :, None], 3, axis=2))
    sharp = image_stats(img)
    dark = image_stats((img * 0.35).astype(np.uint8))
    blurred = image_stats(cv2.GaussianBlur(img, (0, 0), 8))
    assert dark["brightness"] < 0.4 * sharp["brightness"]
    assert dark["contrast"] < 0.4 * sharp["contrast"]
    assert blurred["blur"] < 0.2 * sharp["blur"]
    box = Box(label="person", class_id=1, score=0.8, x0=0, y0=0, x1=0.5, y1=0.5)
    f = frame_features(img, [box, box.model_copy(update={"score": 0.6})])
    assert f["detections"] == 2.0 and f["confidence"] == pytest.approx(0.7)
    assert "confidence" not in frame_features(img, [])
