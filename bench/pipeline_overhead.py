"""Frames/s through the whole pipeline vs a bare ONNX Runtime loop, same frames, same cores.

Anchor: a plain loop that calls the cloud detector (SSD-MobileNet-v2 FP32, ONNX Runtime,
the same batch size and thread count) over frames that are already decoded.
Thing measured: a real worker process (router + cloud detector agents, Faust on a real
tansu broker) fed the same frames as JPEG FrameRecords on the input topic; the clock
runs from the first produce to the last detection read back from the results topic,
so it includes JSON, base64, JPEG decode, two Kafka hops and result publishing.

Rounds alternate anchor and pipeline; the figures are medians. Last line: JSON.

    python bench/pipeline_overhead.py            # 400 frames x 3 rounds
    python bench/pipeline_overhead.py --quick    # 80 frames x 1 round
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
from autosteer.infra.broker import LocalBroker
from autosteer.infra.process import free_port
from autosteer.infra.sample import ensure_sample_video
from autosteer.infra.worker import WorkerProcess
from autosteer.processors.decode import decode_jpeg, encode_jpeg
from autosteer.processors.detector import load_detector
from autosteer.processors.prepare import FP32, prepare_models
from autosteer.settings import Settings
from autosteer.topics.names import TopicNames
from autosteer.topics.records import Detection, FrameRecord, now_ms
from confluent_kafka import Consumer, Producer


def read_frames(video: Path, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    out = []
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        out.append(f)
    cap.release()
    return out


def bare_fps(s: Settings, images: list[np.ndarray], threads: int) -> float:
    det = load_detector(s.model_dir, FP32, providers=s.providers, intra_op_threads=threads,
                        score_threshold=s.score_threshold)
    det.detect(images[: s.batch_size])  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(images), s.batch_size):
        det.detect(images[i:i + s.batch_size])
    return len(images) / (time.perf_counter() - t0)


def pipeline_fps(s: Settings, jpegs: list[bytes], camera: str, timeout_s: float = 600) -> float:
    names = TopicNames(s.topic_prefix)
    consumer = Consumer(s.consumer_config(f"bench-{uuid.uuid4().hex[:8]}", from_beginning=False))
    consumer.subscribe([names.detections])
    while not consumer.assignment():  # join before producing, read only new results
        consumer.poll(0.2)
    producer = Producer(s.producer_config())
    t0 = time.perf_counter()
    for seq, jpeg in enumerate(jpegs):
        rec = FrameRecord(camera=camera, seq=seq, ts_ms=now_ms(), jpeg=jpeg)
        producer.produce(names.frames, key=camera.encode(), value=rec.dumps())
        producer.poll(0)
    producer.flush(60)
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while len(seen) < len(jpegs):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(seen)}/{len(jpegs)} detections after {timeout_s}s")
        m = consumer.poll(0.5)
        if m is None or m.error():
            continue
        d = Detection.parse(m.value())
        if d.camera == camera:
            seen.add(d.seq)
    elapsed = time.perf_counter() - t0
    consumer.close()
    return len(jpegs) / elapsed


def main() -> None:
    # a killed run still stops the servers it started (finally blocks run on SystemExit)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI-sized run")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    n = args.frames or (80 if args.quick else 400)
    rounds = args.rounds or (1 if args.quick else 3)

    base = Settings()
    video = ensure_sample_video(base.sample_video)
    prepare_models(base.model_dir, video)
    threads = os.cpu_count() or 1
    images = read_frames(video, n)
    jpegs = [encode_jpeg(f, base.jpeg_quality) for f in images]
    decoded = [decode_jpeg(j) for j in jpegs]  # the anchor sees exactly what the worker sees

    with tempfile.TemporaryDirectory() as tmp:
        broker = LocalBroker(free_port(), Path(tmp))
        broker.start()
        s = base.model_copy(update={
            "kafka_bootstrap": broker.bootstrap, "topic_prefix": f"bench{uuid.uuid4().hex[:6]}",
            "roles": "router,cloud", "offload_policy": "cloud-only", "web_port": free_port(),
            "state_dir": Path(tmp), "node": "bench", "intra_op_threads": threads,
        })
        worker = WorkerProcess(s, Path(tmp) / "worker.log", loglevel="warning")
        try:
            worker.start()
            pipeline_fps(s, jpegs[:16], "warmup")  # models loaded, partitions assigned
            bare, piped = [], []
            for r in range(rounds):
                bare.append(bare_fps(s, decoded, threads))
                piped.append(pipeline_fps(s, jpegs, f"round{r}"))
                print(f"round {r + 1}/{rounds}: bare {bare[-1]:.1f} fps, "
                      f"pipeline {piped[-1]:.1f} fps, ratio {piped[-1] / bare[-1]:.3f}",
                      flush=True)
        finally:
            worker.stop()
            broker.stop()

    ratios = [p / b for p, b in zip(piped, bare, strict=True)]
    result = {
        "bench": "pipeline_overhead", "frames": n, "rounds": rounds, "batch_size": s.batch_size,
        "threads": threads, "model": FP32,
        "pipeline_fps": round(statistics.median(piped), 2),
        "bare_fps": round(statistics.median(bare), 2),
        "ratio": round(statistics.median(ratios), 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
