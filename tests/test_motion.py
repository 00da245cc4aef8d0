"""The motion gate's measure and decisions (processors/motion.py), on synthetic frames
with sensor-like noise."""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
from autosteer.processors.decode import decode_jpeg, encode_jpeg
from autosteer.processors.motion import GateConfig, MotionGate, changed_fraction, small_gray

RNG = np.random.default_rng(7)
H, W = 576, 768


def scene(person_x: int | None = None, noise: float = 3.0) -> bytes:
    """A textured still scene (a gradient with blocks), sensor noise, and optionally a
    person-sized dark box at ``person_x``."""
    yy, xx = np.mgrid[0:H, 0:W]
    img = (80 + 60 * np.sin(xx / 37.0) + 40 * np.cos(yy / 23.0)).astype(np.float32)
    if person_x is not None:
        img[200:380, person_x:person_x + 60] = 20
    img += RNG.normal(0, noise, img.shape)
    gray = np.clip(img, 0, 255).astype(np.uint8)
    return encode_jpeg(np.dstack([gray] * 3))


def test_noise_alone_changes_nothing_but_a_person_does() -> None:
    ref = small_gray(scene())
    assert ref.shape == (H // 8, W // 8)
    assert changed_fraction(ref, small_gray(scene()), 20) < 0.001  # fresh noise only
    assert changed_fraction(ref, small_gray(scene(person_x=300)), 20) > 0.01


def test_a_still_camera_is_gated_until_a_refresh_and_motion_is_fresh() -> None:
    gate = MotionGate(GateConfig(refresh_frames=10, refresh_s=60))
    still = [gate.decide("c", seq, seq * 100, scene()) for seq in range(12)]
    assert [d.reason for d in still] == ["first"] + ["still"] * 9 + ["refresh-frames", "still"]
    assert {d.source_seq for d in still[1:10]} == {0} and still[11].source_seq == 10
    walking = [gate.decide("c", 12 + i, 1200 + i * 100, scene(person_x=100 + 40 * i))
               for i in range(4)]
    assert all(d.fresh and d.reason == "motion" for d in walking)


def test_a_refresh_comes_after_refresh_s_of_capture_time() -> None:
    gate = MotionGate(GateConfig(refresh_frames=1000, refresh_s=1.0))
    jpeg = scene()
    reasons = [gate.decide("c", seq, seq * 300, jpeg).reason for seq in range(6)]
    assert reasons == ["first", "still", "still", "still", "refresh-time", "still"]


def test_cameras_are_gated_apart_and_a_changed_size_is_fresh() -> None:
    gate = MotionGate()
    jpeg = scene()
    assert gate.decide("a", 0, 0, jpeg).fresh and gate.decide("b", 0, 0, jpeg).fresh
    assert not gate.decide("a", 1, 100, jpeg).fresh
    smaller = encode_jpeg(np.zeros((240, 320, 3), np.uint8))
    assert gate.decide("a", 2, 200, smaller).reason == "motion"


def test_an_undecodable_frame_is_fresh_and_resets_the_reference() -> None:
    gate = MotionGate()
    jpeg = scene()
    gate.decide("c", 0, 0, jpeg)
    assert gate.decide("c", 1, 100, b"\xff\xd8garbage").reason == "undecodable"
    assert gate.decide("c", 2, 200, jpeg).reason == "first"
    gate.forget("c")
    assert gate.decide("c", 3, 300, jpeg).reason == "first"


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="changed_fraction"):
        GateConfig(changed_fraction=2.0)
    with pytest.raises(ValueError, match="refresh_frames"):
        GateConfig(refresh_frames=0)
    with pytest.raises(ValueError, match="reduce"):
        GateConfig(reduce=3)


def test_the_gate_costs_a_fraction_of_a_full_decode() -> None:
    """The decision (reduced decode + difference) against the full decode the detector
    would do anyway (a lower bound of a detection, whose model time is 10-30x more), median
    of interleaved repetitions. The 1/8 decode still reads every Huffman code, so it is
    about 1/3 to 1/2 of a colour decode here, not 1/64."""
    jpegs = [scene(person_x=100 + 5 * i) for i in range(10)]
    gate = MotionGate()
    full, gated = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        for j in jpegs:
            decode_jpeg(j)
        full.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i, j in enumerate(jpegs):
            gate.decide("c", i, i, j)
        gated.append(time.perf_counter() - t0)
    assert statistics.median(gated) < 0.7 * statistics.median(full)
