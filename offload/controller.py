"""The online offload controller: a queueing model, solved by projected gradient descent
every control interval, realised frame by frame with deficit round robin.

Per frame (``decide``): count the arrival, run a control step if one is due, then route
by deficit round robin: one credit grows by each frame's camera's cloud share and a cloud
frame spends 1 (one credit for all cameras spaces cloud frames evenly on the wire).
While either tier keeps the credit within ``slack`` frames of the exact split, the frame
goes to the tier predicted to finish it first (virtual clocks of the edge queue, the wire
and the cloud); otherwise to the one the credit demands. If the chosen tier's predicted
completion is past the deadline and the other would finish sooner, the frame goes there
instead (a queue spiked). Until the link's bandwidth has been measured from frames queued
behind each other, a frame arriving right behind a cloud frame follows it (a packet pair
probe).

Per control step (``tick``): estimate the model's inputs from telemetry
(:class:`~autosteer.offload.live.LiveState`), minimise ``p95 + mean_weight * mean`` of the
end-to-end latency over the per-camera cloud shares and the quality level cloud frames are
re-encoded at (the profile's :class:`~autosteer.offload.profiles.QualityLevel` s), subject
to every queue's utilization ``<= max_util`` and the accuracy floor, by projected gradient
descent (per level) from the best of the previous solution (warm start) and the two
extremes; keep the previous split and level unless the gain passes a hysteresis; record a
:class:`ControlDecision`. When a cloud frame at the planned level would miss the deadline,
it goes at the level finishing first among those the accuracy floor allows (accuracy
banked above the floor pays for levels below it).

>>> from autosteer.offload.profiles import QualityLevel, SystemProfile, TierProfile
>>> clock = iter(i / 32 for i in range(10_000)).__next__
>>> ctl = OffloadController(SystemProfile(TierProfile((0.040,), accuracy=0.9),
...                                       TierProfile((0.020,), servers=2)), clock=clock)
>>> tiers = [ctl.decide(FrameMeta("cam1", i, ts_ms=0, size_bytes=80_000)).tier
...          for i in range(10)]
>>> tiers.count("cloud"), ctl.last_decision().reason   # warm-up share until data arrives
(2, 'no link samples yet: warm-up share')
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from autosteer.offload.live import LiveState
from autosteer.offload.optimize import Halfspace, pgd, project, uniform_interval, violation
from autosteer.offload.policy import FrameMeta, Observation, Route, Tier
from autosteer.offload.profiles import QualityLevel, SystemProfile, TierProfile
from autosteer.offload.queueing import ModelInputs, OffloadModel, Prediction, drain_mean
from autosteer.offload.slo import SloRule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControlDecision:
    """One control step, small enough to publish as a record.

    ``offload`` is each camera's cloud share; ``offload_ratio`` their rate-weighted mean.
    Latencies are end to end in ms (result back at the router). ``predicted_*`` are for the split
    chosen now; ``measured_*`` cover the frames seen back since the previous step (NaN when
    none), so compare one record's prediction with the next record's measurement.
    ``predicted_mean_ms`` is for the frames seen back by the next step: the steady state
    (``steady_mean_ms``) with the backlog queued now drained first
    (:func:`~autosteer.offload.queueing.drain_mean`); ``backlog_ms`` is how long the
    longer of the two paths needs to work that backlog off. ``shed``: frames shed since
    the previous step (hopeless under the SLO)."""

    ts_s: float
    offload_ratio: float
    offload: dict[str, float] = field(default_factory=dict)
    predicted_mean_ms: float = math.nan
    predicted_p95_ms: float = math.nan
    measured_mean_ms: float = math.nan
    measured_p95_ms: float = math.nan
    edge_util: float = math.nan
    link_util: float = math.nan
    cloud_util: float = math.nan
    deadline_ms: float = math.nan
    overrides: int = 0
    steps: int = 0
    solve_ms: float = 0.0
    reason: str = ""
    level: str = "full"
    predicted_accuracy: float = math.nan
    steady_mean_ms: float = math.nan
    backlog_ms: float = 0.0
    shed: int = 0


@dataclass(frozen=True)
class _Plan:
    """One quality level's best split, as the model scores it."""

    level: QualityLevel
    model: OffloadModel
    x: np.ndarray
    score: float  # p95 + mean_weight * mean, s; inf for an overload fallback
    steps: int
    reason: str
    floor_met: bool  # the accuracy floor held (or there is none)
    worst_util: float  # the busiest queue's predicted utilization


@dataclass(frozen=True)
class ControlConfig:
    """The controller's knobs (defaults are the ones the benchmark uses).

    - ``interval_s``: seconds between control steps.
    - ``quantile``, ``mean_weight``: minimise ``p<quantile> + mean_weight * mean``.
    - ``max_util``: no queue (edge, wire, cloud) planned above this utilization.
    - ``accuracy_floor``: least expected accuracy (cloud share x 1.0 + edge x its
      accuracy); 0 = none. Dropped, and said so in the record, when no stable split meets it.
    - ``explore``: least share of frames the cloud sees, so the link estimate never goes
      stale; when the split sends fewer, edge frames are copied to the cloud (the edge
      answers them; the copies only measure, see :class:`~autosteer.offload.policy.Route`).
    - ``warmup_offload``: cloud share before the link has been measured.
    - ``slack``: frames the per-frame router may stray from the exact split to finish a
      frame sooner.
    - ``hysteresis_ms``: keep the previous split unless the model gains this much.
    - ``calibrate_util``: least edge utilization at which measured queue waits
      recalibrate the arrival variability.
    - ``rate_window_s``, ``rate_min_span_s``: camera rates are counted over this window,
      and a camera that just appeared over at least the span: long enough that a backlog
      dumped at once is not taken for a sustained rate (the per-frame router absorbs it),
      short enough to follow cameras joining and leaving.
    - ``deadline_ms``: per-frame deadline; None = ``deadline_slack`` x predicted p95.
    - ``auto_tick``: run control steps from ``decide`` when due (else call ``tick``).
    - ``accuracy_reserve``, ``reserve_cost``: with a floor, prefer a quality level whose
      split also meets floor + reserve when its score is within ``reserve_cost`` (a
      fraction) of the best; the accuracy so saved pays for smaller levels in bursts.
    - ``budget_s``: accuracy saved above the floor fades with this time constant (the
      floor holds on average over about this long).
    - ``slo_ms``, ``shed_budget``: the frames' SLO (capture -> result back) and the
      largest share of frames that may be shed when no tier at any level meets it
      (:class:`~autosteer.offload.slo.SloRule`, the same rule the baselines get); past the
      budget, or with none (0, the default), such a frame goes at the fastest level the
      accuracy floor allows. None: no SLO.
    """

    interval_s: float = 1.0
    quantile: float = 0.95
    mean_weight: float = 0.25
    max_util: float = 0.95
    accuracy_floor: float = 0.0
    explore: float = 0.005
    warmup_offload: float = 0.2
    slack: float = 1.0
    hysteresis_ms: float = 1.0
    calibrate_util: float = 0.1
    rate_window_s: float = 10.0
    rate_min_span_s: float = 2.0
    deadline_ms: float | None = None
    deadline_slack: float = 1.0
    auto_tick: bool = True
    accuracy_reserve: float = 0.02
    reserve_cost: float = 0.15
    budget_s: float = 30.0
    slo_ms: float | None = None
    shed_budget: float = 0.0

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ValueError(f"interval_s must be > 0; got {self.interval_s}")
        if not 0.5 <= self.quantile < 1:
            raise ValueError(f"quantile must be within [0.5, 1); got {self.quantile}")
        if not 0 < self.max_util <= 1:
            raise ValueError(f"max_util must be within (0, 1]; got {self.max_util}")
        if not 0 <= self.explore <= self.warmup_offload <= 1:
            raise ValueError(f"need 0 <= explore <= warmup_offload <= 1; got "
                             f"{self.explore} and {self.warmup_offload}")
        if min(self.accuracy_reserve, self.reserve_cost) < 0 or self.budget_s <= 0:
            raise ValueError(f"need accuracy_reserve, reserve_cost >= 0 and budget_s > 0; got "
                             f"{self.accuracy_reserve}, {self.reserve_cost}, {self.budget_s}")
        SloRule(self.slo_ms, self.shed_budget)  # the same checks, the same messages
        if self.slack < 0 or self.mean_weight < 0 or self.hysteresis_ms < 0:
            raise ValueError("slack, mean_weight and hysteresis_ms must be >= 0; got "
                             f"{self.slack}, {self.mean_weight}, {self.hysteresis_ms}")


class OffloadController:
    """Ours: model-based offload control behind the ``decide``/``learn`` seam.

    ``clock`` returns seconds on the same clock as ``FrameMeta.ts_ms / 1000`` (wall time
    in the pipeline, simulated time in the benchmark)."""

    def __init__(self, profile: SystemProfile, config: ControlConfig | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.profile = profile
        self.config = config
        self.clock = clock
        self._cfg = config or ControlConfig()
        self._live = LiveState(profile, rate_window_s=self._cfg.rate_window_s,
                               rate_min_span_s=self._cfg.rate_min_span_s)
        self._offload: dict[str, float] = {}
        self._credit = 0.0
        self._next_tick: float | None = None
        self._last_tick = -math.inf
        self._deadline_s = math.inf
        self._overrides = 0
        self._ca2 = 1.0
        self._ca2_seen = False
        self._edge_batch = 1.0  # the model's mean edge batch at the current split
        self._last_cloud = -math.inf  # when the last cloud frame was sent
        self._probed = False  # that frame was a probe (probes go in pairs, not trains)
        self._explore_credit = 0.0  # grows by ``explore`` a frame; a cloud frame or copy spends 1
        self._slo = SloRule(self._cfg.slo_ms, self._cfg.shed_budget)
        self._shed_n = 0  # frames shed since the previous control step
        self._last: ControlDecision | None = None
        self._level: QualityLevel = profile.levels[0]  # planned, per control step
        self._need = 0.0  # least cloud accuracy that keeps the floor at the planned split
        self._saved = 0.0  # accuracy banked above the floor (see _bank)
        self._banked_at = -math.inf
        self._frame_level: QualityLevel = profile.levels[0]  # of the last cloud frame

    def __repr__(self) -> str:
        return f"OffloadController({self.profile!r}, {self.config!r})"

    @property
    def live(self) -> LiveState:
        """What the controller has learned from telemetry (read it, do not feed it)."""
        return self._live

    # -- the OffloadPolicy seam ---------------------------------------------------------
    def decide(self, frame: FrameMeta) -> Route:
        now = self.clock()
        live, cfg = self._live, self._cfg
        live.arrive(frame, now)
        if self._next_tick is None:
            self._next_tick = now
        if cfg.auto_tick and now >= self._next_tick:
            try:
                self.tick(now)
            except Exception:  # a failed control step keeps the last split, never routing
                self._next_tick = now + cfg.interval_s
                log.exception("offload control step failed; keeping the previous split")
        cam = frame.camera
        size = frame.size_bytes or int(live.size(cam))
        copy = False
        shed = (self._slo.verdict(now - frame.ts_ms / 1000, live.soonest_s(size, now), now)
                if self._slo.can_shed else None)
        lv, wire, cloud_done = self._cloud_option(self._level, size, now)
        edge_done = live.completion_s("edge", size, now) + live.overhead_s("edge")
        if shed is not None:  # hopeless: answered "shed"; no credit, queue or copy
            self._shed_n += 1
            return Route("edge" if edge_done <= cloud_done else "cloud", shed_reason=shed)
        if min(cloud_done, edge_done) > self._deadline_s:
            # a queue spiked (neither tier meets the deadline at the planned level): the
            # level finishing first among those the floor allows
            for alt in self._burst_levels():
                option = self._cloud_option(alt, size, now)
                if option[2] < cloud_done:
                    lv, wire, cloud_done = option
        done = {"edge": edge_done, "cloud": cloud_done}
        credit = self._credit + self._offload.get(cam, self._default_share())
        if credit >= 1.0 + cfg.slack:
            tier: Tier = "cloud"
        elif credit < 1.0 - cfg.slack:
            tier = "edge"
        else:  # either keeps the split within the slack: take the one that finishes first
            tier = "edge" if done["edge"] <= done["cloud"] else "cloud"
        other: Tier = "cloud" if tier == "edge" else "edge"
        if done[tier] > self._deadline_s and done[other] < done[tier]:
            tier = other  # deadline-aware: a queue spiked
            self._overrides += 1
        self._explore_credit += cfg.explore
        if tier == "cloud":
            credit -= 1.0
            self._explore_credit = max(0.0, self._explore_credit - 1.0)
            self._last_cloud, self._probed = now, False
            self._frame_level = lv
        else:  # measure the cloud with a copy: a packet-pair probe, or the explore share
            probe = self._probe_due(size, now)
            if probe or self._explore_credit >= 1.0:
                copy = True
                self._explore_credit = max(0.0, self._explore_credit - 1.0)
                self._last_cloud, self._probed = now, probe
        self._credit = min(max(credit, -cfg.slack), 1.0 + cfg.slack)
        self._bank(self.profile.edge.accuracy if tier == "edge"
                   else self.profile.cloud.accuracy * lv.accuracy, now)
        live.dispatch(frame if tier == "edge" else dataclasses.replace(frame, size_bytes=wire),
                      tier, now)
        if copy:  # sent as captured
            live.dispatch(dataclasses.replace(frame, size_bytes=size), "cloud", now)
        return Route("cloud", lv) if tier == "cloud" else Route("edge", copy=copy)

    def copied(self, frame: FrameMeta) -> None:
        """The router also sends ``frame`` (just sent to the edge) to the cloud, as
        captured (an agreement shadow; see :func:`~autosteer.offload.policy.count_copy`):
        it queues on the link and the cloud like a copy of ours, and measures them as well,
        so it stands in for the next explore copy."""
        size = frame.size_bytes or int(self._live.size(frame.camera))
        self._live.dispatch(dataclasses.replace(frame, size_bytes=size), "cloud", self.clock())
        self._explore_credit = max(0.0, self._explore_credit - 1.0)

    def learn(self, obs: Observation) -> None:
        self._live.learn(obs, self.clock())

    def _bank(self, accuracy: float, now: float) -> None:
        """Accuracy saved above the floor (frames x accuracy), fading over ``budget_s``."""
        floor = self._cfg.accuracy_floor
        if floor <= 0:
            return
        fade = math.exp(-max(now - self._banked_at, 0.0) / self._cfg.budget_s)
        self._saved = max(0.0, self._saved * fade + accuracy - floor)
        self._banked_at = now

    def _burst_levels(self) -> list[QualityLevel]:
        """Levels a frame may take when a queue spiked: those keeping the floor at the
        planned split, and those whose shortfall the accuracy saved lately pays for."""
        floor, cloud = self._cfg.accuracy_floor, self.profile.cloud.accuracy
        return [lv for lv in self.profile.levels
                if floor <= 0 or cloud * lv.accuracy >= self._need
                or floor - cloud * lv.accuracy <= self._saved]

    def _cloud_option(self, level: QualityLevel, size: int,
                      now: float) -> tuple[QualityLevel, int, float]:
        """``level``, the bytes a frame of ``size`` puts on the wire at it, and when its
        result would be back (encode + wire + cloud + the path's overhead)."""
        wire = max(1, int(size * level.bytes_ratio))
        live = self._live
        return level, wire, (level.encode_s + live.completion_s("cloud", wire, now)
                             + live.overhead_s("cloud"))

    def _probe_due(self, size: int, now: float) -> bool:
        """Copy this frame to the cloud right behind the last cloud frame (or copy), so the
        two queue on the wire and their arrival gap measures the bandwidth (until three such
        pairs were seen). Without it the link estimate is only a pessimistic bound
        (``size / transit``), which can hold the model in a false overload for good."""
        link = self._live.link
        return (link.pairs < 3 and not self._probed and link.samples > 0
                and now - self._last_cloud < link.wire_s(size) / 2)

    # -- visibility ---------------------------------------------------------------------
    def last_decision(self) -> ControlDecision | None:
        """The latest control step's record (None before the first frame)."""
        return self._last

    @property
    def offload(self) -> dict[str, float]:
        """Current cloud share per camera."""
        return dict(self._offload)

    @property
    def level(self) -> QualityLevel:
        """The quality level of the frame last sent to the cloud (the router re-encodes
        it): the planned level, or the burst level when a queue spiked."""
        return self._frame_level

    @property
    def planned_level(self) -> QualityLevel:
        """The quality level chosen by the last control step."""
        return self._level

    # -- control ------------------------------------------------------------------------
    def _default_share(self) -> float:
        if not self._offload:
            return self._cfg.warmup_offload
        return float(np.mean(list(self._offload.values())))

    def inputs(self, now_s: float) -> ModelInputs | None:
        """The model's inputs as telemetry shows them now (None until the link is seen)."""
        live = self._live
        rates = {c: r for c, r in live.rates(now_s).items() if r > 0}
        link = live.link
        if not rates or link.samples < 3 or not math.isfinite(link.bandwidth_Bps):
            return None
        cams = sorted(rates)
        cloud = self.profile.cloud
        f_e, f_c = live.contention(now_s)  # measured times over times alone
        scaled = TierProfile(tuple(b * live.cloud_scale / f_c for b in cloud.batch_s),
                             cloud.servers, cloud.accuracy, cloud.scv)
        return ModelInputs(
            rates_fps=tuple(rates[c] for c in cams),
            sizes_bytes=tuple(live.size(c) for c in cams),
            edge_s=live.edge_s / f_e, cloud=scaled, bandwidth_Bps=link.bandwidth_Bps,
            delay_s=link.delay_s, jitter_s=link.jitter_s,
            arrival_scv=self._ca2,
            edge_scv=min(live.edge_scv, 1.0), size_scv=min(live.size_scv, 1.0),
            edge_accuracy=self.profile.edge.accuracy, cloud_accuracy=cloud.accuracy,
            edge_batch=self.profile.edge.max_batch,
            edge_overhead_s=live.overhead_s("edge"), cloud_overhead_s=live.overhead_s("cloud"),
            edge_slowdown=live.slowdown["edge"].k, cloud_slowdown=live.slowdown["cloud"].k)

    def _calibrate(self, now_s: float) -> None:
        """Arrival variability for the model: invert the G/G/1 wait at the edge's measured
        utilization and queue wait (``ca2 = 2 W (1 - rho) / (rho n s) - cs2``, ``n`` the
        edge's mean batch at the current split), smoothed over control steps; the index of
        dispersion of arrivals until the edge is loaded enough to tell (periodic cameras
        merged queue far less than Poisson arrivals would)."""
        live, floor = self._live, self._cfg.calibrate_util
        rho, wait = live.edge_load(now_s)
        if floor <= rho < 0.995:
            target = (2 * wait * (1 - rho) / (rho * self._edge_batch * live.edge_s)
                      - live.edge_scv)
        elif self._ca2_seen:
            return
        else:
            target = live.arrival_scv
        target = float(np.clip(target, 0.02, 4.0))
        self._ca2 = target if not self._ca2_seen else 0.7 * self._ca2 + 0.3 * target
        self._ca2_seen = self._ca2_seen or rho >= floor

    def constraints(self, model: OffloadModel,
                    at: np.ndarray | None = None) -> list[Halfspace]:
        """Utilization of edge, wire and cloud ``<= max_util``; accuracy ``>= floor``.

        Where the tiers share cores, service times depend on the split; they are taken at
        the split ``at`` (the current one: the constraints are linearised there)."""
        inp, cap, floor = model.inputs, self._cfg.max_util, self._cfg.accuracy_floor
        lam = np.asarray(inp.rates_fps)
        size = np.asarray(inp.sizes_bytes)
        total = lam.sum()
        f_e, f_c = (1.0, 1.0) if at is None else (float(f[0]) for f in model.slowdown(at))
        edge_s = inp.edge_s * f_e
        cloud_frame = inp.cloud.frame_s(inp.cloud.max_batch) / inp.cloud.servers * f_c
        out = [
            Halfspace(-lam * edge_s, cap - total * edge_s, "edge util"),
            Halfspace(lam * size * inp.bytes_ratio / inp.bandwidth_Bps, cap, "link util"),
            Halfspace(lam * cloud_frame, cap, "cloud util"),
        ]
        if inp.encode_s > 0:
            out.append(Halfspace(lam * inp.encode_s, cap, "encode util"))
        if floor > 0:
            gain = lam * (inp.cloud_accuracy - inp.edge_accuracy) / total
            out.append(Halfspace(-gain, inp.edge_accuracy - floor, "accuracy floor"))
        return out

    def at_level(self, inputs: ModelInputs, level: QualityLevel) -> ModelInputs:
        """``inputs`` with cloud frames sent at ``level``: fewer bytes on the wire, the
        encoder's time, the level's accuracy."""
        return dataclasses.replace(inputs, bytes_ratio=level.bytes_ratio,
                                   encode_s=level.encode_s,
                                   cloud_accuracy=self.profile.cloud.accuracy * level.accuracy)

    def predict(self, offload: float | dict[str, float],
                level: QualityLevel | None = None) -> Prediction | None:
        """What the model expects now for ``offload`` (one share, or one per camera) with
        cloud frames at ``level`` (default: the current one)."""
        now = self.clock()
        inp = self.inputs(now)
        if inp is None:
            return None
        model = OffloadModel(self.at_level(inp, level or self._level), self._cfg.quantile)
        return model.predict(self._vector(offload, now))

    def _vector(self, offload: float | dict[str, float], now_s: float) -> np.ndarray:
        cams = sorted(c for c, r in self._live.rates(now_s).items() if r > 0)
        if isinstance(offload, dict):
            fill = (float(np.mean(list(offload.values()))) if offload
                    else self._cfg.warmup_offload)
            return np.array([offload.get(c, fill) for c in cams])
        return np.full(len(cams), float(offload))

    def replan(self, action: Any = None) -> ControlDecision:
        """A root cause blamed a node or the link (a ``ControlAction``): solve again now,
        from the default split instead of the last one (the descent need not start where
        the old conditions left it), and say why in the decision's reason."""
        share = self._default_share()
        self._offload = {c: share for c in self._offload}
        why = getattr(action, "reason", "") or "re-plan asked"
        decision = self.tick()
        self._last = dataclasses.replace(decision, reason=f"replan ({why}): {decision.reason}")
        return self._last

    def tick(self, now_s: float | None = None) -> ControlDecision:
        """Run one control step now; the router may also call this from a timer."""
        cfg, live = self._cfg, self._live
        now = self.clock() if now_s is None else now_s
        t0 = time.perf_counter()
        self._next_tick = now + cfg.interval_s
        seen = live.recent(self._last_tick)
        self._last_tick = now
        measured = (1000 * float(np.mean(seen)) if seen else math.nan,
                    1000 * float(np.quantile(seen, cfg.quantile)) if seen else math.nan)
        self._calibrate(now)
        inp = self.inputs(now)
        if inp is None:
            share = self._default_share()
            self._offload = {c: self._offload.get(c, share) for c in live.rates(now)}
            return self._record(now, t0, None, None, 0, measured,
                                "no link samples yet: warm-up share")
        cams = sorted(c for c, r in live.rates(now).items() if r > 0)
        warm = self._vector(self._offload, now)
        models = {lv.name: OffloadModel(self.at_level(inp, lv), cfg.quantile)
                  for lv in self.profile.levels}
        plans = [self._plan(models[lv.name], lv, warm) for lv in self._candidates(models, warm)]
        plan = self._choose(plans)
        self._level = plan.level
        self._need = self._least_cloud_accuracy(plan)
        self._offload = dict(zip(cams, (float(v) for v in plan.x), strict=True))
        return self._record(now, t0, plan.model, plan.x, plan.steps, measured, plan.reason)

    def _candidates(self, models: dict[str, OffloadModel],
                    warm: np.ndarray) -> list[QualityLevel]:
        """The levels worth a full descent: the current one and the one scoring best on a
        coarse grid (the warm start and uniform shares; points meeting every constraint
        first; one batched model call per level)."""
        levels = self.profile.levels
        if len(levels) <= 2:
            return list(levels)
        cfg = self._cfg
        n = len(warm)

        def quick(lv: QualityLevel) -> tuple[int, float]:
            model = models[lv.name]
            cons = self.constraints(model, warm)
            starts = np.array([warm] + [np.full(n, v) for v in
                                        np.linspace(0.0, 1.0, 9)])
            p = model.predict(starts)
            score = p.p95_s + cfg.mean_weight * p.mean_s
            ok = np.array([violation(x, cons) < 1e-9 for x in starts])
            return (0, float(score[ok].min())) if ok.any() else (1, float(score.min()))

        others = [lv for lv in levels if lv != self._level]
        return [self._level, min(others, key=quick)]

    def _plan(self, model: OffloadModel, level: QualityLevel, warm: np.ndarray) -> _Plan:
        """The best split at one quality level: PGD under the constraints; without the
        accuracy floor if no stable split meets it; max throughput if none is stable."""
        cfg = self._cfg
        cons = self.constraints(model, warm)
        reason, floor_met = "pgd", True
        if uniform_interval(cons, 0.0) is None:
            cons = [h for h in cons if h.name != "accuracy floor"]
            reason, floor_met = "accuracy floor infeasible; pgd without it", False
        if uniform_interval(cons, 0.0) is None:
            x = self._max_throughput(model)
            p = model.predict(x)
            worst = float(max(p.edge_util, p.link_util, p.cloud_util, p.encode_util))
            return _Plan(level, model, x, math.inf, 0,
                         "overload: no stable split, max throughput", False, worst)

        def objective(X: np.ndarray) -> np.ndarray:
            p = model.predict(X)
            return p.p95_s + cfg.mean_weight * p.mean_s

        n = len(warm)
        x, fx, steps = pgd(objective, [warm, np.zeros(n), np.ones(n)], cons, lo=0.0)
        kept = project(warm, cons, lo=0.0)
        gain = float(objective(kept[None])[0]) - fx
        if violation(kept, cons) < 1e-9 and gain < cfg.hysteresis_ms / 1000:
            x, fx, reason = kept, fx + gain, f"{reason}: gain under hysteresis, kept"
        p = model.predict(x)
        worst = float(max(p.edge_util, p.link_util, p.cloud_util, p.encode_util))
        return _Plan(level, model, x, float(fx), steps, reason, floor_met, worst)

    def _choose(self, plans: list[_Plan]) -> _Plan:
        """The lowest-scoring level among those meeting the accuracy floor (the floor is
        dropped only where no level meets it); the current level unless another gains
        ``hysteresis_ms``; with no stable split at any level, the least loaded one."""
        stable = [p for p in plans if math.isfinite(p.score)]
        if not stable:
            return min(plans, key=lambda p: p.worst_util)
        pool = [p for p in stable if p.floor_met] or stable
        best = min(pool, key=lambda p: p.score)
        cfg = self._cfg
        if cfg.accuracy_floor > 0 and cfg.accuracy_reserve > 0:
            # bank accuracy where it is nearly free: a level whose split also meets
            # floor + reserve, if it scores within reserve_cost of the best
            banked = [p for p in pool if p.score <= best.score * (1 + cfg.reserve_cost)
                      and float(p.model.predict(p.x).accuracy)
                      >= cfg.accuracy_floor + cfg.accuracy_reserve]
            if banked:
                pool = banked
                best = min(pool, key=lambda p: p.score)
        current = next((p for p in pool if p.level == self._level), None)
        if current is not None and current.score - best.score < self._cfg.hysteresis_ms / 1000:
            best = current
        if len(plans) > 1:
            best = dataclasses.replace(best, reason=f"{best.reason} [level {best.level.name}]")
        return best

    def _least_cloud_accuracy(self, plan: _Plan) -> float:
        """The least accuracy a cloud frame may have for the planned split to keep the
        accuracy floor; the planned level's own when the floor was dropped."""
        inp, floor = plan.model.inputs, self._cfg.accuracy_floor
        if not plan.floor_met:
            return inp.cloud_accuracy
        lam = np.asarray(inp.rates_fps)
        lam_c = float(lam @ plan.x)
        lam_e = float(lam.sum()) - lam_c
        return (floor * (lam_e + lam_c) - lam_e * inp.edge_accuracy) / max(lam_c, 1e-9) - 1e-9

    def _next_mean(self, model: OffloadModel, x: np.ndarray, p: Prediction,
                   now: float) -> tuple[float, float]:
        """The mean latency of the frames seen back by the next step, and the longer
        path's backlog drain time: each path's known backlog (the frames sent and not seen
        back, :meth:`~autosteer.offload.live.LiveState.backlog`) drains ahead of the new
        frames at the planned split (:func:`~autosteer.offload.queueing.drain_mean`), and
        the frames to come are those of the cameras still sending (a backlog camera that
        dumped its frames at once is in the rates for a window, not in what comes next);
        the steady-state mean where nothing would come back."""
        live, horizon = self._live, self._cfg.interval_s
        cams = sorted(c for c, r in live.rates(now).items() if r > 0)
        sending = live.sending(now)
        active = np.array([sending.get(c, False) for c in cams], dtype=bool)
        if active.any() and not active.all():  # the load to come: cameras still sending
            inp = model.inputs
            rates = tuple(r if a else 0.0 for r, a in zip(inp.rates_fps, active, strict=True))
            model = OffloadModel(dataclasses.replace(inp, rates_fps=rates), model.quantile)
            p = model.predict(x)
        lam_e, lam_c, _ = (float(v[0]) for v in model.loads(x))
        ages_e, free_e = live.backlog("edge", now)
        ages_c, free_c = live.backlog("cloud", now)
        n_e, sum_e = drain_mean(ages_e, free_e, 0.0, lam_e, float(p.edge_util),
                                float(p.edge_mean_s), horizon)
        util_c = float(max(p.link_util, p.cloud_util, p.encode_util))
        n_c, sum_c = drain_mean(ages_c, free_c, live.link.delay_s, lam_c, util_c,
                                float(p.cloud_mean_s), horizon)
        backlog = max(free_e / max(1.0 - float(p.edge_util), 0.05),
                      free_c / max(1.0 - util_c, 0.05))
        if n_e + n_c <= 0:
            return float(p.mean_s), backlog
        return (sum_e + sum_c) / (n_e + n_c), backlog

    def _max_throughput(self, model: OffloadModel) -> np.ndarray:
        """One share for every camera, balancing the busiest queue on each side."""
        grid = np.linspace(0.0, 1.0, 101)
        n = len(model.inputs.rates_fps)
        p = model.predict(np.repeat(grid[:, None], n, axis=1))
        worst = np.maximum(np.maximum(p.edge_util, p.encode_util),
                           np.maximum(p.link_util, p.cloud_util))
        return np.full(n, grid[int(np.argmin(worst))])

    def _record(self, now: float, t0: float, model: OffloadModel | None, x: np.ndarray | None,
                steps: int, measured: tuple[float, float], reason: str) -> ControlDecision:
        rates, cfg = self._live.rates(now), self._cfg
        total = sum(rates.get(c, 0.0) for c in self._offload) or 1.0
        ratio = sum(rates.get(c, 0.0) * v for c, v in self._offload.items()) / total
        kw: dict[str, Any] = {}
        if model is not None and x is not None:
            p = model.predict(x)
            self._deadline_s = (cfg.deadline_ms / 1000 if cfg.deadline_ms is not None
                                else cfg.deadline_slack * float(p.p95_s))
            self._edge_batch = float(p.edge_batch)
            mean_s, backlog_s = self._next_mean(model, x, p, now)
            kw = dict(predicted_mean_ms=1000 * mean_s,
                      predicted_p95_ms=1000 * float(p.p95_s), edge_util=float(p.edge_util),
                      link_util=float(p.link_util), cloud_util=float(p.cloud_util),
                      predicted_accuracy=float(p.accuracy),
                      steady_mean_ms=1000 * float(p.mean_s), backlog_ms=1000 * backlog_s)
        self._last = ControlDecision(
            ts_s=now, offload_ratio=ratio, offload=dict(self._offload),
            measured_mean_ms=measured[0], measured_p95_ms=measured[1],
            deadline_ms=1000 * self._deadline_s, overrides=self._overrides, steps=steps,
            solve_ms=(time.perf_counter() - t0) * 1000, reason=reason,
            level=self._level.name, shed=self._shed_n, **kw)
        self._overrides = 0
        self._shed_n = 0
        log.debug("offload decision %s", self._last)
        return self._last

