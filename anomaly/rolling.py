"""The last ``size`` values of a stream, kept sorted, for rolling medians and spreads.

>>> r = RollingSample(5)
>>> for v in [3.0, 1.0, 4.0, 1.0, 5.0, 9.0]:
...     r.add(v)
>>> len(r), r.median(), r.quantile(0.0), r.spread()
(5, 4.0, 1.0, 2.965...)
"""

from __future__ import annotations

import bisect
from collections import deque

IQR_TO_SIGMA = 1.349  # the interquartile range of a normal distribution, in sigmas


class RollingSample:
    """A sliding window of floats with order statistics (insert and evict in O(size))."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"RollingSample size must be at least 1; got {size}")
        self.size = size
        self._order: deque[float] = deque()
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._order)

    def add(self, value: float) -> None:
        self._order.append(value)
        bisect.insort(self._sorted, value)
        if len(self._order) > self.size:
            old = self._order.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

    def quantile(self, q: float) -> float:
        """Linear-interpolated quantile; 0.0 while empty."""
        s = self._sorted
        if not s:
            return 0.0
        pos = q * (len(s) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    def median(self) -> float:
        return self.quantile(0.5)

    def spread(self) -> float:
        """A robust sigma: the interquartile range / 1.349, or a sixth of the range when
        more than half the values are equal (so a near-constant feature is not infinitely
        sensitive)."""
        iqr = self.quantile(0.75) - self.quantile(0.25)
        if iqr > 0:
            return iqr / IQR_TO_SIGMA
        return (self._sorted[-1] - self._sorted[0]) / 6 if self._sorted else 0.0
