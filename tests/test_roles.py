"""Every role on the in-memory bus, with no broker and no ClickHouse: the router and its
feedback, shadow pairing, the canary judge, drift -> retrain request, root cause ->
action, the action follower -> replan, the detector (and its crash recovery), and model
rollout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from autosteer.anomaly.records import Anomaly
from autosteer.offload.policy import FixedRatio, FrameMeta, Observation, Route, Tier
from autosteer.processors.decode import encode_jpeg
from autosteer.retrain.records import ModelUpdate, RetrainRequest
from autosteer.rootcause.actions import ControlAction
from autosteer.rootcause.records import Cause, RootCause
from autosteer.settings import Settings
from autosteer.streams.roles.control import ActionFollower, ControlPlane
from autosteer.streams.roles.detector import DetectorRole, Faults
from autosteer.streams.roles.drift import DriftWatch
from autosteer.streams.roles.rollout import ModelRollout, RolloutJudge
from autosteer.streams.roles.router import Router
from autosteer.streams.roles.shadows import ShadowPairing, ShadowSampler
from autosteer.streams.roles.telemetry import Tap
from autosteer.streams.runtime import MemoryRuntime
from autosteer.topics import headers as H
from autosteer.topics.records import (
    Box,
    Detection,
    FrameRecord,
    Latency,
    OffloadDecision,
    QualityRecord,
    ShadowResult,
    now_ms,
)


# --- what a Faust event looks like to the roles ----------------------------------------
@dataclass
class Message:
    value: bytes | None
    key: bytes | None = None
    topic: str = "t"
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: float = 0.0
    time_in: float = 0.0
    refs: int = 0

    def incref(self) -> None:
        self.refs += 1


@dataclass
class Event:
    message: Message
    acked: int = 0

    def ack(self) -> None:
        self.acked += 1
        self.message.refs -= 1


def events(values: Sequence[bytes], topic: str = "t", headers: Any = None) -> list[Event]:
    return [Event(Message(v, None, topic, 0, i, list(headers or []))) for i, v in
            enumerate(values)]


LOOP = asyncio.new_event_loop()  # one loop: a role's tasks outlive the call that made them


def run(coro: Any) -> Any:
    return LOOP.run_until_complete(coro)


def rt(**kw: Any) -> MemoryRuntime:
    return MemoryRuntime(Settings(topic_prefix="u", node="n1", **kw))


JPEG = encode_jpeg(np.full((48, 64, 3), 128, np.uint8))


def frame(seq: int, camera: str = "cam1", jpeg: bytes = JPEG, age_ms: int = 0) -> bytes:
    return FrameRecord(camera=camera, seq=seq, ts_ms=now_ms() - age_ms, jpeg=jpeg).dumps()


def box(score: float = 0.9, x0: float = 0.1) -> Box:
    return Box(label="person", class_id=1, score=score, x0=x0, y0=0.1, x1=x0 + 0.3, y1=0.9)


LAT = Latency(ingest_ms=1, route_ms=1, queue_ms=2, decode_ms=1, infer_ms=10, total_ms=20)


def detection(seq: int, tier: Tier = "edge", boxes: list[Box] | None = None,
              version: str = "v1", camera: str = "cam1") -> Detection:
    return Detection(camera=camera, seq=seq, ts_ms=1, tier=tier, node="n1", model_id="m",
                     model_version=version, width=64, height=48, boxes=boxes or [box()],
                     latency=LAT)


def shadow(seq: int, boxes: list[Box] | None = None, jpeg: bytes = JPEG,
           camera: str = "cam1") -> ShadowResult:
    return ShadowResult(camera=camera, seq=seq, ts_ms=1, node="n1", model_id="teacher",
                        model_version="c1", boxes=boxes or [box()], jpeg=jpeg, latency=LAT)


class Learner(FixedRatio):
    def __init__(self, edge_ratio: float) -> None:
        super().__init__(edge_ratio)
        self.seen: list[Observation] = []

    def learn(self, obs: Observation) -> None:
        self.seen.append(obs)


# --- router ------------------------------------------------------------------------------
def test_the_router_sends_each_frame_to_its_tier_and_bad_ones_to_the_dead_letters() -> None:
    r = rt(shadow_rate=0.0)
    router = Router(r, FixedRatio(0.5), link=None)
    batch = events([frame(i) for i in range(4)] + [b"not json"], topic="u.frames")
    run(r.handlers["router"](batch))
    assert router.routed == {"edge": 2, "cloud": 2}
    assert len(r.bus.values("u.frames.edge")) == 2 and len(r.bus.values("u.frames.cloud")) == 2
    headers = dict(r.bus.sent[0][3] or [])
    assert headers[H.TIER] in (b"edge", b"cloud") and headers[H.ROUTED_MS].isdigit()
    assert [d.source_topic for d in r.bus.letters] == ["u.frames"]
    assert "Invalid JSON" in r.bus.letters[0].reason
    assert router.offload_ratio == 0.5


def test_a_due_shadow_goes_to_the_cloud_as_captured_and_is_paired() -> None:
    r = rt(shadow_rate=1.0)
    router = Router(r, FixedRatio(1.0), link=None)
    run(r.handlers["router"](events([frame(7)], topic="u.frames")))
    cloud = [(k, h) for t, k, _v, h in r.bus.sent if t == "u.frames.cloud"]
    assert len(cloud) == 1 and dict(cloud[0][1] or [])[H.SHADOW] == b"1"
    assert router.pairing.waiting == 1


def test_feedback_teaches_the_policy_and_skips_shed_results() -> None:
    r = rt()
    policy = Learner(1.0)
    Router(r, policy, link=None)
    shed = detection(2).model_copy(update={"status": "shed", "boxes": []})
    run(r.handlers["feedback"](events([detection(1).dumps(), shed.dumps(), b"junk"])))
    assert [o.seq for o in policy.seen] == [1]
    assert policy.seen[0].tier == "edge" and policy.seen[0].total_ms == 20


# --- shadow pairing ------------------------------------------------------------------------
@dataclass
class Listener:
    pairs: list[QualityRecord] = field(default_factory=list)

    async def on_pair(self, edge: Detection, cloud: ShadowResult, q: QualityRecord) -> None:
        self.pairs.append(q)


def test_a_pair_in_either_order_publishes_its_agreement_once() -> None:
    r = rt()
    learned: list[Observation] = []
    pairing = ShadowPairing(r, learned.append)
    listener = Listener()
    pairing.listeners.append(listener)
    pairing.expect("cam1", 1, copy=False)
    pairing.expect("cam1", 2, copy=True)
    run(pairing.on_edge([detection(1), detection(2, boxes=[box(x0=0.6)])]))
    assert r.bus.values("u.quality") == []  # no cloud answer yet
    run(r.handlers["shadows"](events([shadow(1).dumps(), shadow(2).dumps()])))
    quality = [QualityRecord.parse(v) for v in r.bus.values("u.quality")]
    assert [(q.seq, q.agreement) for q in quality] == [(1, 1.0), (2, 0.0)]
    assert [q.seq for q in listener.pairs] == [1, 2]
    assert [(o.seq, o.copy, o.tier) for o in learned] == [(2, True, "cloud")]  # the copy
    assert pairing.waiting == 0
    run(pairing.on_edge([detection(1)]))  # a late duplicate makes no second pair
    assert len(r.bus.values("u.quality")) == 2


def test_the_sampler_boosts_a_camera_until_its_time_is_up() -> None:
    s = ShadowSampler(0.0, 1.0)
    assert not s.due("cam1")
    s.boost("cam1", time.time() + 60)
    assert s.due("cam1") and not s.due("cam2")
    s.boost("cam2", time.time() - 1)  # already over
    assert not s.due("cam2") and not s.boosted("cam2")
    s.unboost("cam1")
    assert not s.due("cam1")


# --- canary judge ------------------------------------------------------------------------
def update(version: str, canary: float, cameras: tuple[str, ...] = ("cam1",)) -> ModelUpdate:
    return ModelUpdate(model="m", version=version, tier="edge", artifact="/tmp/m.onnx",
                       sha256="0" * 64, canary=canary, cameras=list(cameras))


def pair(version: str, agreement: float, seq: int) -> QualityRecord:
    return QualityRecord(ts_ms=1, node="n1", camera="cam1", seq=seq, edge_model_id="m",
                         edge_model_version=version, cloud_model_id="c", cloud_model_version="c1",
                         agreement=agreement, edge_boxes=1, cloud_boxes=1, edge_mean_score=0.9,
                         cloud_mean_score=0.9)


@pytest.mark.parametrize(("ours", "theirs", "verdict"), [(0.9, 0.8, 1.0), (0.5, 0.8, 0.0),
                                                         (0.79, 0.8, 1.0)])
def test_the_canary_is_promoted_or_rolled_back_on_its_own_pairs(
        ours: float, theirs: float, verdict: float) -> None:
    r = rt()
    sampler = ShadowSampler(0.05, 1.0)
    judge = RolloutJudge(r, sampler, min_pairs=6, tolerance=0.02)
    judge.on_update(update("v2", 0.25))
    assert sampler.boosted("cam1"), "pairs come faster while a canary is on trial"
    for i in range(6):
        run(judge.on_pair(detection(i), shadow(i), pair("v1", theirs, i)))
    for i in range(5):
        run(judge.on_pair(detection(i), shadow(i), pair("v2", ours, 100 + i)))
    assert r.bus.values("u.models.updates") == [], "no verdict before min_pairs"
    run(judge.on_pair(detection(9), shadow(9), pair("v2", ours, 105)))
    (v,) = [ModelUpdate.parse(x) for x in r.bus.values("u.models.updates")]
    assert (v.version, v.canary) == ("v2", verdict)
    assert not judge.canaries and not sampler.boosted("cam1")


# --- drift -> retrain request ----------------------------------------------------------------
def test_a_drift_in_the_light_asks_for_retraining_once_and_boosts_the_camera() -> None:
    r = rt(drift_warmup=10, retrain_collect_s=15.0)
    sampler = ShadowSampler(0.05, 1.0)
    watch = DriftWatch(r, sampler)
    rng = np.random.default_rng(0)
    day = [encode_jpeg((rng.random((48, 64, 3)) * 120 + 100).astype(np.uint8)) for _ in range(4)]
    night = [encode_jpeg((rng.random((48, 64, 3)) * 20).astype(np.uint8)) for _ in range(4)]
    for i in range(240):
        dark = i >= 120
        q = pair("v1", 0.3 if dark else 0.95, i)
        run(watch.on_pair(detection(i, boxes=[box(0.4 if dark else 0.9)]),
                          shadow(i, jpeg=(night if dark else day)[i % 4]), q))
        if r.bus.values("u.retrain.requests"):
            break
    (req,) = [RetrainRequest.parse(v) for v in r.bus.values("u.retrain.requests")]
    assert req.camera == "cam1" and req.drifts and "drift" in req.reason
    assert sampler.boosted("cam1"), "teacher frames come faster while the request collects"
    assert any(e["kind"] == "drift" for e in r.events)
    for i in range(240, 260):  # within the cool-down: no second request
        run(watch.on_pair(detection(i), shadow(i, jpeg=night[0]), pair("v1", 0.3, i)))
    assert len(r.bus.values("u.retrain.requests")) == 1


# --- root cause -> action -----------------------------------------------------------------
def anomaly() -> Anomaly:
    return Anomaly(node="node-b", camera="cam1", tier="edge", metric="infer_ms",
                   detector="RobustZScore", start_ms=1_000, end_ms=2_000, score=9.0,
                   threshold=4.0)


def rootcause(cause_type: str, dimension: str = "node", value: str = "node-b") -> RootCause:
    cause = Cause(rank=1, dimension=dimension, value=value, metric="infer_ms",  # type: ignore[arg-type]
                  cause_type=cause_type, score=0.9, baseline=20.0, anomaly=220.0,  # type: ignore[arg-type]
                  sql="SELECT 1, 2")
    return RootCause(anomaly_id=anomaly().id, database="db", start_ms=1_000, end_ms=2_000,
                     baseline_start_ms=0, baseline_end_ms=900, cause_type=cause_type,  # type: ignore[arg-type]
                     causes=[cause], ranker="RiskRanker()")


class NoStore:
    def get(self) -> Any:
        raise AssertionError("act() needs no store")


@pytest.mark.parametrize(("cause_type", "dimension", "kind", "requests"), [
    ("node_overload", "node", "replan", 0), ("link_degradation", "tier", "replan", 0),
    ("model_drift", "camera", "retrain", 1), ("camera_failure", "camera", "alert", 0)])
def test_a_root_cause_becomes_its_action(cause_type: str, dimension: str, kind: str,
                                         requests: int) -> None:
    r = rt()
    plane = ControlPlane(r, NoStore(), Tap(r).windows, lambda: {})  # type: ignore[arg-type]
    run(plane.act(anomaly(), rootcause(cause_type, dimension, "cam1" if dimension == "camera"
                                       else "node-b")))
    (action,) = [ControlAction.parse(v) for v in r.bus.values("u.control.actions")]
    assert action.kind == kind and action.anomaly_id == anomaly().id
    assert len(r.bus.values("u.retrain.requests")) == requests
    assert r.events[-1]["kind"] == "action"


# --- action follower -> replan ------------------------------------------------------------
class Controlled(FixedRatio):
    def __init__(self) -> None:
        super().__init__(0.5)
        self.replans: list[Any] = []

    def tick(self) -> Any:
        return None

    def replan(self, action: Any) -> Any:
        self.replans.append(action)


def test_a_replan_action_replans_a_controlled_policy_and_nothing_else() -> None:
    r = rt()
    policy = Controlled()
    follower = ActionFollower(r, policy)
    replan = ControlAction(anomaly_id="a", kind="replan", cause_type="node_overload",
                           reason="node-b slow")
    alert = replan.model_copy(update={"kind": "alert"})
    run(r.handlers["control-actions"](events([replan.dumps(), alert.dumps(), b"junk"])))
    assert [a.kind for a in policy.replans] == ["replan"] and follower.replans == 1
    r2 = rt()
    fixed = ActionFollower(r2, FixedRatio(0.5))  # no control step: nothing to do
    run(r2.handlers["control-actions"](events([replan.dumps()])))
    assert fixed.replans == 0


def test_the_control_step_of_a_controlled_policy_is_published() -> None:
    from autosteer.offload.factory import make_policy

    r = rt(offload_policy="controller")
    router = Router(r, make_policy(r.settings), link=None)
    run(r.timers["offload-decisions"]())
    (d,) = [OffloadDecision.parse(v) for v in r.bus.values("u.offload.decisions")]
    assert d.policy == "controller" and 0.0 <= d.offload_ratio <= 1.0
    assert len(router.decisions) == 1
    r2 = rt()
    Router(r2, FixedRatio(0.5), link=None)
    run(r2.timers["offload-decisions"]())
    assert r2.bus.values("u.offload.decisions") == []


# --- detector --------------------------------------------------------------------------------
@dataclass
class FakeDetector:
    model_id: str = "m"
    version: str = "v1"
    fail_batches: bool = False  # any batch of more than one frame raises
    poison: int = -1  # a frame this many pixels wide raises, alone too
    calls: list[int] = field(default_factory=list)

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Box]]:
        self.calls.append(len(images))
        if self.fail_batches and len(images) > 1:
            raise RuntimeError("batch failed")
        if any(im.shape[1] == self.poison for im in images):
            raise ValueError("poison frame")
        return [[box()] for _ in images]


def detector_role(det: FakeDetector, **kw: Any) -> tuple[MemoryRuntime, DetectorRole]:
    r = rt(telemetry_sample_rate=1.0, **kw)
    role = DetectorRole(r, "edge", lambda: det, Tap(r), Faults())  # type: ignore[arg-type, return-value]
    return r, role


def test_the_detector_publishes_results_rows_shed_and_dead_letters_and_acks_all() -> None:
    det = FakeDetector()
    r, role = detector_role(det, max_frame_age_ms=5_000)
    batch = events([frame(0), frame(1), frame(2, jpeg=b"\xff\xd8\xff"), frame(3, age_ms=60_000)],
                   topic="u.frames.edge")
    run(r.handlers["detect-edge"](batch))
    run(role.settle())
    got = [Detection.parse(v) for v in r.bus.values("u.detections")]
    assert sorted((d.seq, d.status) for d in got) == [(0, "ok"), (1, "ok"), (3, "shed")]
    assert len(r.bus.values("u.telemetry")) == 2
    assert [d.error_type for d in r.bus.letters] == ["DecodeError"]
    assert (role.detected, role.shed) == (2, 1)
    assert all(e.message.refs == 0 and e.acked == 1 for e in batch), "released once published"


def test_a_batch_the_model_fails_on_is_retried_frame_by_frame() -> None:
    wide = encode_jpeg(np.zeros((10, 33, 3), np.uint8))
    det = FakeDetector(fail_batches=True, poison=33)
    r, role = detector_role(det)
    run(r.handlers["detect-edge"](events([frame(0), frame(1, jpeg=wide), frame(2)])))
    run(role.settle())
    assert sorted(Detection.parse(v).seq for v in r.bus.values("u.detections")) == [0, 2]
    (letter,) = r.bus.letters
    assert letter.error_type == "ValueError" and "running the model" in letter.reason
    assert det.calls == [3, 1, 1, 1]


def test_what_escapes_a_batch_is_the_agents_crash_and_its_frames_are_detected_after() -> None:
    det = FakeDetector()
    r, role = detector_role(det)
    batch = events([frame(0), frame(1)])

    async def crash_then_recover() -> None:
        r.supervisor.crash_next_batch("detect-edge")
        await r.supervisor.guard("detect-edge", batch, r.handlers["detect-edge"], role.retry)

    r.health.register("detect-edge")
    run(crash_then_recover())
    assert sorted(Detection.parse(v).seq for v in r.bus.values("u.detections")) == [0, 1]
    assert r.health.snapshot()[0]["restarts"] == 1 and not r.bus.letters


def test_an_update_before_the_first_batch_applies_when_the_stage_exists() -> None:
    det, new = FakeDetector(), FakeDetector(version="v2")
    r, role = detector_role(det)
    assert role.apply(update("v2", 1.0), new) == "pending"  # type: ignore[arg-type]
    run(r.handlers["detect-edge"](events([frame(0)])))
    run(role.settle())
    assert Detection.parse(r.bus.values("u.detections")[0]).model_version == "v2"
    assert role.apply(update("v3", 0.5), FakeDetector(version="v3")) == "canary 50%"  # type: ignore[arg-type]
    assert role.apply(update("v3", 0.0), None) == "rolled back"
    assert role.stage is not None and role.stage.candidate is None


# --- model rollout -----------------------------------------------------------------------------
def test_rollout_applies_updates_on_the_loop_and_dead_letters_bad_ones() -> None:
    det = FakeDetector()
    r, role = detector_role(det)
    sampler = ShadowSampler(0.05, 1.0)
    judge = RolloutJudge(r, sampler)
    rollout = ModelRollout(r, frozenset({"edge", "router"}), {"edge": role}, 1, judge)
    assert rollout.serves(update("v2", 0.25)) and not rollout.serves(update("v2", 0.0))
    rollout.on_update(update("v2", 0.25), FakeDetector(version="v2"))  # type: ignore[arg-type]
    assert "v2" in judge.canaries and role.stage is None  # held until the first batch

    from autosteer.streams.pipeline import Incoming

    async def bad() -> None:
        rollout.on_bad(Incoming(b"{}", None, "u.models.updates", 0, 3), ValueError("no model"))
        await asyncio.sleep(0)

    run(bad())
    assert [d.source_topic for d in r.bus.letters] == ["u.models.updates"]
    assert any("refused" in e["title"] for e in r.events)


def test_shadow_pairing_drops_pairs_that_never_complete(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    from autosteer.streams.roles import shadows as module

    r = rt()
    pairing = ShadowPairing(r, lambda obs: None)
    pairing.expect("cam1", 1, copy=True)
    assert pairing.waiting == 1
    monkeypatch.setattr(module, "PAIR_TIMEOUT_S", -1.0)  # every open pair is too old
    run(r.handlers["shadows"](events([])))
    assert pairing.waiting == 0


def test_frame_meta_is_what_the_policy_sees() -> None:
    seen: list[FrameMeta] = []

    class Spy(FixedRatio):
        def decide(self, frame: FrameMeta) -> Route:
            seen.append(frame)
            return Route("edge")

    r = rt(shadow_rate=0.0)
    Router(r, Spy(1.0), link=None)
    value = frame(5)
    run(r.handlers["router"](events([value])))
    assert seen[0].camera == "cam1" and seen[0].seq == 5 and seen[0].size_bytes == len(value)
