"""The router and the SLO on the in-memory bus: a frame the policy sheds is answered at
once with ``status: "shed"`` and the reason, sent to no tier (not even as a copy), counted
apart from the routed frames, and never taught to the policy; the settings' SLO and shed
budget reach ours and every baseline; the policy registry and the settings agree."""

from __future__ import annotations

import typing

import pytest
from autosteer.offload import FrameMeta, Observation, OffloadController, Route
from autosteer.offload.factory import POLICIES, make_policy
from autosteer.settings import Settings
from autosteer.streams.roles.router import Router
from autosteer.topics.records import Detection
from test_roles import Learner, events, frame, rt, run


class Shedding(Learner):
    """Sheds every other frame (odd seq) with a fixed reason; the rest by the fixed split."""

    def __init__(self, edge_ratio: float, copy: bool = False) -> None:
        super().__init__(edge_ratio)
        self.copy = copy
        self.decided: list[int] = []

    def decide(self, frame: FrameMeta) -> Route:
        self.decided.append(frame.seq)
        r = super().decide(frame)
        if frame.seq % 2:
            return Route(r.tier, shed_reason="hopeless: 400 ms at best > SLO 150 ms")
        return Route("edge", copy=True) if self.copy and r.tier == "edge" else r


def test_a_shed_frame_is_answered_shed_with_its_reason_and_sent_nowhere() -> None:
    r = rt(shadow_rate=0.0)
    policy = Shedding(0.5)
    router = Router(r, policy, link=None)
    run(r.handlers["router"](events([frame(i, age_ms=300) for i in range(6)],
                                    topic="u.frames")))
    assert policy.decided == list(range(6))  # one decide per frame
    shed = [Detection.parse(v) for v in r.bus.values("u.detections")]
    assert [d.seq for d in shed] == [1, 3, 5]
    assert all(d.status == "shed" and d.boxes == [] and d.node == "n1" for d in shed)
    assert all(d.reason == "hopeless: 400 ms at best > SLO 150 ms" for d in shed)
    assert all(d.latency.total_ms >= 300 for d in shed)  # its age when it was shed
    keys = [k for t, k, _v, _h in r.bus.sent if t == "u.detections"]
    assert keys == [b"cam1:1", b"cam1:3", b"cam1:5"]  # the idempotent result key
    sent = [d for t in ("u.frames.edge", "u.frames.cloud") for d in r.bus.values(t)]
    assert len(sent) == 3  # the three kept frames, and nothing of the shed ones
    assert router.shed == 3 and sum(router.routed.values()) == 3
    assert router.offload_ratio == pytest.approx(
        router.routed["cloud"] / 3)  # the cloud share of the routed frames only
    assert r.bus.letters == []


def test_a_shed_frame_gets_no_copy_and_no_agreement_shadow() -> None:
    r = rt(shadow_rate=1.0)  # every edge frame is due an agreement shadow
    router = Router(r, Shedding(1.0, copy=True), link=None)
    run(r.handlers["router"](events([frame(0), frame(1)], topic="u.frames")))
    cloud = r.bus.values("u.frames.cloud")
    assert len(cloud) == 1 and router.pairing.waiting == 1  # frame 0's copy only
    assert router.shed == 1 and router.routed == {"edge": 1, "cloud": 0}


def test_shed_answers_teach_the_policy_nothing() -> None:
    r = rt(shadow_rate=0.0)
    policy = Shedding(1.0)
    Router(r, policy, link=None)
    run(r.handlers["router"](events([frame(1)], topic="u.frames")))
    (value,) = r.bus.values("u.detections")
    run(r.handlers["feedback"](events([value])))  # the router reads its own answer back
    assert policy.seen == []


def test_without_an_slo_the_controller_sheds_nothing_on_the_router() -> None:
    r = rt(shadow_rate=0.0, offload_policy="controller")
    router = Router(r, make_policy(r.settings), link=None)
    run(r.handlers["router"](events([frame(i, age_ms=5_000) for i in range(20)],
                                    topic="u.frames")))
    assert router.shed == 0 and sum(router.routed.values()) == 20


def test_with_an_slo_and_a_budget_the_controller_sheds_old_frames_on_the_router() -> None:
    """A frame captured 2 s ago is hopeless under a 150 ms SLO whatever the queues; the
    budget (a quarter of the frames of the last 10 s) bounds how many go."""
    r = rt(shadow_rate=0.0, offload_policy="controller", slo_ms=150.0, shed_budget=0.25)
    router = Router(r, make_policy(r.settings), link=None)
    run(r.handlers["router"](events([frame(i, age_ms=2_000) for i in range(20)],
                                    topic="u.frames")))
    shed = [Detection.parse(v) for v in r.bus.values("u.detections")]
    assert router.shed == len(shed) == 5  # 5 of 20: exactly the budget
    assert all(d.reason.startswith("hopeless: ") and "SLO 150 ms" in d.reason for d in shed)
    assert sum(router.routed.values()) == 15


@pytest.mark.parametrize("name", ["controller", "deepdecision", "fastva", "hill-climbing",
                                  "jsec"])
def test_the_settings_slo_and_budget_reach_every_policy_that_estimates(name: str) -> None:
    p = make_policy(Settings(offload_policy=name, slo_ms=150, shed_budget=0.2))
    text = repr(p)
    assert "slo_ms=150.0" in text and "shed_budget=0.2" in text
    if name in ("deepdecision", "fastva"):  # their own deadline is the SLO
        assert "deadline_ms=150.0" in text
    off = make_policy(Settings(offload_policy=name))
    assert "slo_ms=None" in repr(off) and "shed_budget=0.0" in repr(off)


def test_every_policy_the_settings_allow_is_in_the_registry_and_back() -> None:
    allowed = typing.get_args(Settings.model_fields["offload_policy"].annotation)
    assert tuple(POLICIES) == allowed  # one list: the registry's names are the Literal's
    for name in allowed:
        p = make_policy(Settings(offload_policy=name))
        route = p.decide(FrameMeta("cam1", 0, 0, 80_000))
        assert isinstance(route, Route) and route.tier in ("edge", "cloud")
        p.learn(Observation("cam1", route.tier, total_ms=50.0, infer_ms=20.0, queue_ms=0.0))


def test_a_route_that_copies_a_cloud_or_shed_frame_is_refused() -> None:
    with pytest.raises(ValueError, match="only an edge frame is copied"):
        Route("cloud", copy=True)
    with pytest.raises(ValueError, match="a shed frame is sent nowhere"):
        Route("edge", copy=True, shed_reason="hopeless")


def test_the_controller_decides_one_route_and_keeps_no_per_frame_attributes() -> None:
    """The seam of #16: everything the router needs is in the Route ``decide`` returns."""
    ctl = make_policy(Settings(offload_policy="controller"))
    assert isinstance(ctl, OffloadController)
    ctl.decide(FrameMeta("cam1", 0, 0, 80_000))
    assert not hasattr(ctl, "copy") and not hasattr(ctl, "shed")


def test_the_way_back_to_the_router_is_measured_into_what_the_policy_learns() -> None:
    """A result published 200 ms after capture and read back by the router 50 ms later:
    the policy learns 250 ms, with ``back_ms`` 50 (plus any emulated return leg)."""
    from autosteer.streams.pipeline import observations
    from test_roles import detection

    d = detection(1).model_copy(update={"ts_ms": 1_000})
    d = d.model_copy(update={"latency": d.latency.model_copy(update={"total_ms": 200.0})})
    (obs,) = observations([d], [1_250])
    assert obs.total_ms == 250.0 and obs.back_ms == 50.0
    (unknown,) = observations([d])  # not measured: as on the wire
    assert unknown.total_ms == 200.0 and unknown.back_ms is None
    ret = d.model_copy(update={"latency": d.latency.model_copy(update={"return_ms": 30.0})})
    assert observations([ret], [1_250])[0].back_ms == 80.0


def test_the_measured_way_back_enters_the_policys_overheads() -> None:
    from autosteer.offload.live import LiveState
    from autosteer.offload.profiles import SystemProfile, TierProfile

    live = LiveState(SystemProfile(TierProfile((0.040,)), TierProfile((0.020,), 2)))
    assert live.back_s("edge") == 0.0 and live.back_s("cloud") == 0.0  # not measured
    for i in range(3):
        live.learn(Observation("c", "edge", total_ms=100.0, infer_ms=40.0, queue_ms=0.0,
                               seq=i, back_ms=30.0), now_s=1.0)
    assert live.back_s("edge") == pytest.approx(0.030)
    assert live.overhead_s("edge") == pytest.approx(0.030)  # no ingest, route or hop here
