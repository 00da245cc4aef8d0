"""Property-based: no payload, however malformed, escapes the steps as an exception;
each is either accepted or rejected with a reason."""

from __future__ import annotations

import base64
import json

from autosteer.offload.policy import FixedRatio
from autosteer.streams.pipeline import (
    DetectStage,
    Incoming,
    observations,
    parse_valid,
    route,
)
from autosteer.telemetry.loader import parse_batch
from autosteer.telemetry.schema import TABLES
from autosteer.topics.records import CameraCommand, Detection, FrameRecord
from helpers import Message
from hypothesis import given, settings
from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=6),
    max_leaves=20)

frame_like = st.fixed_dictionaries(
    {}, optional={"camera": st.one_of(st.text(max_size=20), st.integers()),
                  "seq": st.one_of(st.integers(), st.text(max_size=5), st.none()),
                  "ts_ms": st.one_of(st.integers(), st.floats(), st.text(max_size=5)),
                  "jpeg": st.one_of(st.binary(max_size=64).map(
                      lambda b: base64.b64encode(b).decode()), st.text(max_size=20)),
                  "width": st.integers(), "height": st.integers()})

payloads = st.one_of(st.binary(max_size=256), json_values.map(lambda v: json.dumps(v).encode()),
                     frame_like.map(lambda v: json.dumps(v).encode()), st.none())
keys = st.one_of(st.none(), st.binary(max_size=16), st.just(b"cam1"))


@settings(max_examples=300, deadline=None)
@given(value=payloads, key=keys)
def test_router_accepts_or_rejects_every_payload(value: bytes | None, key: bytes | None) -> None:
    routed, rejected = route([Incoming(value, key, "t.frames", 0, 1)], FixedRatio(0.5))
    assert len(routed) + len(rejected) == 1
    for r in rejected:
        letter = r.dead_letter("n1")
        assert letter.reason and letter.payload == (value or b"")


@settings(max_examples=300, deadline=None)
@given(value=payloads)
def test_detector_preparation_never_raises(value: bytes | None) -> None:
    stage = DetectStage(detector=None, tier="edge", node="n1")  # type: ignore[arg-type]
    prepared = stage.prepare([Incoming(value)])
    assert len(prepared.good) + len(prepared.rejected) + len(prepared.shed) == 1


@settings(max_examples=200, deadline=None)
@given(value=payloads)
def test_telemetry_parsing_and_feedback_never_raise(value: bytes | None) -> None:
    for table in TABLES:  # the loader's own parse step, on a consumed message
        by_table, failed = parse_batch([Message(value)], {"t": table})
        rows, positions = by_table.get(table.name, ([], []))
        assert len(rows) + len(failed) == 1 and len(rows) == len(positions)
    observations(parse_valid([value], Detection))


@settings(max_examples=200, deadline=None)
@given(value=payloads)
def test_camera_commands_raise_only_record_errors(value: bytes | None) -> None:
    from autosteer.errors import RecordError

    try:
        CameraCommand.parse(value)
    except RecordError:
        pass


def test_a_valid_frame_survives_round_trip_fuzzing() -> None:
    f = FrameRecord(camera="cam1", seq=1, ts_ms=1, jpeg=b"\xff\xd8")
    routed, rejected = route([Incoming(f.dumps(), b"cam1")], FixedRatio(1.0))
    assert routed and not rejected and routed[0].tier == "edge"
