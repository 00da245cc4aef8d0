"""The per-frame SLO, and when a frame may be shed: one rule for ours and every baseline.

A frame meets its SLO when its result is back within ``slo_ms`` of its capture. When a
policy predicts that no tier at any quality level can do that (the frame's age plus the
soonest predicted completion, :meth:`~autosteer.offload.live.LiveState.soonest_s`, is past
the SLO), the frame is *hopeless*: it misses the SLO whatever is done with it. Sending it
anyway costs the frames behind it queue time. :class:`SloRule` lets the policy answer it
``status: "shed"`` instead, with a reason, while the shed frames stay within
``shed_budget`` of the frames routed over the last ``window_s`` seconds; past the budget
the frame is served late (ours degrades it to the fastest quality level the accuracy
floor allows). A shed frame is an SLO miss, and the benchmarks count it as never answered
(in the latency percentiles too), so shedding never flatters a number: it pays only where
the capacity it frees gets other frames in on time.

>>> rule = SloRule(slo_ms=200.0, shed_budget=0.25)
>>> [rule.verdict(age_s=0.0, soonest_s=t, now_s=0.0) for t in (0.1, 0.3, 0.3, 0.3)]
[None, None, None, 'hopeless: 300 ms at best > SLO 200 ms']
>>> rule.shed_share(0.0)   # one of four: a quarter may go, so only the fourth did
0.25
"""

from __future__ import annotations

import math
from collections import deque


class SloRule:
    """Decide, frame by frame, whether a hopeless frame is shed.

    ``slo_ms``: capture -> result back, in ms; None = no SLO (nothing is ever hopeless).
    ``shed_budget``: the largest share of the frames routed over the last ``window_s``
    that may be shed; 0 = never shed."""

    def __init__(self, slo_ms: float | None = None, shed_budget: float = 0.0,
                 window_s: float = 10.0) -> None:
        if slo_ms is not None and not slo_ms > 0:
            raise ValueError(f"slo_ms must be > 0 or None; got {slo_ms}")
        if not 0.0 <= shed_budget <= 1.0 or window_s <= 0:
            raise ValueError(f"need 0 <= shed_budget <= 1 and window_s > 0; got "
                             f"{shed_budget} and {window_s}")
        self.slo_ms = slo_ms
        self.shed_budget = shed_budget
        self.window_s = window_s
        self._seen: deque[float] = deque()
        self._shed: deque[float] = deque()

    def __repr__(self) -> str:
        return (f"SloRule(slo_ms={self.slo_ms}, shed_budget={self.shed_budget}, "
                f"window_s={self.window_s})")

    @property
    def can_shed(self) -> bool:
        """An SLO and a budget: frames may be shed (else :meth:`verdict` is always None,
        and a policy need not even estimate)."""
        return self.slo_ms is not None and self.shed_budget > 0

    @property
    def slo_s(self) -> float:
        return math.inf if self.slo_ms is None else self.slo_ms / 1000

    def hopeless(self, age_s: float, soonest_s: float) -> bool:
        """No tier at any level gets the frame's result back within the SLO."""
        return max(age_s, 0.0) + soonest_s > self.slo_s

    def verdict(self, age_s: float, soonest_s: float, now_s: float) -> str | None:
        """Count one routed frame; the reason to shed it, or None to send it.

        ``age_s``: how long ago it was captured; ``soonest_s``: the soonest its result
        could be back from now, on any tier at any quality level, as the policy predicts."""
        self._trim(now_s)
        self._seen.append(now_s)
        if self.shed_budget <= 0 or not self.hopeless(age_s, soonest_s):
            return None
        if len(self._shed) + 1 > self.shed_budget * len(self._seen):
            return None
        self._shed.append(now_s)
        best_ms = 1000 * (max(age_s, 0.0) + soonest_s)
        return f"hopeless: {best_ms:.0f} ms at best > SLO {self.slo_ms:.0f} ms"

    def shed_share(self, now_s: float) -> float:
        """Shed frames over routed frames in the last ``window_s``."""
        self._trim(now_s)
        return len(self._shed) / len(self._seen) if self._seen else 0.0

    def _trim(self, now_s: float) -> None:
        for q in (self._seen, self._shed):
            while q and q[0] < now_s - self.window_s:
                q.popleft()
