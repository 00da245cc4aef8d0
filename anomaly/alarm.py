"""A scorer plus the rules that decide when to page: warm-up, hysteresis, no poisoning.

``Alarm.update(x)`` scores ``x``, then reads like a river drift detector: check
``is_anomaly`` (and ``started``, true on the update that opened an anomaly).

- **warm-up**: the first ``warmup`` points are learned and never page;
- **hysteresis**: an anomaly opens after ``enter`` consecutive scores at or above
  ``threshold`` and closes after ``exit`` consecutive scores below ``clear``;
- **no poisoning**: points scored at or above ``threshold`` are not learned, so a spike
  does not widen the baseline; once an anomaly has lasted ``adapt_after`` points the
  new level is learned anyway, so a lasting change becomes the new normal.

One spike does not page; a level shift does, on its third window:

>>> from autosteer.anomaly.robust import RobustZScore
>>> det = Alarm(RobustZScore(), threshold=5.0, warmup=20)
>>> stream = [40.0 + (i % 5) for i in range(40)] + [90.0] + [41.0] * 5 + [80.0] * 4
>>> pages = []
>>> for i, v in enumerate(stream):
...     _ = det.update({"infer_ms": v})
...     if det.started:
...         pages.append(i)
>>> pages
[48]
"""

from __future__ import annotations

from autosteer.anomaly.base import Features, Scorer


class Alarm:
    """Turn a stream of anomaly scores into sustained anomalies (open / close)."""

    def __init__(self, scorer: Scorer, threshold: float, clear: float | None = None,
                 warmup: int = 30, enter: int = 3, exit: int = 3,
                 adapt_after: int = 360) -> None:
        if enter < 1 or exit < 1:
            raise ValueError(f"enter and exit must be at least 1; got enter={enter}, exit={exit}")
        if clear is not None and clear > threshold:
            raise ValueError(f"clear ({clear}) must not exceed threshold ({threshold}): the "
                             "alarm would close an anomaly while still above its threshold")
        self.scorer = scorer
        self.threshold = threshold
        self.clear = clear
        self.warmup = warmup
        self.enter = enter
        self.exit = exit
        self.adapt_after = adapt_after
        self._seen = 0
        self._hot = 0  # consecutive scores >= threshold
        self._calm = 0  # consecutive scores < clear while anomalous
        self._active = 0  # points since the anomaly opened (0 = none open)
        self._started = False
        self._ended = False
        self.score = 0.0

    def __repr__(self) -> str:
        return (f"Alarm({self.scorer!r}, threshold={self.threshold}, clear={self.clear}, "
                f"warmup={self.warmup}, enter={self.enter}, exit={self.exit}, "
                f"adapt_after={self.adapt_after})")

    @property
    def is_anomaly(self) -> bool:
        """An anomaly is open (it opened on this update or earlier and has not closed)."""
        return self._active > 0

    @property
    def started(self) -> bool:
        """The last update opened an anomaly: page now."""
        return self._started

    @property
    def ended(self) -> bool:
        """The last update closed an anomaly."""
        return self._ended

    @property
    def run(self) -> int:
        """Length of the current run of scores at or above the threshold (the anomaly's
        first window is ``run - 1`` updates back when ``started``)."""
        return self._hot

    @property
    def warm(self) -> bool:
        return self._seen >= self.warmup

    def update(self, x: Features) -> float:
        """Score ``x``, update the open/closed state, learn ``x`` if it looks normal."""
        self._started = self._ended = False
        if not self.warm:
            self.scorer.learn_one(x)
            self._seen += 1
            self.score = 0.0
            return 0.0
        score = float(self.scorer.score_one(x))
        self.score = score
        high = score >= self.threshold
        self._hot = self._hot + 1 if high else 0
        if self._active:
            self._active += 1
            clear = self.threshold if self.clear is None else self.clear
            self._calm = self._calm + 1 if score < clear else 0
            if self._calm >= self.exit:
                self._active, self._calm, self._ended = 0, 0, True
        elif self._hot >= self.enter:
            self._active, self._calm, self._started = 1, 0, True
        if (not high and not self._active) or self._active > self.adapt_after:
            self.scorer.learn_one(x)
        self._seen += 1
        return score
