"""One contract suite for every offload policy, then each baseline on hand-made cases."""

from __future__ import annotations

import pytest
from autosteer.offload import (
    CloudOnly,
    ControlConfig,
    DeepDecisionStyle,
    EdgeOnly,
    FastVAStyle,
    FixedRatio,
    FrameMeta,
    HillClimbing,
    Observation,
    OffloadController,
    Route,
    ShortestCompletion,
    SloRule,
    SystemProfile,
    TierProfile,
)

PROFILE = SystemProfile(TierProfile((0.040,), accuracy=0.9), TierProfile((0.020,), servers=2))


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


FACTORIES = {
    "fixed": lambda clock: FixedRatio(0.5),
    "edge-only": lambda clock: EdgeOnly(),
    "cloud-only": lambda clock: CloudOnly(),
    "deepdecision": lambda clock: DeepDecisionStyle(PROFILE, clock=clock),
    "fastva": lambda clock: FastVAStyle(PROFILE, clock=clock),
    "hill-climb": lambda clock: HillClimbing(PROFILE, clock=clock),
    "jsec": lambda clock: ShortestCompletion(PROFILE, clock=clock),
    "ours": lambda clock: OffloadController(PROFILE, clock=clock),
}


def frame(cam: str, seq: int, clock: Clock, size: int = 80_000) -> FrameMeta:
    return FrameMeta(cam, seq, int(clock.t * 1000), size)


def obs(f: FrameMeta, tier: str, total_ms: float, infer_ms: float, queue_ms: float = 0.0,
        link_ms: float = 0.0) -> Observation:
    return Observation(f.camera, tier, total_ms=total_ms, infer_ms=infer_ms,  # type: ignore[arg-type]
                       queue_ms=queue_ms, seq=f.seq, ts_ms=f.ts_ms, link_ms=link_ms)


def run_loop(policy, clock: Clock, n: int = 300) -> list[str]:
    """Three cameras at 10 frames/s each; every result comes back 60 ms later."""
    tiers, pending = [], []
    for i in range(n):
        clock.t = i / 30
        f = frame(f"cam{i % 3}", i // 3, clock)
        tier = policy.decide(f).tier
        tiers.append(tier)
        pending.append((clock.t + 0.06, f, tier))
        while pending and pending[0][0] <= clock.t:
            _, g, t = pending.pop(0)
            link = 30.0 if t == "cloud" else 0.0
            policy.learn(obs(g, t, total_ms=60.0, infer_ms=20.0 if t == "cloud" else 40.0,
                             queue_ms=link, link_ms=link))
    return tiers


@pytest.mark.parametrize("name", FACTORIES)
def test_contract_decides_a_tier_and_learns_anything(name: str) -> None:
    clock = Clock()
    policy = FACTORIES[name](clock)
    tiers = run_loop(policy, clock)
    assert set(tiers) <= {"edge", "cloud"}
    clock.t += 1.0
    stranger = FrameMeta("never-seen", 7, int(clock.t * 1000))
    policy.learn(obs(stranger, "cloud", 50.0, 20.0))  # a frame it never routed
    policy.learn(obs(stranger, "edge", 50.0, 40.0))
    assert policy.decide(FrameMeta("new-cam", 0, int(clock.t * 1000))).tier in ("edge", "cloud")
    assert type(policy).__name__ in repr(policy)


@pytest.mark.parametrize("name", FACTORIES)
def test_contract_same_inputs_same_decisions(name: str) -> None:
    a, b = Clock(), Clock()
    assert run_loop(FACTORIES[name](a), a) == run_loop(FACTORIES[name](b), b)


def test_edge_only_and_cloud_only() -> None:
    c = Clock()
    assert set(run_loop(EdgeOnly(), c, 30)) == {"edge"}
    assert set(run_loop(CloudOnly(), c, 30)) == {"cloud"}


def test_jsec_joins_the_shortest_expected_completion() -> None:
    clock = Clock()
    p = ShortestCompletion(PROFILE, clock=clock)
    first = frame("c", 0, clock)
    assert p.decide(first).tier == "cloud"  # 20 ms (transfer unknown) beats 40 ms
    p.learn(obs(first, "cloud", 250.0, 20.0, queue_ms=200.0, link_ms=200.0))
    assert p.decide(frame("c", 1, clock)).tier == "edge"  # 200 ms on the link: edge it is
    tiers = [p.decide(frame("c", i, clock)).tier for i in range(2, 10)]  # edge queue builds up
    assert tiers[:4] == ["edge"] * 4 and "cloud" in tiers


def test_fastva_takes_the_accurate_tier_when_it_meets_the_deadline() -> None:
    clock = Clock()
    p = FastVAStyle(PROFILE, deadline_ms=100.0, clock=clock)
    first = frame("c", 0, clock)
    assert p.decide(first).tier == "cloud"
    clock.t = 1.0
    p.learn(obs(first, "cloud", 320.0, 20.0, queue_ms=300.0, link_ms=300.0))
    assert p.decide(frame("c", 1, clock)).tier == "edge"  # cloud misses 100 ms, edge meets it
    tiers = [p.decide(frame("c", i, clock)).tier for i in range(2, 6)]
    assert tiers[0] == "edge"  # edge done at 80 ms still meets the deadline
    assert tiers[-1] == "edge"  # both miss: whichever finishes first (edge < 300 ms cloud)


def feed_link(policy, clock: Clock, transit_ms: float, n: int = 20) -> None:
    """Teach a policy's live state the link by routing frames to the cloud by hand."""
    live = policy.live
    for i in range(n):
        f = frame("cam", 1000 + i, clock)
        live.arrive(f, clock.t)
        live.dispatch(f, "cloud", clock.t)
        live.learn(obs(f, "cloud", transit_ms + 20, 20.0, transit_ms, transit_ms),
                   clock.t + transit_ms / 1000)
        clock.t += 0.05


def test_deepdecision_picks_the_most_accurate_split_that_fits() -> None:
    clock = Clock()
    p = DeepDecisionStyle(PROFILE, deadline_ms=200.0, clock=clock)
    feed_link(p, clock, transit_ms=15.0)  # fast link: cloud path well inside the deadline
    p.decide(frame("cam", 0, clock))
    clock.t += 1.1
    p.decide(frame("cam", 1, clock))
    assert p.share == 1.0
    slow = DeepDecisionStyle(PROFILE, deadline_ms=200.0, clock=clock)
    feed_link(slow, clock, transit_ms=400.0)  # the cloud path alone misses the deadline
    slow.decide(frame("cam", 0, clock))
    clock.t += 1.1
    slow.decide(frame("cam", 1, clock))
    assert slow.share == 0.0


def test_hill_climbing_reverses_when_p95_worsens() -> None:
    clock = Clock()
    p = HillClimbing(PROFILE, step=0.05, period_s=1.0, clock=clock)
    shares = []
    for period, latency in enumerate((50.0, 50.0, 500.0, 500.0)):
        for i in range(10):  # the first frame of a period triggers the update on the last
            clock.t = period + i * 0.09
            f = frame("cam", period * 10 + i, clock)
            t = p.decide(f).tier
            if i == 0 and period > 0:
                shares.append(p.share)
            p.learn(obs(f, t, latency, 20.0))
    assert shares[1] > shares[0] > 0.5  # not worse: keep climbing
    assert shares[2] < shares[1]  # worse: turn around


def test_fixed_ratio_is_smooth_not_a_coin_flip() -> None:
    p = FixedRatio(0.3)
    tiers = [p.decide(FrameMeta("c", i, 0)).tier for i in range(100)]
    for start in range(0, 90):
        assert abs(tiers[start:start + 10].count("edge") - 3) <= 1


def test_ours_accepts_a_config() -> None:
    p = OffloadController(PROFILE, ControlConfig(interval_s=0.5), clock=Clock())
    assert "interval_s=0.5" in repr(p)


# -- the SLO and shedding: the same rule for every policy that keeps estimates ----------
SLO_FACTORIES = {
    "deepdecision": lambda clock, **kw: DeepDecisionStyle(PROFILE, clock=clock, **kw),
    "fastva": lambda clock, **kw: FastVAStyle(PROFILE, clock=clock, **kw),
    "hill-climb": lambda clock, **kw: HillClimbing(PROFILE, clock=clock, **kw),
    "jsec": lambda clock, **kw: ShortestCompletion(PROFILE, clock=clock, **kw),
    "ours": lambda clock, **kw: OffloadController(
        PROFILE, ControlConfig(**kw), clock=clock),
}


def chunk(policy, clock: Clock, n: int = 40) -> list[Route]:
    """``n`` frames of a new camera all at once (a backlog dumped on the router)."""
    return [policy.decide(frame("backlog", i, clock)) for i in range(n)]


@pytest.mark.parametrize("name", FACTORIES)
def test_contract_route_of_reads_one_route_and_sheds_nothing_without_an_slo(name: str) -> None:
    clock = Clock()
    policy = FACTORIES[name](clock)
    run_loop(policy, clock, 60)
    routes = chunk(policy, clock)
    assert {r.tier for r in routes} <= {"edge", "cloud"}
    assert not any(r.shed for r in routes)
    assert all(r.level.is_full for r in routes if r.tier == "edge")
    assert not any(r.copy for r in routes if r.tier == "cloud")


@pytest.mark.parametrize("name", SLO_FACTORIES)
def test_contract_sheds_only_hopeless_frames_within_the_budget(name: str) -> None:
    """A frame is shed only when, by the policy's own estimates, no tier at any level
    answers it within the SLO, and only within the budget; a shed frame is queued
    nowhere. The chunk is 100 ms old: an empty edge (40 ms) answers it in time, a queued
    one does not."""
    clock = Clock()
    policy = SLO_FACTORIES[name](clock, slo_ms=150.0, shed_budget=0.2)
    run_loop(policy, clock, 60)
    assert "slo_ms=150.0" in repr(policy) and "shed_budget=0.2" in repr(policy)
    live = policy.live
    hopeless, routes, queued = [], [], 0
    for i in range(40):
        f = FrameMeta("backlog", i, int(clock.t * 1000) - 100, 80_000)
        hopeless.append(0.100 + live.soonest_s(f.size_bytes, clock.t) > 0.150)
        before = live.outstanding("edge") + live.outstanding("cloud")
        routes.append(policy.decide(f))
        queued = live.outstanding("edge") + live.outstanding("cloud") - before
        if routes[-1].shed:
            assert queued == 0  # nothing shed was queued anywhere
    shed = [r for r, h in zip(routes, hopeless, strict=True) if r.shed]
    assert all(h for r, h in zip(routes, hopeless, strict=True) if r.shed)
    assert bool(shed) == any(hopeless)  # (DeepDecision keeps its edge empty: none are)
    if name in ("ours", "fastva", "jsec"):  # per-frame routers fill both tiers
        assert shed
    assert all(r.shed_reason.startswith("hopeless: ") and "SLO 150 ms" in r.shed_reason
               for r in shed)
    assert not any(r.copy for r in shed) and all(r.level.is_full for r in shed)
    assert len(shed) <= 0.2 * (60 + 40)  # within the budget of the last 10 s


@pytest.mark.parametrize("name", SLO_FACTORIES)
def test_contract_no_budget_means_no_shedding(name: str) -> None:
    clock = Clock()
    policy = SLO_FACTORIES[name](clock, slo_ms=150.0, shed_budget=0.0)
    run_loop(policy, clock, 60)
    assert not any(r.shed for r in chunk(policy, clock))


@pytest.mark.parametrize("name", SLO_FACTORIES)
def test_contract_an_old_frame_is_hopeless_whatever_the_queues(name: str) -> None:
    """The SLO runs from capture: a frame that waited 1 s before the router is hopeless
    under a 150 ms SLO even when every queue is empty."""
    clock = Clock()
    policy = SLO_FACTORIES[name](clock, slo_ms=150.0, shed_budget=1.0)
    clock.t = 1.0
    assert policy.decide(FrameMeta("cam", 0, 0, 80_000)).shed
    assert not policy.decide(frame("cam", 1, clock)).shed


def test_slo_rule_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="slo_ms must be > 0"):
        SloRule(slo_ms=0.0)
    with pytest.raises(ValueError, match="shed_budget"):
        SloRule(200.0, shed_budget=1.5)
    with pytest.raises(ValueError, match="shed_budget"):
        ControlConfig(slo_ms=200.0, shed_budget=-0.1)
    assert not SloRule().hopeless(age_s=100.0, soonest_s=100.0)  # no SLO: never hopeless
