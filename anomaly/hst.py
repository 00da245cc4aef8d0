"""A multivariate scorer: river's Half-Space Trees on robustly scaled features.

Half-Space Trees need every feature in [0, 1]. river's usual recipe, a running
min-max scaler, lets one extreme value squeeze all normal points into a sliver of the
unit interval. Here each feature is centred on its rolling median, divided by its
rolling robust sigma and squashed with ``0.5 + 0.5 * tanh(z / squash)``: normal points
keep their spread whatever the outliers do, and outliers still land near 0 or 1.
``bench/anomaly.py`` measures it against min-max + HST on river's bundled Shuttle data.

>>> import random
>>> rng = random.Random(0)
>>> det = RobustHalfSpaceTrees(window_size=50, seed=1)
>>> for _ in range(300):
...     det.learn_one({"a": rng.gauss(0, 1), "b": rng.gauss(5, 1)})
>>> det.score_one({"a": 0.1, "b": 5.2}) < det.score_one({"a": 6.0, "b": -3.0})
True
"""

from __future__ import annotations

import math

from autosteer.anomaly.base import Features
from autosteer.anomaly.rolling import RollingSample
from river import anomaly


class RobustHalfSpaceTrees:
    """Rolling median/robust-sigma scaling, tanh squashing, then river's HalfSpaceTrees."""

    def __init__(self, n_trees: int = 25, height: int = 10, window_size: int = 250,
                 scale_window: int = 1000, squash: float = 2.0, seed: int | None = None) -> None:
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.scale_window = scale_window
        self.squash = squash
        self.seed = seed
        self._trees = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height,
                                             window_size=window_size, seed=seed)
        self._scale: dict[str, RollingSample] = {}

    def __repr__(self) -> str:
        return (f"RobustHalfSpaceTrees(n_trees={self.n_trees}, height={self.height}, "
                f"window_size={self.window_size}, scale_window={self.scale_window}, "
                f"squash={self.squash}, seed={self.seed})")

    def zscores(self, x: Features) -> dict[str, float]:
        """Robust z of each feature against its rolling median (0.0 while warming up)."""
        out = {}
        for name, value in x.items():
            w = self._scale.get(name)
            if w is None or len(w) < 5:
                out[name] = 0.0
                continue
            med = w.median()
            sigma = max(w.spread(), 0.01 * abs(med), 1e-9)  # a constant feature can still move
            out[name] = (float(value) - med) / sigma
        return out

    def _squashed(self, x: Features) -> Features:
        return {k: 0.5 + 0.5 * math.tanh(z / self.squash) for k, z in self.zscores(x).items()}

    def learn_one(self, x: Features) -> None:
        self._trees.learn_one(self._squashed(x))
        for name, value in x.items():
            w = self._scale.get(name)
            if w is None:
                w = self._scale[name] = RollingSample(self.scale_window)
            w.add(float(value))

    def score_one(self, x: Features) -> float:
        return float(self._trees.score_one(self._squashed(x)))
