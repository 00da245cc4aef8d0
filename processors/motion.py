"""Motion gating: does a frame differ enough from its camera's last *detected* frame to
be worth a fresh detection?

The measure is cheap on purpose. The JPEG is decoded straight to a small grayscale
image (``cv2.IMREAD_REDUCED_GRAYSCALE_8``: the decoder skips most of the inverse DCT,
so a 768x576 frame becomes 96x72 for a fraction of a full decode), and compared with
the small image of the camera's reference frame (the last one sent to a detector):
the *changed fraction* is the share of pixels whose absolute difference exceeds
``pixel_threshold``. Comparing with the last detected frame, not the previous one,
means slow changes add up until they count.

A frame is *fresh* (detect it) when it is the camera's first, when its changed fraction
exceeds ``changed_fraction``, when ``refresh_frames`` frames or ``refresh_s`` seconds
(capture time) have passed since the reference, or when it cannot be decoded here (the
detector then dead-letters it). Otherwise it is *still*: its camera's last detection
can be carried forward.

>>> import numpy as np
>>> from autosteer.processors.decode import encode_jpeg
>>> still = encode_jpeg(np.full((96, 128, 3), 100, np.uint8))
>>> moved = encode_jpeg(np.pad(np.full((48, 64, 3), 250, np.uint8), ((0, 48), (0, 64), (0, 0)),
...                     constant_values=100))
>>> gate = MotionGate(GateConfig(changed_fraction=0.01, refresh_frames=3))
>>> [gate.decide("cam1", seq, seq * 100, jpeg).reason
...  for seq, jpeg in enumerate([still, still, still, moved, moved, moved, moved, moved])]
['first', 'still', 'still', 'motion', 'still', 'still', 'refresh-frames', 'still']
>>> gate.decide("cam1", 8, 800, moved).source_seq  # carried from the last detected frame
6
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from autosteer.errors import DecodeError
from autosteer.processors.decode import DEFAULT_LIMITS, DecodeLimits, read_header

REDUCED = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
           8: cv2.IMREAD_REDUCED_GRAYSCALE_8}
Reason = Literal["first", "motion", "refresh-frames", "refresh-time", "undecodable", "still"]


def small_gray(jpeg: bytes, reduce: int = 8, limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
    """``jpeg`` decoded to grayscale at 1/``reduce`` of its size (2, 4 or 8), or
    DecodeError saying why not. The header is checked against ``limits`` first.

    >>> from autosteer.processors.decode import encode_jpeg
    >>> small_gray(encode_jpeg(np.zeros((576, 768, 3), np.uint8))).shape
    (72, 96)
    """
    if reduce not in REDUCED:
        raise ValueError(f"reduce must be one of {sorted(REDUCED)}; got {reduce}")
    header = read_header(jpeg)
    if header.width * header.height > limits.max_pixels:
        raise DecodeError(f"image of {header.width}x{header.height} exceeds the "
                          f"{limits.max_pixels}-pixel limit")
    try:
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), REDUCED[reduce])
    except cv2.error as exc:
        raise DecodeError(f"cannot decode the image for the motion gate: {exc}") from exc
    if img is None:
        raise DecodeError(f"cannot decode the image for the motion gate ({len(jpeg)} bytes)")
    return img


def changed_fraction(a: np.ndarray, b: np.ndarray, pixel_threshold: int) -> float:
    """Share of pixels whose absolute difference exceeds ``pixel_threshold`` (1.0 when
    the images differ in size: the camera changed resolution).

    >>> a = np.zeros((10, 10), np.uint8)
    >>> b = a.copy(); b[:2, :5] = 40
    >>> changed_fraction(a, b, 25), changed_fraction(a, b, 50), changed_fraction(a, b[:5], 25)
    (0.1, 0.0, 1.0)
    """
    if a.shape != b.shape:
        return 1.0
    return float(np.count_nonzero(cv2.absdiff(a, b) > pixel_threshold)) / a.size


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the gate (from ``AUTOSTEER_GATE_*``)."""

    changed_fraction: float = 0.003  # a frame with more changed pixels than this is fresh
    pixel_threshold: int = 20  # a pixel changed when |difference| exceeds this (0..255)
    refresh_frames: int = 30  # a fresh detection at least every this many frames
    refresh_s: float = 5.0  # ... and at least this often (capture time)
    reduce: int = 8  # compare at 1/reduce of the frame's size (2, 4 or 8)
    limits: DecodeLimits = DEFAULT_LIMITS

    def __post_init__(self) -> None:
        if not 0.0 <= self.changed_fraction <= 1.0:
            raise ValueError(f"changed_fraction must be in [0, 1]; got {self.changed_fraction}")
        if self.refresh_frames < 1 or self.refresh_s <= 0:
            raise ValueError("refresh_frames must be >= 1 and refresh_s > 0; got "
                             f"{self.refresh_frames}, {self.refresh_s}")
        if self.reduce not in REDUCED:
            raise ValueError(f"reduce must be one of {sorted(REDUCED)}; got {self.reduce}")


@dataclass(frozen=True)
class Decision:
    """The gate's answer for one frame. ``source_seq``: the detected frame whose result a
    still frame carries forward (None for a fresh one)."""

    fresh: bool
    reason: Reason
    changed: float  # the changed fraction (1.0 when there was nothing to compare with)
    source_seq: int | None = None


@dataclass
class _Reference:
    image: np.ndarray
    seq: int
    ts_ms: int
    since: int = 0  # frames gated since it was detected


class MotionGate:
    """Per camera: the reference (last detected) frame, and the decision for each new
    frame (see the module). Frames of one camera must come in order."""

    def __init__(self, config: GateConfig | None = None) -> None:
        self.config = config or GateConfig()
        self._refs: dict[str, _Reference] = {}

    def decide(self, camera: str, seq: int, ts_ms: int, jpeg: bytes) -> Decision:
        c = self.config
        try:
            image = small_gray(jpeg, c.reduce, c.limits)
        except DecodeError:
            self._refs.pop(camera, None)  # whatever comes next is compared with nothing
            return Decision(True, "undecodable", 1.0)
        ref = self._refs.get(camera)
        if ref is None:
            return self._fresh(camera, image, seq, ts_ms, "first", 1.0)
        changed = changed_fraction(ref.image, image, c.pixel_threshold)
        if changed > c.changed_fraction:
            return self._fresh(camera, image, seq, ts_ms, "motion", changed)
        if ref.since + 1 >= c.refresh_frames:
            return self._fresh(camera, image, seq, ts_ms, "refresh-frames", changed)
        if ts_ms - ref.ts_ms >= c.refresh_s * 1000:
            return self._fresh(camera, image, seq, ts_ms, "refresh-time", changed)
        ref.since += 1
        return Decision(False, "still", changed, ref.seq)

    def forget(self, camera: str) -> None:
        """Drop ``camera``'s reference: its next frame is detected fresh (e.g. the
        reference's detection was lost or shed, so there is nothing to carry)."""
        self._refs.pop(camera, None)

    def _fresh(self, camera: str, image: np.ndarray, seq: int, ts_ms: int, reason: Reason,
               changed: float) -> Decision:
        self._refs[camera] = _Reference(image, seq, ts_ms)
        return Decision(True, reason, changed)
