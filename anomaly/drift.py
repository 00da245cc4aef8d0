"""Drift of model inputs and outputs, per camera and model: when to learn the edge again.

Two detectors, both with river's contract (``update(x)``, then read ``drift_detected``,
and ``change`` for the evidence):

- :class:`ScalarDrift`: ADWIN (river) on one scalar per frame - brightness, contrast,
  blur, mean confidence, detections, edge/cloud agreement. Values are standardized by
  the first ``warmup`` of them, so ADWIN's bound is equally tight for a confidence
  (spread 0.05) and a Laplacian variance (spread 300). A cut whose means differ by less
  than ``min_effect`` reference sigmas, or in the wrong ``direction``, is not reported.
- :class:`ScoreDrift`: a two-sample Kolmogorov-Smirnov test between a reference window
  and a recent window of confidence scores, on KLL sketches (as the telemetry windows
  carry them), with the rank errors of the sketches added to the threshold (the same
  test as ``datasketches.ks_test``, which gives no statistic).

Each change is typed: **recurring** when the new level (or distribution) matches one this
key left earlier; **gradual** when a ramp fits ADWIN's window clearly better than a step
(:func:`fit_change`) or the previous change on the key went the same way shortly before
(ADWIN), or when the distance took longer than one recent window to grow (KS); else
**sudden**. Typing is a heuristic: about one 1-sigma step in ten is called gradual. :class:`DriftMonitor` keeps one detector per (camera, model, feature) and
returns :class:`~autosteer.retrain.records.Drift` records.

A 1-sigma step at index 300 is found 51 values later:

>>> import random
>>> rng = random.Random(7)
>>> det = ScalarDrift()
>>> for i in range(800):
...     det.update(rng.gauss(0.0 if i < 300 else 1.0, 1.0))
...     if det.drift_detected:
...         print(i, det.change.kind, round(det.change.before, 1), round(det.change.after, 1))
351 sudden -0.0 1.1
"""

from __future__ import annotations

import base64
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import cv2
import datasketches as ds
import numpy as np
from autosteer.retrain.records import Drift, DriftKind
from autosteer.topics.records import Box, WindowRecord, now_ms
from river.drift import ADWIN

Direction = Literal["both", "up", "down"]


def image_stats(bgr: np.ndarray, width: int = 160) -> dict[str, float]:
    """``brightness`` (mean gray / 255), ``contrast`` (std gray / 255) and ``blur`` (variance
    of the Laplacian; lower = blurrier) of a BGR frame, on a copy shrunk by an integer
    factor to about ``width`` pixels wide (about 1 ms for 768x576).

    >>> stripes = (np.indices((576, 768)).sum(axis=0) // 32 % 2 * 160 + 40).astype(np.uint8)
    >>> img = np.dstack([stripes] * 3)
    >>> {k: round(v, 3) for k, v in image_stats(img).items()}
    {'brightness': 0.471, 'contrast': 0.295, 'blur': 7716.377}
    >>> {k: round(v, 3) for k, v in image_stats(img // 3).items()}  # the lights go down
    {'brightness': 0.155, 'contrast': 0.098, 'blur': 841.759}
    """
    h, w = bgr.shape[:2]
    factor = w // width  # an integer factor: OpenCV's fast path for INTER_AREA
    if factor > 1:
        bgr = cv2.resize(bgr, (w // factor, max(1, h // factor)), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
    mean, std = cv2.meanStdDev(gray)
    lap = cv2.Laplacian(gray, cv2.CV_32F)
    return {"brightness": float(mean[0, 0]) / 255.0, "contrast": float(std[0, 0]) / 255.0,
            "blur": float(lap.var())}


def frame_features(bgr: np.ndarray, boxes: Sequence[Box]) -> dict[str, float]:
    """:func:`image_stats` plus ``detections`` and, when there are boxes, ``confidence``
    (their mean score): the per-frame input to :meth:`DriftMonitor.update`."""
    out = image_stats(bgr)
    out["detections"] = float(len(boxes))
    if boxes:
        out["confidence"] = float(np.mean([b.score for b in boxes]))
    return out


class FeatureSpec(NamedTuple):
    """How to watch one feature: which changes count, and the smallest spread to
    standardize by (so a camera that never moves does not page on sensor noise)."""

    direction: Direction = "both"
    min_scale: float = 1e-6


FEATURES: dict[str, FeatureSpec] = {
    "brightness": FeatureSpec("both", 0.01),
    "contrast": FeatureSpec("both", 0.005),
    "blur": FeatureSpec("both", 5.0),
    "confidence": FeatureSpec("both", 0.01),
    "detections": FeatureSpec("both", 0.5),
    "agreement": FeatureSpec("down", 0.02),  # only a fall in agreement is a problem
}


@dataclass(frozen=True)
class Change:
    """Evidence of one detected change (values in the feature's own units)."""

    kind: DriftKind
    before: float
    after: float
    n_before: int
    n_after: int
    effect: float
    statistic: float | None = None
    threshold: float | None = None
    p_value: float | None = None


def fit_change(values: Sequence[float], candidates: int = 64, min_side: int = 5,
               evidence: float = 4.0) -> tuple[int, float, float, bool]:
    """Where and how ``values`` changed: ``(index, level before, level after, gradual)``.

    Two models, each with one change point tried at ``candidates`` places: a **step**
    (one mean, then another) and a **hinge** (one mean, then a straight ramp to the end).
    ``gradual`` is true when the hinge's residual sum of squares is lower than the step's
    by more than ``evidence`` residual variances; the levels are the step's means.

    >>> fit_change([0.0] * 50 + [1.0] * 30)
    (50, 0.0, 1.0, False)
    >>> fit_change([0.0] * 50 + [i / 30 for i in range(30)])[3]
    True
    """
    y = np.asarray(values, float)
    n = len(y)
    if n < 2 * min_side:
        return n // 2, float(y[: n // 2].mean()), float(y[n // 2:].mean()), False
    cuts = np.unique(np.linspace(min_side, n - min_side, candidates).astype(int))
    total, total2 = y.sum(), float(y @ y)
    left = np.concatenate([[0.0], np.cumsum(y)])[cuts]
    step_rss = total2 - left**2 / cuts - (total - left) ** 2 / (n - cuts)
    t = np.arange(n, dtype=float)
    hinge = np.maximum(0.0, t[None, :] - cuts[:, None])  # one regressor row per cut
    h_mean = hinge.mean(axis=1, keepdims=True)
    hc = hinge - h_mean
    yc = y - y.mean()
    slope = (hc @ yc) / np.maximum((hc * hc).sum(axis=1), 1e-12)
    hinge_rss = float(yc @ yc) - slope * (hc @ yc)
    best = int(np.argmin(step_rss))
    # refine the step's cut to the value between the neighbouring candidates
    lo = int(cuts[max(best - 1, 0)])
    hi = int(cuts[min(best + 1, len(cuts) - 1)])
    fine = np.arange(lo, hi + 1)
    left = np.concatenate([[0.0], np.cumsum(y)])[fine]
    fine_rss = total2 - left**2 / fine - (total - left) ** 2 / (n - fine)
    c = int(fine[np.argmin(fine_rss)])
    gradual = bool(hinge_rss.min() < fine_rss.min() * (1.0 - evidence / n))
    return c, float(y[:c].mean()), float(y[c:].mean()), gradual


class ScalarDrift:
    """ADWIN on standardized values, with an effect-size floor, a direction and typing."""

    def __init__(self, delta: float = 0.002, warmup: int = 30, min_effect: float = 0.25,
                 direction: Direction = "both", min_scale: float = 1e-6, clock: int = 32,
                 memory: int = 4096) -> None:
        if direction not in ("both", "up", "down"):
            raise ValueError(f"direction must be 'both', 'up' or 'down'; got {direction!r}")
        if warmup < 2:
            raise ValueError(f"warmup must be at least 2 values to measure a spread; got {warmup}")
        self.delta = delta
        self.warmup = warmup
        self.min_effect = min_effect
        self.direction = direction
        self.min_scale = min_scale
        self.clock = clock
        self.memory = memory
        self._adwin = ADWIN(delta=delta, clock=clock)
        self._first: list[float] = []
        self._center = 0.0
        self._scale = 1.0
        self._recent: deque[float] = deque(maxlen=memory)
        self._levels: list[float] = []  # levels (z) this key has left, oldest first
        self._last: tuple[int, float, int] | None = None  # (at, shift, window) of last change
        self._seen = 0
        self._level: float | None = None  # last reported level (z)
        self._drift = False
        self.change: Change | None = None
        self.n_detections = 0

    def __repr__(self) -> str:
        return (f"ScalarDrift(delta={self.delta}, warmup={self.warmup}, "
                f"min_effect={self.min_effect}, direction={self.direction!r}, "
                f"min_scale={self.min_scale}, clock={self.clock}, memory={self.memory})")

    @property
    def drift_detected(self) -> bool:
        """The last update found a change (its evidence is in ``change``)."""
        return self._drift

    def update(self, x: float) -> None:
        self._drift = False
        if len(self._first) < self.warmup:
            self._first.append(float(x))
            if len(self._first) == self.warmup:
                self._center = float(np.mean(self._first))
                self._scale = max(float(np.std(self._first)), self.min_scale)
                for v in self._first:
                    self._step(v)
            return
        self._step(float(x))

    def _step(self, x: float) -> None:
        z = (x - self._center) / self._scale
        self._seen += 1
        self._recent.append(z)
        w0 = self._adwin.width
        self._adwin.update(z)
        if not self._adwin.drift_detected:
            return
        window = list(self._recent)[-int(w0 + 1):]  # ADWIN's window before the cut
        cut, before, after, gradual = fit_change(window)
        if self._level is None:  # the first cut measures the level we started from
            self._level = before
        # the step in ADWIN's window, or the change since the last reported level if
        # larger (small cuts of a slow ramp add up)
        shift = max(after - before, after - self._level, key=abs)
        if (self.direction == "up" and shift < 0) or (self.direction == "down" and shift > 0):
            self._level = after  # a change we were told to ignore: follow it silently
            return
        if abs(shift) < self.min_effect:
            return
        tol = 0.3 * abs(shift)
        trend = self._last is not None and self._last[1] * shift > 0 and (
            self._seen - self._last[0] <= 2 * self._last[2])  # the level keeps moving
        if any(abs(after - level) <= tol for level in self._levels):
            kind: DriftKind = "recurring"
        else:
            kind = "gradual" if gradual or trend else "sudden"
        self._levels.append(self._level)
        self._level = after
        self._last = (self._seen, shift, len(window))
        self._drift = True
        self.n_detections += 1
        self.change = Change(kind, self._center + before * self._scale,
                             self._center + after * self._scale, cut, len(window) - cut,
                             abs(after - before))


def ks_distance(a: ds.kll_floats_sketch, b: ds.kll_floats_sketch) -> float:
    """Largest distance between the two sketches' CDFs, over all retained items."""
    points = sorted({v for v, _ in a} | {v for v, _ in b})
    if not points:
        return 0.0
    ca = np.asarray(a.get_cdf(points, True)[:-1])
    cb = np.asarray(b.get_cdf(points, True)[:-1])
    return float(np.max(np.abs(ca - cb)))


def ks_threshold(a: ds.kll_floats_sketch, b: ds.kll_floats_sketch, p: float) -> float:
    """The sketch-aware rejection threshold of ``datasketches.ks_test``: the asymptotic
    KS bound on the retained item counts plus both sketches' rank errors."""
    r1, r2 = a.num_retained, b.num_retained
    return (math.sqrt(-0.5 * math.log(0.5 * p)) * math.sqrt((r1 + r2) / (r1 * r2))
            + a.normalized_rank_error(False) + b.normalized_rank_error(False))


def ks_p_value(a: ds.kll_floats_sketch, b: ds.kll_floats_sketch, d: float) -> float:
    """The p at which ``d`` would just reach :func:`ks_threshold` (1.0 below the rank
    errors): ``2 exp(-2 r1 r2 / (r1 + r2) (d - eps1 - eps2)^2)``, capped at 1."""
    r1, r2 = a.num_retained, b.num_retained
    excess = d - a.normalized_rank_error(False) - b.normalized_rank_error(False)
    if excess <= 0:
        return 1.0
    return min(1.0, 2.0 * math.exp(-2.0 * r1 * r2 / (r1 + r2) * excess * excess))


def _sketch(scores: Iterable[float] | ds.kll_floats_sketch, k: int) -> ds.kll_floats_sketch:
    if isinstance(scores, ds.kll_floats_sketch):
        return scores
    sk = ds.kll_floats_sketch(k)
    for s in scores:
        sk.update(float(s))
    return sk


class ScoreDrift:
    """KS test between a reference and a sliding recent window of scores (KLL sketches).

    ``update`` takes one batch: a KLL sketch (a telemetry window's) or plain scores.
    The first ``reference`` scores become the reference; then the test runs on every
    update once the last batches hold ``recent`` scores. On a drift, the batches since
    the change (the window's suffix most unlike the reference) start the new reference,
    filled up to ``reference`` scores by the next batches before testing resumes; the
    old reference is kept (the last ``keep``) to recognise a recurring distribution."""

    def __init__(self, reference: int = 1000, recent: int = 1000, p: float = 0.001,
                 k: int = 200, keep: int = 4) -> None:
        self.reference = reference
        self.recent = recent
        self.p = p
        self.k = k
        self.keep = keep
        self._ref = ds.kll_floats_sketch(k)
        self._window: deque[ds.kll_floats_sketch] = deque()
        self._old: deque[ds.kll_floats_sketch] = deque(maxlen=keep)
        self._seen = 0
        self._rising_since: int | None = None  # items seen when D first reached threshold / 2
        self._drift = False
        self.change: Change | None = None
        self.last_statistic = 0.0
        self.last_threshold = 0.0
        self.n_detections = 0

    def __repr__(self) -> str:
        return (f"ScoreDrift(reference={self.reference}, recent={self.recent}, p={self.p}, "
                f"k={self.k}, keep={self.keep})")

    @property
    def drift_detected(self) -> bool:
        return self._drift

    def update(self, scores: Iterable[float] | ds.kll_floats_sketch) -> None:
        self._drift = False
        batch = _sketch(scores, self.k)
        if batch.is_empty():
            return
        self._seen += batch.n
        if self._ref.n < self.reference:
            self._ref.merge(batch)
            return
        self._window.append(batch)
        while len(self._window) > 1 and sum(s.n for s in self._window) - self._window[0].n \
                >= self.recent:
            self._window.popleft()
        if sum(s.n for s in self._window) < self.recent:
            return
        now = _merged(self._window, self.k)
        d, th = ks_distance(self._ref, now), ks_threshold(self._ref, now, self.p)
        self.last_statistic, self.last_threshold = d, th
        if d < th / 2:
            self._rising_since = None
        elif self._rising_since is None:
            self._rising_since = self._seen
        if d <= th:
            return
        # the batches since the change: the suffix of the window most clearly unlike the
        # reference (its D exceeds its own threshold the most)
        suffixes = [_merged(list(self._window)[j:], self.k) for j in range(len(self._window))]
        after = max(suffixes, key=lambda s: ks_distance(self._ref, s)
                    - ks_threshold(self._ref, s, self.p))
        if any(ks_distance(old, after) <= ks_threshold(old, after, self.p) for old in self._old):
            kind: DriftKind = "recurring"
        elif self._rising_since is not None and self._seen - self._rising_since > self.recent:
            kind = "gradual"
        else:
            kind = "sudden"
        self.change = Change(kind, self._ref.get_quantile(0.5), after.get_quantile(0.5),
                             self._ref.n, after.n, d, d, th, ks_p_value(self._ref, now, d))
        self._drift = True
        self.n_detections += 1
        self._old.append(self._ref)
        self._ref = after  # the new reference: the scores since the change, then the next ones
        self._window.clear()
        self._rising_since = None


def _merged(sketches: Iterable[ds.kll_floats_sketch], k: int) -> ds.kll_floats_sketch:
    out = ds.kll_floats_sketch(k)
    for s in sketches:
        out.merge(s)
    return out


class DriftMonitor:
    """One :class:`ScalarDrift` per (camera, model, feature) and one :class:`ScoreDrift`
    per (camera, model); returns :class:`~autosteer.retrain.records.Drift` records.

    >>> mon = DriftMonitor(warmup=20)
    >>> found = []
    >>> for i in range(400):
    ...     light = 0.45 if i < 200 else 0.15  # the lights went down at frame 200
    ...     found += mon.update("cam1", "ssd_int8", {"brightness": light + 0.01 * (i % 3)},
    ...                         ts_ms=i)
    >>> [(d.feature, d.kind, d.ts_ms, round(d.before, 2), round(d.after, 2)) for d in found]
    [('brightness', 'sudden', 223, 0.46, 0.16)]
    """

    def __init__(self, features: Mapping[str, FeatureSpec] = FEATURES, delta: float = 0.002,
                 warmup: int = 30, min_effect: float = 0.25, ks_p: float = 0.001,
                 reference: int = 1000, recent: int = 1000, clock: int = 32) -> None:
        self.features = features
        self.clock = clock
        self.delta = delta
        self.warmup = warmup
        self.min_effect = min_effect
        self.ks_p = ks_p
        self.reference = reference
        self.recent = recent
        self._scalars: dict[tuple[str, str, str], ScalarDrift] = {}
        self._scores: dict[tuple[str, str], ScoreDrift] = {}

    def __repr__(self) -> str:
        return (f"DriftMonitor(delta={self.delta}, warmup={self.warmup}, "
                f"min_effect={self.min_effect}, ks_p={self.ks_p}, reference={self.reference}, "
                f"recent={self.recent}, clock={self.clock})")

    def scalar(self, camera: str, model: str, feature: str) -> ScalarDrift:
        """The detector of one (camera, model, feature), created on first use."""
        key = (camera, model, feature)
        det = self._scalars.get(key)
        if det is None:
            spec = self.features.get(feature, FeatureSpec())
            det = self._scalars[key] = ScalarDrift(self.delta, self.warmup, self.min_effect,
                                                   spec.direction, spec.min_scale, self.clock)
        return det

    def update(self, camera: str, model: str, features: Mapping[str, float],
               ts_ms: int | None = None) -> list[Drift]:
        """Learn one frame's features (non-finite values are skipped); return the drifts
        they completed."""
        ts = now_ms() if ts_ms is None else ts_ms
        out = []
        for name, value in features.items():
            if value is None or not math.isfinite(value):
                continue
            det = self.scalar(camera, model, name)
            det.update(float(value))
            if det.drift_detected and det.change is not None:
                out.append(_record(camera, model, name, "adwin", ts, det.change))
        return out

    def update_scores(self, camera: str, model: str,
                      scores: Iterable[float] | ds.kll_floats_sketch,
                      ts_ms: int | None = None) -> list[Drift]:
        """Learn a batch of confidence scores (or a KLL sketch of them)."""
        key = (camera, model)
        det = self._scores.get(key)
        if det is None:
            det = self._scores[key] = ScoreDrift(self.reference, self.recent, self.ks_p)
        det.update(scores)
        if det.drift_detected and det.change is not None:
            ts = now_ms() if ts_ms is None else ts_ms
            return [_record(camera, model, "score_distribution", "ks", ts, det.change)]
        return []

    def update_window(self, window: WindowRecord) -> list[Drift]:
        """:meth:`update_scores` with a telemetry window's score sketch."""
        data = window.sketches.get("score_kll")
        if data is None:
            return []
        sketch = ds.kll_floats_sketch.deserialize(base64.b64decode(data))
        return self.update_scores(window.camera, window.model_id, sketch,
                                  window.ts_ms + window.window_s * 1000)

    def reset(self, camera: str, model: str | None = None) -> None:
        """Forget a camera's detectors (all its models, or one): call it after a model
        swap, whose outputs are expected to differ."""
        self._scalars = {k: v for k, v in self._scalars.items()
                         if not (k[0] == camera and model in (None, k[1]))}
        self._scores = {k: v for k, v in self._scores.items()
                        if not (k[0] == camera and model in (None, k[1]))}


def _record(camera: str, model: str, feature: str, detector: Literal["adwin", "ks"], ts: int,
            c: Change) -> Drift:
    return Drift(camera=camera, model=model, feature=feature, kind=c.kind, detector=detector,
                 ts_ms=ts, before=c.before, after=c.after, n_before=c.n_before,
                 n_after=c.n_after, effect=c.effect, statistic=c.statistic,
                 threshold=c.threshold, p_value=c.p_value)
