"""The public contract: records round-trip, bad input gives clear errors, schemas are current."""

from __future__ import annotations

import base64
import json

import pytest
from autosteer.errors import RecordError
from autosteer.topics.export import SCHEMA_DIR, render, schemas
from autosteer.topics.names import TopicNames
from autosteer.topics.records import CameraCommand, DeadLetter, FrameRecord


def test_frame_round_trip_uses_standard_base64() -> None:
    raw = bytes(range(256)) * 4
    f = FrameRecord(camera="cam-1", seq=3, ts_ms=1_700_000_000_000, jpeg=raw, width=4, height=2)
    doc = json.loads(f.dumps())
    assert doc["jpeg"] == base64.b64encode(raw).decode()
    assert "__faust" not in doc
    assert FrameRecord.parse(f.dumps()) == f


def test_url_safe_base64_is_accepted() -> None:
    raw = bytes(range(256))
    doc = {"camera": "c", "seq": 0, "ts_ms": 1, "jpeg": base64.urlsafe_b64encode(raw).decode()}
    assert FrameRecord.parse(json.dumps(doc)).jpeg == raw


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"not json", "Invalid JSON"),
        (b'{"camera": "c", "seq": -1, "ts_ms": 1, "jpeg": ""}', "seq"),
        (b'{"camera": "bad id!", "seq": 1, "ts_ms": 1, "jpeg": ""}', "camera"),
        (b'{"camera": "c", "seq": "x", "ts_ms": 1, "jpeg": ""}', "seq"),
        (b'{"camera": "c", "seq": 1, "ts_ms": 1, "jpeg": "%%%"}', "jpeg"),
        (b"[]", "FrameRecord"),
        (None, "empty message"),
    ],
)
def test_bad_frames_raise_record_error_naming_the_field(payload: bytes | None, fragment: str) -> None:
    with pytest.raises(RecordError) as exc:
        FrameRecord.parse(payload)
    assert fragment in str(exc.value)


def test_camera_command_requires_known_action() -> None:
    with pytest.raises(RecordError, match="action"):
        CameraCommand.parse(b'{"action": "pause", "camera": "c"}')


def test_dead_letter_keeps_payload_bytes() -> None:
    dl = DeadLetter(node="n", source_topic="t", partition=1, offset=9, key=b"k",
                    reason="why", error_type="RecordError", payload=b"\x00\xff")
    back = DeadLetter.parse(dl.dumps())
    assert back.payload == b"\x00\xff" and back.key == b"k"


def test_topic_names_carry_the_prefix() -> None:
    t = TopicNames("x")
    assert {s.name for s in t.specs(3)} >= {"x.frames", "x.detections", "x.deadletter",
                                             "x.telemetry", "x.cameras"}
    with pytest.raises(ValueError, match="unknown tier"):
        t.tier_topic("fog")


def test_committed_json_schemas_match_the_records() -> None:
    for topic, schema in schemas().items():
        path = SCHEMA_DIR / f"{topic}.json"
        assert path.exists(), f"run python -m autosteer.topics.export ({path} missing)"
        assert path.read_text() == render(schema), f"{path} is stale: run python -m autosteer.topics.export"
