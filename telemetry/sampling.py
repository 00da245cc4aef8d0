"""Random sampling of per-frame rows (exact counters live in the window records).

>>> s = Sampler(0.25, seed=7)
>>> kept = sum(s.keep() for _ in range(10_000))
>>> 2300 < kept < 2700, s.weight
(True, 4.0)
>>> Sampler(1.0).keep()
True
"""

from __future__ import annotations

import random


class Sampler:
    """Keep each row with probability ``rate``; a kept row stands for ``1 / rate`` rows."""

    def __init__(self, rate: float, seed: int | None = None) -> None:
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"sampling rate must be in (0, 1]; got {rate}")
        self.rate = rate
        self.weight = 1.0 / rate
        self._rng = random.Random(seed)

    def keep(self) -> bool:
        return self.rate >= 1.0 or self._rng.random() < self.rate
