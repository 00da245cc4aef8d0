#!/usr/bin/env python3
"""Send JPEG frames from a video file to autosteer and read the detections back.

Needs only confluent-kafka and OpenCV (no autosteer imports):

    pip install confluent-kafka opencv-python-headless
    python produce_and_read.py --bootstrap 127.0.0.1:19092 --prefix autosteer \
        --video vtest.avi --camera cam1 --frames 10

A running autosteer worker (roles router + edge and/or cloud) must be attached to the
same broker and prefix; it creates the topics. The script:

1. notes the current end of ``<prefix>.detections`` and ``<prefix>.deadletter``,
2. produces ``--frames`` frames to ``<prefix>.frames`` (key = camera id, value = a
   FrameRecord as UTF-8 JSON with the JPEG as standard base64),
3. reads detections (key = ``camera:seq``) until every frame has one, dropping
   duplicates by key (delivery is at-least-once), and reports any of its frames that
   went to the dead-letter topic instead.

Exit status: 0 when every frame got a detection, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import uuid
from collections import Counter

import cv2
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # autosteer's default AUTOSTEER_MAX_MESSAGE_BYTES


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def frame_value(camera: str, seq: int, jpeg: bytes, width: int, height: int) -> bytes:
    """A FrameRecord (topics/schemas/frames.json) as UTF-8 JSON."""
    record = {
        "camera": camera,  # must equal the message key
        "seq": seq,  # frame number; with the camera it names the result: "camera:seq"
        "ts_ms": now_ms(),  # capture time, ms since the Unix epoch (UTC)
        "jpeg": base64.b64encode(jpeg).decode("ascii"),  # standard base64, padded
        "width": width,  # optional
        "height": height,  # optional
    }
    return json.dumps(record, separators=(",", ":")).encode("utf-8")


def assign_at_end(consumer: Consumer, topics: list[str]) -> None:
    """Read ``topics`` from their current end on: only what arrives after this call."""
    wanted = []
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            raise SystemExit(f"topic {topic!r}: {meta.error} (is the autosteer worker running "
                             "with this --prefix? it creates the topics)")
        for p in meta.partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            wanted.append(TopicPartition(topic, p, high))
    consumer.assign(wanted)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:19092", help="Kafka bootstrap servers")
    ap.add_argument("--prefix", default="autosteer", help="AUTOSTEER_TOPIC_PREFIX of the deployment")
    ap.add_argument("--video", required=True, help="video file (or rtsp:// URL) OpenCV can read")
    ap.add_argument("--camera", default="cam1", help="camera id: [A-Za-z0-9._:-], 1-128 chars")
    ap.add_argument("--frames", type=int, default=10, help="how many frames to send")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for results")
    args = ap.parse_args()

    frames_topic = f"{args.prefix}.frames"
    detections_topic = f"{args.prefix}.detections"
    deadletter_topic = f"{args.prefix}.deadletter"

    # Consumer first, positioned at the current end, so we see only this run's results.
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": f"produce-and-read-{uuid.uuid4().hex[:8]}",  # needed by the client only
        "enable.auto.commit": False,
        # dead letters can carry a whole frame (base64 again): allow big fetches
        "max.partition.fetch.bytes": 2 * MAX_MESSAGE_BYTES,
    })
    assign_at_end(consumer, [detections_topic, deadletter_topic])

    # Producer: frames are large, librdkafka's default limit (1 MB) is too small.
    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "acks": "all",
        "linger.ms": 5,
    })
    failed: list[str] = []

    def on_delivery(err, msg) -> None:
        if err is not None:
            failed.append(f"{msg.topic()} key {msg.key()!r}: {err}")

    cap = cv2.VideoCapture(args.video)
    if not cap.isOpened():
        raise SystemExit(f"cannot open video {args.video!r}")
    sent: dict[int, int] = {}  # seq -> ts_ms, to recognise our own results
    key = args.camera.encode("utf-8")
    for seq in range(args.frames):
        ok, image = cap.read()
        if not ok:
            print(f"video ended after {seq} frames")
            break
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise SystemExit(f"cannot JPEG-encode frame {seq}")
        height, width = image.shape[:2]
        value = frame_value(args.camera, seq, buf.tobytes(), width, height)
        sent[seq] = json.loads(value)["ts_ms"]
        producer.produce(frames_topic, key=key, value=value, on_delivery=on_delivery)
        producer.poll(0)
    cap.release()
    if producer.flush(30) or failed:
        raise SystemExit(f"frames not delivered: {failed or 'flush timed out'}")
    print(f"sent {len(sent)} frames to {frames_topic} as camera {args.camera!r}")

    results: dict[str, dict] = {}  # key "camera:seq" -> Detection
    duplicates = 0
    dead: dict[int, str] = {}  # seq -> why the frame was dead-lettered
    deadline = time.monotonic() + args.timeout
    try:
        while len(results) + len(dead) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                raise KafkaException(msg.error())
            value = json.loads(msg.value().decode("utf-8"))
            if msg.topic() == deadletter_topic:
                if msg.key() != key:
                    continue
                try:  # "payload" is the original message value, base64-encoded
                    original = json.loads(base64.b64decode(value["payload"]))
                    seq = original["seq"]
                except (ValueError, KeyError, TypeError):
                    continue  # not a frame this script wrote (ours are valid JSON)
                if sent.get(seq) != original.get("ts_ms"):
                    continue  # same camera id, but not from this run
                dead[seq] = f"{value['error_type']}: {value['reason']}"
                print(f"dead letter {seq}: {dead[seq]}")
                continue
            det_key = msg.key().decode("utf-8")  # "<camera>:<seq>"
            camera, _, seq_text = det_key.rpartition(":")  # camera ids may contain ':'
            if camera != args.camera or sent.get(int(seq_text)) != value["ts_ms"]:
                continue  # another camera, or an older frame with the same seq
            if det_key in results:
                duplicates += 1  # at-least-once: a redelivery of a result we have
                continue
            results[det_key] = value
            counts = Counter(box["label"] for box in value["boxes"])
            found = ", ".join(f"{n} {label}" for label, n in counts.most_common()) or "nothing"
            print(f"{det_key:>12}  {value['tier']:5}  {value['model_id']}@{value['model_version']}"
                  f"  {value['width']}x{value['height']}  {found}"
                  f"  ({value['latency']['total_ms']:.0f} ms end to end)")
    finally:
        consumer.close()

    persons = sum(1 for d in results.values() for b in d["boxes"] if b["label"] == "person")
    tiers = Counter(d["tier"] for d in results.values())
    print(f"detections for {len(results)}/{len(sent)} frames (edge {tiers['edge']}, "
          f"cloud {tiers['cloud']}), {persons} person boxes, {duplicates} duplicates dropped, "
          f"{len(dead)} dead letters")
    return 0 if len(results) == len(sent) else 1


if __name__ == "__main__":
    sys.exit(main())
