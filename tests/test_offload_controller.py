"""The model-based controller: routing, control steps, constraints, records, reactions."""

from __future__ import annotations

import heapq
import logging
from collections import deque

import pytest
from autosteer.offload import (
    ControlConfig,
    EmulatedLink,
    FrameMeta,
    LiveState,
    Observation,
    OffloadController,
    OffloadModel,
    SystemProfile,
    TierProfile,
)

PROFILE = SystemProfile(TierProfile((0.040,), accuracy=0.9),
                        TierProfile((0.020, 0.036, 0.050, 0.064), servers=2))


class World:
    """Cameras -> policy -> edge (FIFO, one server) | link -> cloud (k servers, batches).
    Copies the policy asks for go over the link too; only the policy sees their results."""

    def __init__(self, config: ControlConfig | None = None, cameras: int = 4,
                 fps: float = 8.0, bandwidth_bps: float = 50e6, delay_s: float = 0.010,
                 edge_s: float = 0.040, shared: float = 0.0) -> None:
        self.now = 0.0
        self.ctl = OffloadController(PROFILE, config, clock=lambda: self.now)
        self.link = EmulatedLink(bandwidth_bps, delay_s, jitter_s=0.001, seed=1)
        self.edge_s = edge_s
        self.shared = shared  # edge time x (1 + shared x cloud frames/s): shared cores
        self.cloud_done: deque[float] = deque()
        self.cameras, self.fps = cameras, fps
        self.events: list = []
        self.n = 0
        self.latency: list[tuple[float, float]] = []  # (arrival, end to end)
        self.decisions: list = []  # every control record, in order
        self.copies = 0

    def at(self, t: float, kind: str, data: object) -> None:
        self.n += 1
        heapq.heappush(self.events, (t, self.n, kind, data))

    def run(self, until: float, changes: dict[float, tuple[str, float]] | None = None) -> None:
        for c in range(self.cameras):
            t, seq = c * 0.017, 0
            while t < until:
                self.at(t, "arrive", (f"cam{c}", seq, t))
                t, seq = t + 1 / self.fps, seq + 1
        for t, change in (changes or {}).items():
            self.at(t, "change", change)
        edge_q: deque = deque()
        cloud_q: deque = deque()
        edge_busy, cloud_free = False, PROFILE.cloud.servers
        while self.events:
            t, _, kind, data = heapq.heappop(self.events)
            self.now = t
            if kind == "change":
                what, factor = data
                if what == "edge":
                    self.edge_s *= factor
                else:
                    self.link.set(delay_s=self.link.delay_s * factor)
            elif kind == "arrive":
                cam, seq, t0 = data
                route = self.ctl.decide(FrameMeta(cam, seq, int(round(t0 * 1000)), 80_000))
                tier = route.tier
                d = self.ctl.last_decision()
                if not self.decisions or d is not self.decisions[-1]:
                    self.decisions.append(d)
                if tier == "edge":
                    edge_q.append((data, t))
                    if route.copy:
                        self.copies += 1
                        transit = self.link.transit_s(80_000, t)
                        self.at(t + transit, "cloud_in", ((*data, True), t, transit))
                else:
                    transit = self.link.transit_s(80_000, t)
                    self.at(t + transit, "cloud_in", (data, t, transit))
            elif kind == "cloud_in":
                cloud_q.append(data)
            elif kind == "done":
                tier, batch, started, service = data
                for (cam, seq, t0, *copy), routed, transit in batch:
                    back = t + (self.link.delay_s if tier == "cloud" else 0.0)
                    if not copy:
                        self.latency.append((t0, back - t0))
                    ts = round(t0 * 1000) / 1000
                    self.at(back + 0.005, "observe", Observation(
                        cam, tier, total_ms=(back - ts) * 1000,
                        infer_ms=service / len(batch) * 1000,
                        queue_ms=(started - routed) * 1000, seq=seq, ts_ms=int(round(t0 * 1000)),
                        link_ms=transit * 1000, copy=bool(copy)))
                if tier == "edge":
                    edge_busy = False
                else:
                    cloud_free += 1
                    self.cloud_done.extend([t] * len(batch))
            elif kind == "observe":
                self.ctl.learn(data)
            if not edge_busy and edge_q:
                (d, routed) = edge_q.popleft()
                edge_busy = True
                while self.cloud_done and self.cloud_done[0] < self.now - 2.0:
                    self.cloud_done.popleft()
                s = self.edge_s * (1 + self.shared * len(self.cloud_done) / 2.0)
                self.at(self.now + s, "done", ("edge", [(d, routed, 0.0)], self.now, s))
            while cloud_free and cloud_q:
                batch = [cloud_q.popleft() for _ in range(min(4, len(cloud_q)))]
                cloud_free -= 1
                s = PROFILE.cloud.service_s(len(batch))
                self.at(self.now + s, "done", ("cloud", batch, self.now, s))


def test_config_errors_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        ControlConfig(interval_s=0)
    with pytest.raises(ValueError, match="max_util"):
        ControlConfig(max_util=1.5)
    with pytest.raises(ValueError, match="explore <= warmup_offload"):
        ControlConfig(explore=0.5, warmup_offload=0.1)


def test_routing_realises_the_split_smoothly() -> None:
    """With no slack and no data yet, the warm-up share is dealt out exactly: any 10
    consecutive frames hold 2 cloud frames, whatever camera they come from."""
    ctl = OffloadController(PROFILE, ControlConfig(slack=0.0, warmup_offload=0.2),
                            clock=lambda: 0.0)
    tiers = [ctl.decide(FrameMeta(f"cam{i % 3}", i, 0, 80_000)).tier for i in range(200)]
    for start in range(190):
        assert tiers[start:start + 10].count("cloud") == 2
    assert ctl.last_decision().reason == "no link samples yet: warm-up share"


def test_slack_bounds_how_far_the_split_strays() -> None:
    ctl = OffloadController(PROFILE, ControlConfig(slack=1.0, warmup_offload=0.3),
                            clock=lambda: 0.0)
    cloud = 0
    for i in range(300):
        cloud += ctl.decide(FrameMeta("cam", i, 0, 80_000)).tier == "cloud"
        assert abs(cloud - 0.3 * (i + 1)) <= 2.0 + 1e-9


def test_deadline_override_when_the_edge_queue_spikes() -> None:
    cfg = ControlConfig(auto_tick=False, explore=0.0, warmup_offload=0.0, slack=0.0,
                        deadline_ms=100.0)
    ctl = OffloadController(PROFILE, cfg, clock=lambda: 0.0)
    ctl._deadline_s = 0.100  # no control step runs here; arm the deadline by hand
    tiers = [ctl.decide(FrameMeta("cam", i, 0, 80_000)).tier for i in range(3)]
    assert tiers == ["edge", "edge", "cloud"]  # the third would finish at 120 ms on the edge
    assert ctl.tick(0.0).overrides == 1


def test_converges_to_a_stable_split_and_records_decisions() -> None:
    w = World()
    w.run(20.0)
    d = w.ctl.last_decision()
    assert d is not None and d.reason.startswith("pgd")
    assert 0.2 < d.offload_ratio < 1.0  # 32 frames/s cannot all run on a 25 frames/s edge
    assert d.edge_util <= 0.95 + 1e-6 and d.link_util < 0.95
    assert d.predicted_mean_ms == pytest.approx(d.measured_mean_ms, rel=0.3)
    assert set(d.offload) == {f"cam{i}" for i in range(4)}
    late = sorted(e for t0, e in w.latency if t0 > 5)
    assert late[int(0.95 * len(late))] < 0.150  # stable: no queue runs away


def test_prediction_matches_the_model() -> None:
    w = World()
    w.run(10.0)
    inp = w.ctl.inputs(w.now)
    assert inp is not None
    assert float(w.ctl.predict(0.5).mean_s) == pytest.approx(
        float(OffloadModel(inp).predict(0.5).mean_s))


def test_accuracy_floor_raises_the_cloud_share() -> None:
    w = World(ControlConfig(accuracy_floor=0.98))
    w.run(10.0)
    assert w.ctl.last_decision().offload_ratio >= 0.8 - 1e-6  # 0.9 + 0.1 x >= 0.98


def test_infeasible_accuracy_floor_is_dropped_and_said_so() -> None:
    w = World(ControlConfig(accuracy_floor=0.99), bandwidth_bps=10e6, delay_s=0.05)
    w.run(10.0)
    assert "accuracy floor infeasible" in w.ctl.last_decision().reason


def test_overload_maximises_throughput() -> None:
    w = World(cameras=6, fps=10.0, bandwidth_bps=10e6, delay_s=0.05)  # 60/s > 25 + 15.6
    w.run(8.0)
    d = w.ctl.last_decision()
    assert d.reason.startswith("overload")
    assert 0.3 < d.offload_ratio < 0.5  # both sides about equally saturated


@pytest.mark.parametrize("change,more_cloud", [(("edge", 3.0), True),
                                               (("delay", 10.0), False)])
def test_reconverges_within_a_few_control_steps(change: tuple[str, float],
                                                more_cloud: bool) -> None:
    """Edge 3x slower: offload more. RTT x10 on the cloud path: offload less."""
    w = World()
    w.run(40.0, changes={20.0: change})
    before = [d.offload_ratio for d in w.decisions if 10 <= d.ts_s < 20]
    after = [d.offload_ratio for d in w.decisions if d.ts_s >= 20]
    settled = after[-5:]
    assert max(settled) - min(settled) < 0.05
    moved = min(settled) - max(before) if more_cloud else min(before) - max(settled)
    assert moved > 0.1
    band = [abs(r - settled[-1]) <= 0.05 for r in after]
    first = next(i for i in range(len(band)) if all(band[i:]))
    assert first + 1 <= 4  # within four control intervals of the change


def test_a_failing_control_step_never_breaks_routing(monkeypatch, caplog) -> None:
    w = World()
    w.run(5.0)

    def boom(self, x):
        raise FloatingPointError("model blew up")

    monkeypatch.setattr(OffloadModel, "predict", boom)
    with caplog.at_level(logging.ERROR):
        w.now += 2.0
        assert w.ctl.decide(FrameMeta("cam0", 10_000, int(w.now * 1000), 80_000)).tier in (
            "edge", "cloud")
    assert "control step failed" in caplog.text


def test_learns_that_the_tiers_share_cores() -> None:
    w = World(shared=0.05)  # each cloud frame/s makes the edge 5% slower
    w.run(30.0)
    d = w.ctl.last_decision()
    assert w.ctl.live.slowdown["edge"].k == pytest.approx(0.05, rel=0.5)
    assert w.ctl.live.slowdown["cloud"].k < 0.01  # the cloud does not slow down
    assert d.predicted_mean_ms == pytest.approx(d.measured_mean_ms, rel=0.3)


def test_probes_the_link_with_frame_pairs() -> None:
    # the warm-up sends isolated frames: their transits only bound the bandwidth (from
    # below, by a factor of about 1.8 here), which alone would read as a saturated link
    w = World(ControlConfig(accuracy_floor=0.99), bandwidth_bps=10e6, delay_s=0.05)
    w.run(5.0)
    link = w.ctl.live.link
    assert link.pairs >= 3
    assert link.bandwidth_Bps * 8 == pytest.approx(10e6, rel=0.05)
    assert link.delay_s == pytest.approx(0.05, abs=0.005)


def test_pipeline_overheads_come_from_the_latency_fields() -> None:
    live = LiveState(PROFILE)
    for i in range(64):
        f = FrameMeta("cam0", i, ts_ms=i * 100, size_bytes=80_000)
        live.arrive(f, i / 10)
        live.dispatch(f, "edge", i / 10)
        hop = 5.0 + i % 10 + (200.0 if i % 16 == 0 else 0.0)  # now and then a backlog
        live.learn(Observation("cam0", "edge", total_ms=60 + hop, infer_ms=40.0, queue_ms=3.0,
                               seq=i, ts_ms=i * 100, ingest_ms=2.0, route_ms=10.0,
                               link_ms=hop), i / 10 + 0.06 + hop / 1000)
    assert live.hop_s == pytest.approx(0.005, abs=0.001)  # the hop without the backlog
    assert live.overhead_s("edge") == pytest.approx(0.012 + live.hop_s, rel=0.05)
    assert live.overhead_s("cloud") == pytest.approx(0.012, rel=0.05)
    assert live.finished("edge", 6.4) == pytest.approx(10.0, rel=0.1)


def test_replan_solves_again_from_the_default_split_and_says_why() -> None:
    """A root cause's replan action: one control step now, not warm-started from the
    split the old conditions left, with the cause in the decision's reason."""
    from autosteer.rootcause.actions import ControlAction

    w = World()
    w.run(20.0)
    before = w.ctl.last_decision()
    action = ControlAction(anomaly_id="a", kind="replan", cause_type="link_degradation",
                           reason="node=cloud-1 queue_ms 20 -> 300")
    d = w.ctl.replan(action)
    assert d is w.ctl.last_decision() and d is not before
    assert d.reason.startswith("replan (node=cloud-1 queue_ms 20 -> 300): pgd")
    assert set(d.offload) == set(before.offload)
    assert abs(d.offload_ratio - before.offload_ratio) < 0.15  # same conditions, same answer


def test_keeps_measuring_the_cloud_with_copies_when_it_sends_it_nothing() -> None:
    # a slow link: every frame is faster on the edge, so the split sends the cloud nothing;
    # the explore share of edge frames is copied to the cloud instead (the edge answers)
    w = World(ControlConfig(explore=0.02), cameras=2, fps=5.0, bandwidth_bps=10e6,
              delay_s=0.1)
    w.run(60.0)
    late = [d for d in w.decisions if d.ts_s > 20]
    assert all(d.offload_ratio == 0.0 for d in late), [d.offload_ratio for d in late]
    assert w.copies == pytest.approx(0.02 * 600, abs=12)  # warm-up probe pairs included
    link = w.ctl.live.link
    assert link.samples >= 10, "the copies' transits feed the link estimate"
    assert w.ctl.live.outstanding("cloud") <= 1, "copies are retired as they come back"
    measured = [d.measured_mean_ms for d in late if d.measured_mean_ms == d.measured_mean_ms]
    assert max(measured) < 100, "a copy's latency is not measured as a frame's"


def test_the_router_tells_the_controller_of_its_agreement_shadows() -> None:
    """An agreement shadow of an edge frame loads the link and the cloud like a copy of
    the controller's own: ``route`` tells the controller (``count_copy``) before the next
    frame is decided, marks the frame a counted copy, and it stands in for an explore copy.
    A policy that keeps no count gets a plain shadow."""
    import numpy as np
    from autosteer.offload import FixedRatio
    from autosteer.processors.decode import encode_jpeg
    from autosteer.streams.pipeline import Incoming, route
    from autosteer.topics.records import FrameRecord

    jpeg = encode_jpeg(np.zeros((48, 64, 3), dtype=np.uint8), 85)
    frames = [Incoming(FrameRecord(camera="cam1", seq=i, ts_ms=i * 100, jpeg=jpeg).dumps(),
                       b"cam1") for i in range(20)]
    ctl = OffloadController(PROFILE, ControlConfig(warmup_offload=0.0, explore=0.0, slack=0.0),
                            clock=lambda: 1.0)
    routed, _ = route(frames, ctl, shadow_due=lambda camera: True)
    assert all(r.tier == "edge" and r.shadow and r.copy for r in routed)
    assert ctl.live.outstanding("cloud") == 20 and ctl.live.outstanding("edge") == 20
    routed, _ = route(frames[:4], FixedRatio(1.0), shadow_due=lambda camera: True)
    assert all(r.shadow and not r.copy for r in routed)
    routed, _ = route(frames[:4], ctl)  # no shadows due: only what the policy asks for
    assert not any(r.shadow or r.copy for r in routed)


def test_the_prediction_drains_a_known_backlog_first() -> None:
    """A 30-frame chunk of a new camera lands: the steady state reads it as a rate, but
    what comes back next is the chunk itself, old already. The recorded prediction has the
    backlog; without one it is the steady state."""
    w = World()
    w.run(10.0)
    ctl = w.ctl
    calm = ctl.tick(w.now)
    assert calm.backlog_ms < 100
    assert calm.predicted_mean_ms == pytest.approx(calm.steady_mean_ms, rel=0.25)
    for i in range(30):
        ctl.decide(FrameMeta("backlog0", i, int(w.now * 1000), 80_000))
    burst = ctl.tick(w.now)
    assert burst.backlog_ms > 300  # 30 frames on a 40 ms edge and 2 cloud servers
    assert burst.predicted_mean_ms > 1.5 * burst.steady_mean_ms


def test_sheds_hopeless_frames_and_counts_them_in_the_record() -> None:
    w = World(ControlConfig(slo_ms=150.0, shed_budget=0.05))
    w.run(10.0)
    ctl = w.ctl
    ctl.tick(w.now)
    reasons = []
    for i in range(30):
        reasons.append(ctl.decide(FrameMeta("backlog0", i, int(w.now * 1000), 80_000)).shed_reason)
    shed = [r for r in reasons if r]
    assert shed and all(r.startswith("hopeless") for r in shed)
    assert reasons[0] is None  # the first of the chunk still makes it
    assert ctl.tick(w.now).shed == len(shed)
    assert ctl.tick(w.now).shed == 0  # counted once


def test_link_bandwidth_never_below_what_most_transits_prove() -> None:
    """Arrivals seen only at a consumer's fetch: two queued 100 KB frames show up one
    50 ms fetch cycle apart (2 MB/s by the pair), while each crossed in 20 ms (5 MB/s
    at least): the estimate keeps the bound's median, not the fetch cycle."""
    from autosteer.offload.estimate import LinkEstimator

    link = LinkEstimator()
    for i in range(10):
        t = i * 1.0
        link.sent(("a", i), 100_000, t)
        link.sent(("b", i), 100_000, t + 0.001)  # right behind: they queue
        link.learn(("a", i), 0.020)
        link.learn(("b", i), 0.069)  # seen one fetch later
    assert link.pairs >= 3  # each said 2 MB/s
    assert link.bandwidth_Bps > 3e6  # the median transit bound: (5 + 1.45) / 2 MB/s
