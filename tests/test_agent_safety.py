"""No message can stop an agent: hostile images and an agent crash on a running worker.

Every frame produced here ends as a detection or a dead letter (with the reason), the
worker stays ready (or, after a crash, is ready again once the agent restarted), and
the frames after the bad ones are detected.
"""

from __future__ import annotations

import json
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from autosteer.processors.decode import encode_jpeg
from autosteer.settings import Settings
from autosteer.topics.names import TopicNames
from autosteer.topics.records import DeadLetter, Detection, FrameRecord, now_ms
from helpers import Worker, produce, unique
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def jpeg(frames: list[np.ndarray]) -> bytes:
    return encode_jpeg(frames[0], 85)


def claims_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header (SOF0) claiming ``width`` x ``height``."""
    b = bytearray(jpeg)
    sof = b.find(b"\xff\xc0")
    struct.pack_into(">HH", b, sof + 5, height, width)
    return bytes(b)


def corrupt_marker(jpeg: bytes) -> bytes:
    """``jpeg`` with its first Huffman-table marker (FF C4) turned into garbage."""
    b = bytearray(jpeg)
    b[b.find(b"\xff\xc4")] = 0x13
    return bytes(b)


def frame(camera: str, seq: int, image: bytes) -> tuple[bytes, bytes]:
    return camera.encode(), FrameRecord(camera=camera, seq=seq, ts_ms=now_ms(),
                                        jpeg=image).dumps()


def get(s: Settings, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{s.web_port}{path}", timeout=10) as r:
            body = r.read()
            return r.status, json.loads(body) if path != "/metrics" else body.decode()
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def post(s: Settings, path: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{s.web_port}{path}", method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def outcomes(s: Settings, sent: dict[bytes, int | None], camera: str,
             timeout_s: float) -> tuple[dict[int, Detection], dict[bytes, DeadLetter]]:
    """Read detections and dead letters until every sent value (value -> its seq, None
    for a value that is no frame) has one or the other."""
    from confluent_kafka import Consumer

    names = TopicNames(s.topic_prefix)
    c = Consumer(s.consumer_config(unique("g")))
    c.subscribe([names.detections, names.deadletter])
    detections: dict[int, Detection] = {}
    letters: dict[bytes, DeadLetter] = {}
    deadline = time.monotonic() + timeout_s

    def open_values() -> list[bytes]:
        return [v for v, seq in sent.items()
                if v not in letters and (seq is None or seq not in detections)]

    try:
        while open_values() and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            if m.topic() == names.detections:
                d = Detection.parse(m.value())
                if d.camera == camera:
                    detections[d.seq] = d
            else:
                letter = DeadLetter.parse(m.value())
                letters[bytes(letter.payload)] = letter
    finally:
        c.close()
    missing = open_values()
    assert not missing, (f"{len(missing)} of {len(sent)} messages have neither a detection "
                         f"nor a dead letter after {timeout_s:.0f}s")
    return detections, letters


def test_hostile_images_in_one_burst_are_dead_lettered_and_the_good_frames_detected(
        make_settings: Callable[..., Settings], start_worker: Callable[[Settings], Worker],
        jpeg: bytes, measurements: dict) -> None:
    s = make_settings(edge_ratio=0.5, partitions=1, batch_size=8, batch_wait_s=0.2)
    start_worker(s)
    bad = {
        "claims 60000x60000": claims_size(jpeg, 60000, 60000),
        "truncated JPEG": jpeg[: len(jpeg) // 2],
        "corrupted marker": corrupt_marker(jpeg),
        "PNG signature, JPEG body": b"\x89PNG\r\n\x1a\n" + jpeg[2:],
        "not an image": b"MZ\x90\x00" + bytes(range(256)) * 8,
    }
    camera = "camH"
    messages, sent, good = [], {}, []
    seq = 0
    for image in bad.values():  # bad and good interleaved: they share detector batches
        for img in (image, jpeg):
            key, value = frame(camera, seq, img)
            messages.append((key, value))
            sent[value] = seq
            if img is jpeg:
                good.append(seq)
            seq += 1
    produce(s, TopicNames(s.topic_prefix).frames, messages)
    detections, letters = outcomes(s, sent, camera, 90)
    assert set(good) <= set(detections), "every good frame has its detection"
    assert all(d.status == "ok" for d in detections.values())
    bad_seqs = {sent[v] for v in letters}
    assert bad_seqs == set(range(0, seq, 2)), "each bad image has a dead letter"
    reasons = {FrameRecord.parse(v).seq: letters[v].reason for v in letters}
    assert "60000x60000" in reasons[0] and "limit" in reasons[0]
    assert "truncated" in reasons[2]
    assert "marker" in reasons[4] or "decodable" in reasons[4]
    assert all(letters[v].error_type == "DecodeError" for v in letters)
    status, body = get(s, "/ready")
    assert status == 200, body
    measurements["hostile_images"] = {
        "bad_images": len(bad), "dead_lettered": len(letters), "good_frames": len(good),
        "good_detected": len(set(good) & set(detections)),
        "reasons": {name: reasons[2 * i][:120] for i, name in enumerate(bad)}}


def test_an_agent_that_crashes_restarts_and_its_batch_is_not_lost(
        make_settings: Callable[..., Settings], start_worker: Callable[[Settings], Worker],
        jpeg: bytes, measurements: dict) -> None:
    s = make_settings(edge_ratio=1.0, partitions=1, batch_size=8, batch_wait_s=0.2,
                      fault_injection=True, agent_backoff_s=2.0)
    start_worker(s)
    assert get(s, "/ready")[0] == 200
    assert post(s, "/fault?crash=detect-edge") == {"node": s.node, "crash": "detect-edge"}
    camera = "camC"
    messages = [frame(camera, i, jpeg) for i in range(8)]
    produce(s, TopicNames(s.topic_prefix).frames, messages)
    t0 = time.monotonic()
    body: Any = None
    while time.monotonic() - t0 < 60:
        status, body = get(s, "/ready")
        if status == 503:
            break
        time.sleep(0.1)
    assert status == 503, "the crashed agent makes /ready answer 503"
    problems = body["checks"]["agents"]["problems"]
    assert "detect-edge" in problems and "injected crash" in problems["detect-edge"], body
    down_at = time.monotonic()
    while time.monotonic() - down_at < 60 and get(s, "/ready")[0] != 200:
        time.sleep(0.1)
    back_s = time.monotonic() - down_at
    assert get(s, "/ready")[0] == 200, "ready again once the agent restarted"
    metrics = get(s, "/metrics")[1]
    assert 'autosteer_agent_restarts_total{agent="detect-edge",kind="agent"} 1' in metrics
    detections, letters = outcomes(s, {v: i for i, (_, v) in enumerate(messages)}, camera, 60)
    assert set(detections) == set(range(8)), "the crashed batch was retried, not dropped"
    assert not letters
    measurements["agent_crash"] = {"frames_in_batch": 8, "detected": len(detections),
                                   "dead_lettered": len(letters), "ready_again_s":
                                   round(back_s, 1), "backoff_s": s.agent_backoff_s}


def mutations(jpeg: bytes) -> st.SearchStrategy[bytes]:
    """Real corrupted images: truncations, flipped bytes in the headers and anywhere,
    header fields set to anything, PNG/JPEG confusion, and bytes that are no image."""
    n = len(jpeg)
    sof = jpeg.find(b"\xff\xc0")
    head = max(sof + 10, 700)

    def flip(args: tuple[int, int]) -> bytes:
        pos, val = args
        b = bytearray(jpeg)
        b[pos % n] = val
        return bytes(b)

    return st.one_of(
        st.integers(0, n - 1).map(lambda k: jpeg[:k]),
        st.tuples(st.integers(0, head), st.integers(0, 255)).map(flip),
        st.tuples(st.integers(0, n - 1), st.integers(0, 255)).map(flip),
        st.tuples(st.integers(0, 65535), st.integers(0, 65535)).map(
            lambda wh: claims_size(jpeg, *wh)),
        st.just(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + jpeg),
        st.binary(min_size=0, max_size=2048),
    )


@settings(max_examples=1, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzzed_images_through_a_running_worker_each_end_as_a_detection_or_a_dead_letter(
        data: st.DataObject, make_settings: Callable[..., Settings],
        start_worker: Callable[[Settings], Worker], jpeg: bytes, measurements: dict) -> None:
    s = make_settings(edge_ratio=0.5, partitions=1, batch_size=8)
    start_worker(s)
    images = data.draw(st.lists(mutations(jpeg), min_size=48, max_size=48))
    camera = "camF"
    messages, sent = [], {}
    for i, img in enumerate(images):
        key, value = frame(camera, i, img)
        messages.append((key, value))
        sent[value] = i
    for i in range(3):  # the good frames after them
        key, value = frame(camera, 100 + i, jpeg)
        messages.append((key, value))
        sent[value] = 100 + i
    produce(s, TopicNames(s.topic_prefix).frames, messages)
    detections, letters = outcomes(s, sent, camera, 120)
    assert {100, 101, 102} <= set(detections)
    assert all(d.reason and d.error_type for d in letters.values())
    assert get(s, "/ready")[0] == 200
    measurements["fuzzed_images"] = {"images": len(images), "dead_lettered": len(letters),
                                     "detected": len(set(detections) - {100, 101, 102})}
