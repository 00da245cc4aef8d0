"""Online estimators, robust to noise, fed from live telemetry only.

>>> e = Ewma(alpha=0.5)
>>> for v in (10.0, 20.0, 20.0):
...     e.update(v)
>>> e.value
17.5
>>> w = Window(size=5)
>>> for v in (1.0, 2.0, 3.0, 4.0, 100.0):
...     w.update(v)
>>> w.quantile(0.5), w.mean
(3.0, 22.0)

:class:`LinkEstimator` learns the uplink from per-frame transit times the router measures:
bandwidth from the spacing of frames that queued behind each other on the wire (packet-
train dispersion), one-way delay and jitter from what is left over.

>>> link = LinkEstimator()
>>> t = 0.0
>>> for i in range(40):          # 10 Mbit/s, 50 ms one way: three frames back to back
...     sent = i // 3 * 0.5      # every 0.5 s, each 64 ms on the wire
...     link.sent(i, 80_000, sent)
...     link.learn(i, 0.064 * (i % 3 + 1) + 0.050)
>>> round(link.bandwidth_Bps * 8 / 1e6, 2), round(link.delay_s, 3)
(10.0, 0.05)
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Hashable

import numpy as np


class Ewma:
    """Exponentially weighted mean; the first sample sets it, or ``prior`` does (worth
    one sample, not counted in ``n``, the number of samples seen)."""

    def __init__(self, alpha: float = 0.1, prior: float | None = None) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be within (0, 1]; got {alpha}")
        self.alpha = alpha
        self.prior = prior
        self.value: float | None = prior
        self.var = 0.0
        self.n = 0

    def __repr__(self) -> str:
        return f"Ewma(alpha={self.alpha}, prior={self.prior})"

    def update(self, x: float) -> None:
        self.n += 1
        if self.value is None:
            self.value = x
            return
        d = x - self.value
        self.value += self.alpha * d
        self.var = (1 - self.alpha) * (self.var + self.alpha * d * d)

    def get(self, default: float) -> float:
        return default if self.value is None else self.value

    @property
    def scv(self) -> float:
        """Squared coefficient of variation (variance / mean^2); 0 before two samples."""
        return self.var / self.value ** 2 if self.value else 0.0


class Window:
    """The last ``size`` values: mean, standard deviation, quantiles."""

    def __init__(self, size: int = 64) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1; got {size}")
        self.size = size
        self._v: deque[float] = deque(maxlen=size)

    def __repr__(self) -> str:
        return f"Window(size={self.size})"

    def __len__(self) -> int:
        return len(self._v)

    def update(self, x: float) -> None:
        self._v.append(x)

    @property
    def mean(self) -> float:
        return sum(self._v) / len(self._v) if self._v else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self._v)) if len(self._v) > 1 else 0.0

    def quantile(self, q: float) -> float:
        return float(np.quantile(self._v, q)) if self._v else math.nan


class RateMeter:
    """Events per second over the last ``window_s`` seconds, and how bursty they are.

    Until a window has passed since the first event, the rate is counted over the time
    since then, but over at least ``min_span_s`` (default: half the window): a backlog
    dumped at once reads as its frames spread over that time, not as a sustained rate of
    thousands per second (the per-frame router absorbs the burst).

    >>> m = RateMeter(window_s=10.0)
    >>> for i in range(100):
    ...     m.update(i * 0.1)        # perfectly periodic: no burstiness
    >>> round(m.rate(10.0), 1), round(m.dispersion(bin_s=0.5), 2)
    (10.0, 0.0)
    """

    def __init__(self, window_s: float = 2.0, min_span_s: float | None = None) -> None:
        if window_s <= 0 or (min_span_s is not None and not 0 < min_span_s <= window_s):
            raise ValueError(f"need window_s > 0 and 0 < min_span_s <= window_s; got "
                             f"{window_s} and {min_span_s}")
        self.window_s = window_s
        self.min_span_s = min_span_s
        self._min_span = window_s / 2 if min_span_s is None else min_span_s
        self._t: deque[float] = deque()
        self._first: float | None = None

    def __repr__(self) -> str:
        return f"RateMeter(window_s={self.window_s}, min_span_s={self.min_span_s})"

    def update(self, now_s: float) -> None:
        if self._first is None:
            self._first = now_s
        self._t.append(now_s)
        self._trim(now_s)

    def _trim(self, now_s: float) -> None:
        while self._t and self._t[0] < now_s - self.window_s:
            self._t.popleft()

    def rate(self, now_s: float) -> float:
        self._trim(now_s)
        if self._first is None:
            return 0.0
        return len(self._t) / min(self.window_s, max(now_s - self._first, self._min_span))

    def sending(self, now_s: float, gaps: float = 3.0, floor_s: float = 0.25) -> bool:
        """Whether events still come: the last one is at most ``gaps`` mean gaps (at the
        current rate) ago, and at least ``floor_s``. A backlog dumped at once keeps a rate
        for a window, but stops sending at once.

        >>> m = RateMeter(window_s=10.0, min_span_s=2.0)
        >>> for _ in range(30):
        ...     m.update(5.0)            # 30 frames at once: 15 frames/s for a while
        >>> round(m.rate(6.0), 1), m.sending(5.1), m.sending(6.0)
        (15.0, True, False)
        """
        self._trim(now_s)
        if not self._t:
            return False
        rate = self.rate(now_s)
        return now_s - self._t[-1] <= max(gaps / rate if rate > 0 else 0.0, floor_s)

    def scv(self) -> float:
        """Squared coefficient of variation of the gaps in the window (1 = Poisson)."""
        if len(self._t) < 3:
            return 1.0
        gaps = np.diff(np.asarray(self._t))
        m = gaps.mean()
        return float(gaps.var() / (m * m)) if m > 0 else 1.0

    def dispersion(self, bin_s: float) -> float:
        """Index of dispersion of counts (variance / mean of events per ``bin_s``) over the
        whole bins in the window: 1 for Poisson, near 0 for periodic streams, large for
        bursts. Queues feel this, not the gaps' SCV, when several periodic cameras merge."""
        if len(self._t) < 3:
            return 1.0
        t = np.asarray(self._t)
        n_bins = int((t[-1] - t[0]) / bin_s)
        if n_bins < 3:
            return self.scv()
        counts = np.bincount(((t - t[0]) / bin_s).astype(int), minlength=n_bins)[:n_bins]
        m = counts.mean()
        return float(counts.var() / m) if m > 0 else 1.0


class Slowdown:
    """How much a tier's service time grows with the other tier's load, when both run on
    the same cores: ``s = a (1 + k u)``, ``u`` the frames per second the other tier
    finished lately.

    ``u`` counts frames, not the other tier's busy time: busy time grows with the other
    tier's own service time, so a third party loading the cores would slow both tiers
    and read as contention between them.

    ``k`` comes from ridge least squares over the last ``size`` samples ``(u, s)``; it keeps
    its last value while ``u`` has varied by less than ``min_spread`` (standard deviation)
    over the window, since then there is nothing to learn from, and stays within
    ``[0, max_k]``. Tiers on separate boxes keep ``k`` near 0.

    >>> sd = Slowdown()
    >>> for i in range(64):
    ...     u = 2.0 * (i % 4)                # the other tier finishing 0, 2, 4, 6 frames/s
    ...     sd.update(u, 0.050 * (1 + 0.15 * u))
    >>> round(sd.k, 3), round(sd.factor(4.0), 2)   # the ridge shrinks k a little (true 0.15)
    (0.148, 1.59)
    """

    def __init__(self, size: int = 256, ridge: float = 0.05, min_spread: float = 0.5,
                 max_k: float = 1.0) -> None:
        self.size = size
        self.ridge = ridge
        self.min_spread = min_spread
        self.max_k = max_k
        self._u: deque[float] = deque(maxlen=size)
        self._s: deque[float] = deque(maxlen=size)
        self._k = 0.0
        self._fresh = 0

    def __repr__(self) -> str:
        return (f"Slowdown(size={self.size}, ridge={self.ridge}, "
                f"min_spread={self.min_spread}, max_k={self.max_k})")

    def update(self, u: float, service_s: float) -> None:
        self._u.append(u)
        self._s.append(service_s)
        self._fresh += 1

    @property
    def k(self) -> float:
        if self._fresh >= 8 and len(self._u) >= 16:
            self._fresh = 0
            u, s = np.asarray(self._u), np.asarray(self._s)
            du = u - u.mean()
            if float(du.std()) >= self.min_spread:
                slope = float(du @ (s - s.mean())) / (float(du @ du) + self.ridge * len(u))
                base = float(s.mean()) - slope * float(u.mean())
                if base > 0:
                    self._k = float(np.clip(slope / base, 0.0, self.max_k))
        return self._k

    def factor(self, u: float) -> float:
        """Service time at the other tier's load ``u``, over the time alone."""
        return 1.0 + self.k * max(u, 0.0)


class LinkEstimator:
    """Bandwidth, one-way delay and jitter of the uplink, from what the router sees.

    Call :meth:`sent` when a frame goes onto the link and :meth:`learn` with its measured
    transit (hand-over to arrival at the cloud). Estimates:

    - bandwidth: for consecutive frames i-1, i, the gap between their arrivals is i's
      wire time (plus jitter noise) when i queued behind i-1, and about their send gap
      when it did not. Pairs sent less than half their arrival gap apart queued; the
      median of ``size_i / gap`` over them. Before three such pairs, the same over pairs
      where i was sent before i-1 arrived (low if some did not queue); before those, the
      lower bound ``size / transit`` (it takes all of the delay for wire time). Never
      below the median of that bound: where arrivals are seen only when a consumer
      fetches them (a broker between the hosts), two queued frames arrive one fetch
      apart, and their gap is the fetch cycle, not the wire (on the testbed: 0.15 MB/s
      from pairs on a 6.25 MB/s link, whose frames' transits alone proved more than
      1 MB/s for most of them).
    - delay: mean of each transit minus its wire time and FIFO wait, replayed on a
      virtual wire at the estimated bandwidth; jitter: their standard deviation.
    """

    def __init__(self, window: int = 64, keep: int = 256) -> None:
        self.window = window
        self.keep = keep
        self._pairs = Window(window)
        self._loose = Window(window)
        self._bound = Window(window)
        self._sent: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()
        self._arrived: dict[Hashable, float] = {}
        self._prev: dict[Hashable, Hashable | None] = {}
        self._next: dict[Hashable, Hashable] = {}
        self._last_key: Hashable | None = None
        self._free_at = -math.inf
        self._resid: tuple[float, float, int] | None = None  # cached (mean, std, n)
        self._bw: float | None = None  # cached bandwidth
        self._fresh = 0  # samples since the residuals were computed

    def __repr__(self) -> str:
        return f"LinkEstimator(window={self.window}, keep={self.keep})"

    @property
    def samples(self) -> int:
        return len(self._arrived)

    @property
    def pairs(self) -> int:
        """Pairs of frames seen queued behind each other on the wire (the bandwidth is
        measured, not bounded, once there are three)."""
        return len(self._pairs)

    @property
    def bandwidth_Bps(self) -> float:
        """Bytes per second (``math.inf`` before any sample)."""
        if self._bw is None:
            floor = self._bound.quantile(0.5) if len(self._bound) else 0.0
            if len(self._pairs) >= 3:
                self._bw = max(self._pairs.quantile(0.5), floor)
            elif len(self._loose) >= 3:
                self._bw = max(self._loose.quantile(0.5), floor)
            else:
                self._bw = self._bound.quantile(1.0) if len(self._bound) else math.inf
        return self._bw

    @property
    def delay_s(self) -> float:
        return max(self._residuals()[0], 0.0)

    @property
    def jitter_s(self) -> float:
        return self._residuals()[1]

    def wire_s(self, size_bytes: float) -> float:
        bw = self.bandwidth_Bps
        return size_bytes / bw if math.isfinite(bw) else 0.0

    def backlog_s(self, now_s: float) -> float:
        """Predicted wait before a frame handed over now starts on the wire."""
        return max(0.0, self._free_at - now_s)

    def sent(self, key: Hashable, size_bytes: int, now_s: float) -> None:
        self._free_at = max(now_s, self._free_at) + self.wire_s(size_bytes)
        self._sent[key] = (now_s, size_bytes)
        if self._last_key is not None:
            self._next[self._last_key] = key
        self._prev[key] = self._last_key
        self._last_key = key
        while len(self._sent) > self.keep:
            old, _ = self._sent.popitem(last=False)
            for d in (self._prev, self._next, self._arrived):
                d.pop(old, None)

    def learn(self, key: Hashable, transit_s: float) -> None:
        """Record frame ``key``'s measured transit; unknown keys are ignored."""
        if key not in self._sent or transit_s <= 0:
            return
        sent_s, size = self._sent[key]
        self._arrived[key] = sent_s + transit_s
        self._bound.update(size / transit_s)
        self._bw = None
        self._fresh += 1
        if self._resid is None or self._fresh >= 8 or self._resid[2] < self.window:
            self._resid, self._fresh = None, 0
        for first, second in ((self._prev.get(key), key), (key, self._next.get(key))):
            if first in self._arrived and second in self._arrived:  # a pair, in send order
                gap = self._arrived[second] - self._arrived[first]
                sent_gap = self._sent[second][0] - self._sent[first][0]
                if gap > 0 and sent_gap < gap / 2:  # the wire spread them: they queued
                    self._pairs.update(self._sent[second][1] / gap)
                elif gap > 0 and self._sent[second][0] < self._arrived[first]:
                    self._loose.update(self._sent[second][1] / gap)  # may not have queued

    def _residuals(self) -> tuple[float, float, int]:
        if self._resid is None:
            free, out = -math.inf, []
            bw = self.bandwidth_Bps
            recent = list(self._sent.items())[-3 * self.window:]
            for key, (sent_s, size) in recent:
                free = max(sent_s, free) + (size / bw if math.isfinite(bw) else 0.0)
                if key in self._arrived:
                    out.append(self._arrived[key] - free)
            out = out[-self.window:]
            self._resid = ((float(np.mean(out)), float(np.std(out)), len(out)) if out
                           else (0.0, 0.0, 0))
        return self._resid
