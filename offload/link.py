"""An emulated edge -> cloud link: bandwidth, delay and jitter that change at run time.

:meth:`EmulatedLink.transit_s` says how long one frame takes from the moment the router
hands it over until it reaches the cloud: FIFO queueing behind earlier frames, then
serialization (``size / bandwidth``), then one-way propagation plus jitter. Calls must
come in non-decreasing ``now_s`` order (the router's clock).

>>> link = EmulatedLink(bandwidth_bps=10e6, delay_s=0.050)
>>> round(link.transit_s(80_000, now_s=0.0), 3)     # 64 ms on the wire + 50 ms
0.114
>>> round(link.transit_s(80_000, now_s=0.010), 3)   # queues 54 ms behind the first
0.168
>>> link.set(delay_s=0.250)                           # RTT x5, mid-run
>>> round(link.transit_s(80_000, now_s=10.0), 3)
0.314

The controller never reads these settings: it learns the link from the transit times
the router measures (``Observation.link_ms``).
"""

from __future__ import annotations

import random


class EmulatedLink:
    """One FIFO uplink. ``delay_s`` is one way (RTT / 2); ``jitter_s`` is the standard
    deviation of a non-negative random extra delay (exponential), applied after the wire
    so it does not hold up later frames."""

    def __init__(self, bandwidth_bps: float, delay_s: float, jitter_s: float = 0.0,
                 seed: int | None = None) -> None:
        self.bandwidth_bps = bandwidth_bps
        self.delay_s = delay_s
        self.jitter_s = jitter_s
        self.seed = seed
        self._check()
        self._rng = random.Random(seed)
        self._free_at = float("-inf")  # when the wire finishes the last frame

    def __repr__(self) -> str:
        return (f"EmulatedLink(bandwidth_bps={self.bandwidth_bps}, delay_s={self.delay_s}, "
                f"jitter_s={self.jitter_s}, seed={self.seed})")

    def _check(self) -> None:
        if self.bandwidth_bps <= 0 or self.delay_s < 0 or self.jitter_s < 0:
            raise ValueError(f"link needs bandwidth_bps > 0, delay_s >= 0, jitter_s >= 0; "
                             f"got {self.bandwidth_bps}, {self.delay_s}, {self.jitter_s}")

    def set(self, *, bandwidth_bps: float | None = None, delay_s: float | None = None,
            jitter_s: float | None = None) -> None:
        """Change the link now; frames already on the wire keep their timing."""
        if bandwidth_bps is not None:
            self.bandwidth_bps = bandwidth_bps
        if delay_s is not None:
            self.delay_s = delay_s
        if jitter_s is not None:
            self.jitter_s = jitter_s
        self._check()

    @property
    def rtt_s(self) -> float:
        return 2 * self.delay_s

    def backlog_s(self, now_s: float) -> float:
        """Seconds until the wire is free (what a frame handed over now would queue)."""
        return max(0.0, self._free_at - now_s)

    def transit_s(self, size_bytes: int, now_s: float) -> float:
        """Seconds from hand-over at ``now_s`` to arrival at the cloud for one frame."""
        if size_bytes < 0:
            raise ValueError(f"size_bytes must be >= 0; got {size_bytes}")
        start = max(now_s, self._free_at)
        self._free_at = start + size_bytes * 8 / self.bandwidth_bps
        return self._free_at - now_s + self.delay_s + self.jitter()

    def jitter(self) -> float:
        """One draw of the extra delay (also usable for the return path)."""
        return self._rng.expovariate(1.0 / self.jitter_s) if self.jitter_s > 0 else 0.0
