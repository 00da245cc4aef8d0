"""Baselines behind the same ``decide``/``learn`` seam, with the same information as ours.

Each one sees the same profiles and the same telemetry (a
:class:`~autosteer.offload.live.LiveState` fed from ``decide`` and ``learn``), and none
reads the link emulator.

- :class:`EdgeOnly`, :class:`CloudOnly`: every frame to one tier.
- :class:`DeepDecisionStyle`: each period, enumerate cloud shares 0, 0.1, ... 1 and the
  profile's quality levels, and predict each pair from profiles and the bandwidth
  estimate without queueing (processing + encode + transfer); keep the most accurate one
  whose slower path meets the deadline and whose tiers keep up with the arrivals
  (DeepDecision, INFOCOM'18, picks resolution and model the same way).
- :class:`FastVAStyle`: per frame, the most accurate of (edge, cloud at each quality
  level) whose predicted completion meets the deadline, else the fastest (FastVA,
  INFOCOM'20, picks edge/cloud and resolution per frame).
- :class:`HillClimbing`: each period, move the cloud share one step; reverse (and halve
  the step) when the measured p95 got worse.
- :class:`ShortestCompletion`: per frame, the tier with the shortest expected completion,
  ``(outstanding / servers + 1) * service + transfer`` (join-shortest-expected-completion).

Every baseline that keeps a live state takes the same SLO and shedding option as ours
(``slo_ms``, ``shed_budget``; :class:`~autosteer.offload.slo.SloRule`): a frame that no
tier at any quality level can answer within the SLO may be shed (``Route.shed_reason``),
judged on the same estimates
(:meth:`~autosteer.offload.live.LiveState.soonest_s`). Off by default.

>>> from autosteer.offload.profiles import QualityLevel, SystemProfile, TierProfile
>>> prof = SystemProfile(TierProfile((0.040,), accuracy=0.9), TierProfile((0.020,), 2))
>>> p = ShortestCompletion(prof, clock=lambda: 0.0)
>>> [p.decide(FrameMeta("c", i, 0, 80_000)).tier for i in range(3)]   # transfer unknown
['cloud', 'cloud', 'cloud']
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import numpy as np
from autosteer.offload.estimate import Ewma
from autosteer.offload.live import LiveState
from autosteer.offload.policy import CLOUD, EDGE, FrameMeta, Observation, Route, Tier
from autosteer.offload.profiles import QualityLevel, SystemProfile
from autosteer.offload.slo import SloRule

Clock = Callable[[], float]


class EdgeOnly:
    """Every frame on the edge."""

    def __repr__(self) -> str:
        return "EdgeOnly()"

    def decide(self, frame: FrameMeta) -> Route:
        return EDGE

    def learn(self, obs: Observation) -> None:
        """Nothing to learn."""


class CloudOnly:
    """Every frame to the cloud."""

    def __repr__(self) -> str:
        return "CloudOnly()"

    def decide(self, frame: FrameMeta) -> Route:
        return CLOUD

    def learn(self, obs: Observation) -> None:
        """Nothing to learn."""


class _Tracked:
    """Shared plumbing: a clock and a LiveState fed from decide/learn. ``level`` is the
    quality level a subclass chose for cloud frames (full quality unless it chooses);
    a frame is shed (``Route.shed_reason``) by the shared
    :class:`~autosteer.offload.slo.SloRule` before the policy's own choice."""

    def __init__(self, profile: SystemProfile, clock: Clock, slo_ms: float | None = None,
                 shed_budget: float = 0.0) -> None:
        self.profile = profile
        self.clock = clock
        self.slo_ms = slo_ms
        self.shed_budget = shed_budget
        self._live = LiveState(profile)
        self._slo = SloRule(slo_ms, shed_budget)
        self.level: QualityLevel = profile.levels[0]

    def _slo_repr(self) -> str:
        return f", slo_ms={self.slo_ms}, shed_budget={self.shed_budget}"

    @property
    def live(self) -> LiveState:
        """What this policy has learned from telemetry."""
        return self._live

    def decide(self, frame: FrameMeta) -> Route:
        now = self.clock()
        self.live.arrive(frame, now)
        size = frame.size_bytes or int(self.live.size(frame.camera))
        shed = (self._slo.verdict(now - frame.ts_ms / 1000, self.live.soonest_s(size, now), now)
                if self._slo.can_shed else None)
        if shed is not None:  # answered "shed": nothing is sent, nothing queues
            return Route(self._sooner(size, now), shed_reason=shed)
        tier = self._choose(frame, now)
        if tier == "edge":
            self.live.dispatch(frame, tier, now)
            return EDGE
        if not self.level.is_full:  # the bytes the wire will carry
            frame = dataclasses.replace(frame, size_bytes=max(1, int(size * self.level.bytes_ratio)))
        self.live.dispatch(frame, tier, now)
        return Route("cloud", self.level)

    def learn(self, obs: Observation) -> None:
        self.live.learn(obs, self.clock())

    def _sooner(self, size: int, now: float) -> Tier:
        """The tier that would answer a frame of ``size`` first (at full quality)."""
        live = self.live
        return ("edge" if live.completion_s("edge", size, now)
                <= live.completion_s("cloud", size, now) else "cloud")

    def _choose(self, frame: FrameMeta, now: float) -> Tier:
        raise NotImplementedError


class _Periodic(_Tracked):
    """A cloud share updated every ``period_s``, realised by a deficit counter."""

    def __init__(self, profile: SystemProfile, clock: Clock, period_s: float,
                 start: float, slo_ms: float | None = None, shed_budget: float = 0.0) -> None:
        super().__init__(profile, clock, slo_ms, shed_budget)
        self.share = start
        self._credit = 0.0
        self._next: float | None = None
        self._period = period_s

    def _choose(self, frame: FrameMeta, now: float) -> Tier:
        if self._next is None:
            self._next = now + self._period
        elif now >= self._next:
            self._next = now + self._period
            self.share = float(np.clip(self._update(now), 0.0, 1.0))
        self._credit += self.share
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            return "cloud"
        return "edge"

    def _update(self, now: float) -> float:
        raise NotImplementedError


class DeepDecisionStyle(_Periodic):
    """Enumerate cloud shares each period; predict without queueing; most accurate
    feasible one wins (ties: lower predicted latency)."""

    def __init__(self, profile: SystemProfile, *, deadline_ms: float = 200.0,
                 period_s: float = 1.0, accuracy_floor: float = 0.0,
                 clock: Clock = time.time, slo_ms: float | None = None,
                 shed_budget: float = 0.0) -> None:
        super().__init__(profile, clock, period_s, 0.5, slo_ms, shed_budget)
        self.deadline_ms = deadline_ms
        self.period_s = period_s
        self.accuracy_floor = accuracy_floor

    def __repr__(self) -> str:
        return (f"DeepDecisionStyle(deadline_ms={self.deadline_ms}, "
                f"period_s={self.period_s}, accuracy_floor={self.accuracy_floor}"
                f"{self._slo_repr()})")

    def _update(self, now: float) -> float:
        live, prof = self.live, self.profile
        rates = live.rates(now)
        lam = sum(rates.values())
        bw = live.link.bandwidth_Bps
        if lam <= 0 or not math.isfinite(bw):
            return self.share
        size = sum(r * live.size(c) for c, r in rates.items()) / lam
        edge_s = prof.edge.frame_s(1) * live.edge_scale
        cloud_s = prof.cloud.service_s(1) * live.cloud_scale
        cloud_fps = prof.cloud.capacity_fps / max(live.cloud_scale, 1e-9)
        best = None
        for lv in prof.levels:
            wire = size * lv.bytes_ratio
            cloud_lat = lv.encode_s + wire / bw + 2 * live.link.delay_s + cloud_s
            cloud_cap = min(bw / wire, cloud_fps, 1 / lv.encode_s if lv.encode_s else math.inf)
            for x in np.linspace(0.0, 1.0, 11):
                keeps_up = (1 - x) * lam * edge_s <= 1.0 and x * lam <= cloud_cap
                worst = max(edge_s if x < 1 else 0.0, cloud_lat if x > 0 else 0.0)
                acc = (1 - x) * prof.edge.accuracy + x * prof.cloud.accuracy * lv.accuracy
                mean = (1 - x) * edge_s + x * cloud_lat
                ok = (keeps_up and worst * 1000 <= self.deadline_ms
                      and acc >= self.accuracy_floor)
                key = (ok, keeps_up, acc if ok else -mean, -mean)
                if best is None or key > best[0]:
                    best = (key, x, lv)
        assert best is not None
        self.level = best[2]
        return float(best[1])


class HillClimbing(_Periodic):
    """Step the cloud share each period; reverse and halve the step when p95 worsens."""

    def __init__(self, profile: SystemProfile, *, step: float = 0.05, period_s: float = 1.0,
                 start: float = 0.5, clock: Clock = time.time, slo_ms: float | None = None,
                 shed_budget: float = 0.0) -> None:
        super().__init__(profile, clock, period_s, start, slo_ms, shed_budget)
        self.step = step
        self.period_s = period_s
        self.start = start
        self._dir = 1.0
        self._size = step
        self._prev = math.inf
        self._since = -math.inf

    def __repr__(self) -> str:
        return (f"HillClimbing(step={self.step}, period_s={self.period_s}, start={self.start}"
                f"{self._slo_repr()})")

    def _update(self, now: float) -> float:
        seen = self.live.recent(self._since)
        self._since = now
        if len(seen) < 5:
            return self.share
        p95 = float(np.quantile(seen, 0.95))
        if p95 > self._prev:
            self._dir = -self._dir
            self._size = max(self._size / 2, self.step / 4)
        else:
            self._size = min(self._size * 1.5, self.step * 2)
        self._prev = p95
        return self.share + self._dir * self._size


class FastVAStyle(_Tracked):
    """Per frame: the cloud if its predicted completion meets the deadline (more
    accurate), else the edge if it does, else whichever finishes first."""

    def __init__(self, profile: SystemProfile, *, deadline_ms: float = 200.0,
                 clock: Clock = time.time, slo_ms: float | None = None,
                 shed_budget: float = 0.0) -> None:
        super().__init__(profile, clock, slo_ms, shed_budget)
        self.deadline_ms = deadline_ms

    def __repr__(self) -> str:
        return f"FastVAStyle(deadline_ms={self.deadline_ms}{self._slo_repr()})"

    def _choose(self, frame: FrameMeta, now: float) -> Tier:
        size = frame.size_bytes or int(self.live.size(frame.camera))
        deadline = self.deadline_ms / 1000
        prof, live = self.profile, self.live
        options: list[tuple[float, float, Tier, QualityLevel]] = [  # accuracy, done, ...
            (prof.edge.accuracy, live.completion_s("edge", size, now), "edge", prof.levels[0])]
        for lv in prof.levels:
            done = lv.encode_s + live.completion_s("cloud", max(1, int(size * lv.bytes_ratio)),
                                                   now)
            options.append((prof.cloud.accuracy * lv.accuracy, done, "cloud", lv))
        meets = [o for o in options if o[1] <= deadline]
        acc, _, tier, lv = (max(meets, key=lambda o: (o[0], -o[1])) if meets
                            else min(options, key=lambda o: o[1]))
        if tier == "cloud":
            self.level = lv
        return tier


class ShortestCompletion(_Tracked):
    """Join the shortest expected completion: outstanding frames times mean service time
    per server, plus the measured transfer time (an EWMA of ``link_ms``) for the cloud."""

    def __init__(self, profile: SystemProfile, *, clock: Clock = time.time,
                 slo_ms: float | None = None, shed_budget: float = 0.0) -> None:
        super().__init__(profile, clock, slo_ms, shed_budget)
        self._transfer = Ewma(0.1)

    def __repr__(self) -> str:
        return f"ShortestCompletion({self._slo_repr()[2:]})"

    def learn(self, obs: Observation) -> None:
        super().learn(obs)
        if obs.tier == "cloud" and obs.link_ms > 0:
            self._transfer.update(obs.link_ms / 1000)

    def _choose(self, frame: FrameMeta, now: float) -> Tier:
        live = self.live
        edge = (live.outstanding("edge") + 1) * live.edge_s
        k = self.profile.cloud.servers
        cloud = ((live.outstanding("cloud") / k + 1) * live.cloud_frame_s
                 + self._transfer.get(0.0) + live.link.delay_s)
        return "edge" if edge < cloud else "cloud"
