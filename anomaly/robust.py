"""A robust baseline: how many robust sigmas each feature is from its rolling median.

Per feature, the last ``window_size`` learned values give a median and a robust sigma
(interquartile range / 1.349, floored at ``rel_floor`` of the median so that a very
steady series does not page on a 0.1 % wobble). ``score_one`` is the largest absolute
robust z over the features, so one scorer works for one metric or for several.

>>> import random
>>> rng = random.Random(1)
>>> z = RobustZScore(window_size=50)
>>> for _ in range(50):
...     z.learn_one({"infer_ms": rng.gauss(40.0, 2.0)})
>>> round(z.score_one({"infer_ms": 41.0}), 1), round(z.score_one({"infer_ms": 70.0}), 1)
(0.4, 19.0)
>>> z.zscores({"infer_ms": 30.0})
{'infer_ms': -6.6...}
"""

from __future__ import annotations

from autosteer.anomaly.base import Features, Scorer
from autosteer.anomaly.rolling import RollingSample


class RobustZScore:
    """Median / robust-sigma z-score per feature; score = the largest ``|z|``."""

    def __init__(self, window_size: int = 60, min_samples: int = 5, rel_floor: float = 0.01,
                 abs_floor: float = 1e-6) -> None:
        self.window_size = window_size
        self.min_samples = min_samples
        self.rel_floor = rel_floor
        self.abs_floor = abs_floor
        self._windows: dict[str, RollingSample] = {}

    def __repr__(self) -> str:
        return (f"RobustZScore(window_size={self.window_size}, min_samples={self.min_samples}, "
                f"rel_floor={self.rel_floor}, abs_floor={self.abs_floor})")

    def learn_one(self, x: Features) -> None:
        for name, value in x.items():
            w = self._windows.get(name)
            if w is None:
                w = self._windows[name] = RollingSample(self.window_size)
            w.add(float(value))

    def baseline(self, name: str) -> float | None:
        """The rolling median of feature ``name`` (None before it has been learned)."""
        w = self._windows.get(name)
        return w.median() if w is not None and len(w) else None

    def zscores(self, x: Features) -> dict[str, float]:
        """Signed robust z of every feature of ``x`` (0.0 while a feature is warming up)."""
        out = {}
        for name, value in x.items():
            w = self._windows.get(name)
            if w is None or len(w) < self.min_samples:
                out[name] = 0.0
                continue
            med = w.median()
            sigma = max(w.spread(), self.rel_floor * abs(med), self.abs_floor)
            out[name] = (float(value) - med) / sigma
        return out

    def score_one(self, x: Features) -> float:
        return max((abs(z) for z in self.zscores(x).values()), default=0.0)


class Calibrated:
    """Any scorer's raw score, re-expressed as a robust z against its own recent scores on
    normal points, so every detector can page at "N robust sigmas". The scores of the
    first ``skip`` points are not kept (a Half-Space Trees model scores nonsense until its
    first reference window is full).

    >>> import random
    >>> rng = random.Random(2)
    >>> class Raw:  # a scorer whose scores live on an arbitrary scale
    ...     def learn_one(self, x): pass
    ...     def score_one(self, x): return 1000 + x["v"]
    >>> cal = Calibrated(Raw(), window_size=50)
    >>> for _ in range(50):
    ...     cal.learn_one({"v": rng.gauss(0, 1)})
    >>> round(cal.score_one({"v": 0.0}), 1), round(cal.score_one({"v": 10.0}), 1)
    (0.3, 12.4)
    """

    def __init__(self, scorer: Scorer, window_size: int = 360, min_samples: int = 20,
                 skip: int = 0) -> None:
        self.scorer = scorer
        self.window_size = window_size
        self.min_samples = min_samples
        self.skip = skip
        self._scores = RollingSample(window_size)
        self._learned = 0

    def __repr__(self) -> str:
        return (f"Calibrated({self.scorer!r}, window_size={self.window_size}, "
                f"min_samples={self.min_samples}, skip={self.skip})")

    def zscores(self, x: Features) -> dict[str, float]:
        """The wrapped scorer's per-feature z, when it has them (explanations)."""
        inner = getattr(self.scorer, "zscores", None)
        return inner(x) if inner else {}

    def learn_one(self, x: Features) -> None:
        if self._learned >= self.skip:  # the first ``skip`` scores come from a cold scorer
            self._scores.add(float(self.scorer.score_one(x)))
        self._learned += 1
        self.scorer.learn_one(x)

    def score_one(self, x: Features) -> float:
        raw = float(self.scorer.score_one(x))
        if len(self._scores) < self.min_samples:
            return 0.0
        sigma = max(self._scores.spread(), 1e-9)
        return (raw - self._scores.median()) / sigma
