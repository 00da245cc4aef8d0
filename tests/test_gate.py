"""The router's motion gate on the in-memory bus (streams/roles/gate.py): a still camera is
answered ``reused`` with the source's seq and boxes, motion is routed, refreshes come
after N frames and T seconds, reused frames reach neither the policy nor the routed
counts, a shed or lost source is answered shed, checks measure reused against fresh,
and with the gate off every frame is routed as before."""

from __future__ import annotations

import time

import numpy as np
from autosteer.processors.decode import encode_jpeg
from autosteer.streams.roles.gate import PENDING_TIMEOUT_S, Gate
from autosteer.streams.roles.router import Router
from autosteer.telemetry.window import WindowAggregator
from autosteer.topics import headers as H
from autosteer.topics.records import Detection, FrameRecord
from test_roles import Learner, box, detection, events, frame, rt, run, shadow

RNG = np.random.default_rng(3)


def image(person_x: int | None = None) -> bytes:
    """A textured 320x240 scene with sensor noise, and a dark box at ``person_x``."""
    yy, xx = np.mgrid[0:240, 0:320]
    img = 90 + 50 * np.sin(xx / 17.0) + 30 * np.cos(yy / 11.0) + RNG.normal(0, 3, (240, 320))
    if person_x is not None:
        img[60:200, person_x:person_x + 40] = 10
    g = np.clip(img, 0, 255).astype(np.uint8)
    return encode_jpeg(np.dstack([g, g, g]))


STILL = image()


def gated(**kw: object) -> tuple[object, Router, Learner]:
    r = rt(**{"shadow_rate": 0.0, "motion_gate": "on", "gate_check_rate": 0.0, **kw})
    policy = Learner(1.0)  # every routed frame to the edge
    return r, Router(r, policy, link=None), policy


def results(r: object) -> list[Detection]:
    return [Detection.parse(v) for v in r.bus.values("u.detections")]  # type: ignore[attr-defined]


def test_a_still_camera_is_reused_with_the_source_seq_and_boxes() -> None:
    r, router, policy = gated()
    batch = events([frame(i, jpeg=image()) for i in range(5)], topic="u.frames")
    run(r.handlers["router"](batch))
    assert router.routed == {"edge": 1, "cloud": 0} and len(r.bus.values("u.frames.edge")) == 1
    assert results(r) == [] and router.gate is not None and router.gate.held == 4
    assert [e.message.refs for e in batch] == [0, 1, 1, 1, 1]  # held: not committed yet
    source = detection(0, boxes=[box(0.8), box(0.7, x0=0.5)])
    run(r.handlers["feedback"](events([source.dumps()])))
    out = results(r)
    assert [(d.seq, d.status, d.reused_from) for d in out] == [(s, "reused", 0) for s in (1, 2, 3, 4)]
    assert all(d.boxes == source.boxes and d.tier == "edge" and d.model_id == "m" for d in out)
    assert all(d.latency.infer_ms == 0 and d.latency.decode_ms > 0 for d in out)
    assert [e.message.refs for e in batch] == [0] * 5 and router.gate.held == 0
    # the next still frame is answered at once from the kept detection
    run(r.handlers["router"](events([frame(5, jpeg=image())], topic="u.frames")))
    assert results(r)[-1].reused_from == 0 and router.gate.reused == 5
    # reused frames teach the policy nothing and are not routed: the ratio is of routed ones
    run(r.handlers["feedback"](events([d.dumps() for d in results(r)])))
    assert [o.seq for o in policy.seen] == [0] and router.offload_ratio == 0.0


def test_motion_is_fresh() -> None:
    r, router, _ = gated()
    run(r.handlers["router"](events([frame(i, jpeg=image(person_x=20 + 50 * i))
                                     for i in range(5)], topic="u.frames")))
    assert router.routed["edge"] == 5 and router.gate is not None and router.gate.held == 0


def test_a_fresh_detection_comes_at_least_every_n_frames() -> None:
    r, router, _ = gated(gate_refresh_frames=3)
    run(r.handlers["router"](events([frame(i, jpeg=image()) for i in range(7)],
                                    topic="u.frames")))
    routed = [FrameRecord.parse(v).seq for v in r.bus.values("u.frames.edge")]
    assert routed == [0, 3, 6]


def test_a_fresh_detection_comes_at_least_every_t_seconds_of_capture_time() -> None:
    r, router, _ = gated(gate_refresh_s=1.0)
    ages = [3000, 2700, 2400, 2100, 1800, 1500]  # 300 ms apart
    run(r.handlers["router"](events([frame(i, jpeg=image(), age_ms=a)
                                     for i, a in enumerate(ages)], topic="u.frames")))
    assert router.routed["edge"] == 2  # seq 0, then seq 4 (1.2 s after it)


def test_a_shed_source_answers_its_held_frames_shed_and_the_next_frame_is_fresh() -> None:
    r, router, _ = gated()
    run(r.handlers["router"](events([frame(i, jpeg=image()) for i in range(3)],
                                    topic="u.frames")))
    shed = detection(0).model_copy(update={"status": "shed", "boxes": []})
    run(r.handlers["feedback"](events([shed.dumps()])))
    out = results(r)
    assert [(d.seq, d.status) for d in out] == [(1, "shed"), (2, "shed")]
    assert "source frame 0 was shed" in out[0].reason
    run(r.handlers["router"](events([frame(3, jpeg=image())], topic="u.frames")))
    assert router.routed["edge"] == 2 and router.gate is not None
    assert router.gate.unanswerable == 2


def test_a_check_detects_a_reused_frame_fresh_and_measures_agreement() -> None:
    r, router, _ = gated(gate_check_rate=1.0)
    run(r.handlers["router"](events([frame(i, jpeg=image()) for i in range(3)],
                                    topic="u.frames")))
    run(r.handlers["feedback"](events([detection(0).dumps()])))
    checks = [(k, dict(h or [])) for t, k, _v, h in r.bus.sent if t == "u.frames.edge"][1:]
    assert len(checks) == 2 and all(h[H.SHADOW] == b"1" for _k, h in checks)
    assert router.gate is not None and router.gate.checked == 2
    # the fresh answers: one agrees, one moved
    run(r.handlers["shadows"](events([shadow(1).dumps(), shadow(2, boxes=[box(x0=0.6)]).dumps()])))
    assert router.pairing.gate_checks == 2 and router.pairing.gate_agreement == 0.5
    assert r.bus.values("u.quality") == []  # not an edge/cloud pair
    assert router.offload_ratio == 0.0  # the checks are not routed frames


def test_reused_frames_are_counted_in_the_telemetry_windows() -> None:
    r = rt(shadow_rate=0.0, motion_gate="on", gate_check_rate=0.0)
    windows = WindowAggregator("n1", 10)
    Router(r, Learner(1.0), link=None, windows=windows)
    run(r.handlers["router"](events([frame(i, jpeg=STILL) for i in range(4)], topic="u.frames")))
    run(r.handlers["feedback"](events([detection(0).dumps()])))
    [w] = windows.flush(0, force=True)
    assert (w.frames, w.reused, w.tier, w.model_id) == (0, 3, "edge", "m")


def test_with_the_gate_off_every_frame_is_routed() -> None:
    r = rt(shadow_rate=0.0)  # AUTOSTEER_MOTION_GATE defaults to off
    router = Router(r, Learner(1.0), link=None)
    run(r.handlers["router"](events([frame(i, jpeg=STILL) for i in range(6)], topic="u.frames")))
    assert router.gate is None and router.routed["edge"] == 6
    assert "gate-expire" not in r.timers


def test_a_held_frame_whose_source_never_comes_is_answered_shed() -> None:
    r, router, _ = gated()
    batch = events([frame(i, jpeg=STILL) for i in range(3)], topic="u.frames")
    run(r.handlers["router"](batch))
    assert router.gate is not None
    gate: Gate = router.gate
    run(gate.expire())
    assert gate.held == 2  # not yet: held for PENDING_TIMEOUT_S
    run(gate.expire(now_s=time.time() + PENDING_TIMEOUT_S + 1))
    assert [d.status for d in results(r)] == ["shed", "shed"] and gate.held == 0
    assert [e.message.refs for e in batch] == [0, 0, 0]


def test_a_frame_that_does_not_parse_is_dead_lettered_by_the_router() -> None:
    r, router, _ = gated()
    run(r.handlers["router"](events([b"not json", frame(0, jpeg=STILL)], topic="u.frames")))
    assert len(r.bus.letters) == 1 and router.routed["edge"] == 1
