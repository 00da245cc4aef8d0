"""Frames/s through the whole pipeline vs a bare ONNX Runtime loop, same frames, same cores.

Anchor: a plain loop that calls the cloud detector (SSD-MobileNet-v2 FP32, ONNX Runtime,
the same batch size and thread count) over frames that are already decoded.
Thing measured: a real worker process (router + cloud detector agents, Faust on a real
tansu broker) fed the same frames as JPEG FrameRecords on the input topic; the clock
runs from the first produce to the last detection read back from the results topic,
so it includes JSON, base64, JPEG decode, two Kafka hops and result publishing.

Only frames the pipeline really detected count: a result with ``status`` other than
``"ok"`` (``"shed"`` for its age, ``"reused"`` from an earlier frame) and a frame that
went to the dead-letter topic are counted apart (``shed``, ``reused``, ``dead_letters``)
and never as processed (:func:`tally`, :func:`overhead_ratio`). All frames are produced
at once, which no pipeline drains within ``AUTOSTEER_MAX_FRAME_AGE_MS``, so the run turns
shedding off (``AUTOSTEER_MAX_FRAME_AGE_MS=0``) and says so in its output: it measures
throughput, not a latency goal. A ratio above 1 would mean the pipeline did less work
than the bare loop; the bench flags it as a bench bug.

Rounds alternate anchor and pipeline (interleaved); the figures are medians with their
spread (min, max) over ``rounds`` repetitions. Last line: JSON.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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
from autosteer.topics.records import DeadLetter, Detection, FrameRecord, now_ms
from confluent_kafka import Consumer, Producer

SHEDDING_OFF = {"max_frame_age_ms": 0}  # AUTOSTEER_MAX_FRAME_AGE_MS=0 for the bench's worker


@dataclass
class Tally:
    """What came back for one round's frames: detected (``ok``) apart from the rest."""

    ok: set[int] = field(default_factory=set)  # seqs with a fresh detection
    other: dict[str, set[int]] = field(default_factory=dict)  # status -> seqs (shed, reused)
    dead_letters: int = 0  # frames of this camera sent to the dead-letter topic

    @property
    def processed(self) -> int:
        """Frames the detector really ran on: the only ones a throughput may count."""
        return len(self.ok)

    @property
    def shed(self) -> int:
        return len(self.other.get("shed", set()) - self.ok)

    @property
    def reused(self) -> int:
        return len(self.other.get("reused", set()) - self.ok)

    def answered(self) -> int:
        """Frames with any outcome (detected, shed, reused or dead-lettered)."""
        return len(self.ok.union(*self.other.values())) + self.dead_letters


def tally(detections: Iterable[Detection], camera: str, dead_letters: int = 0) -> Tally:
    """Count ``camera``'s results by outcome; only ``status == "ok"`` is processed.

    >>> from types import SimpleNamespace
    >>> def det(seq, status):  # the fields of a Detection that count
    ...     return SimpleNamespace(camera="c", seq=seq, status=status)
    >>> t = tally([det(0, "ok"), det(1, "shed"), det(2, "shed"), det(0, "ok")], "c", 1)
    >>> t.processed, t.shed, t.dead_letters, t.answered()
    (1, 2, 1, 4)
    """
    out = Tally()
    for d in detections:
        if d.camera != camera:
            continue
        status = getattr(d, "status", "ok")
        if status == "ok":
            out.ok.add(d.seq)
        else:
            out.other.setdefault(status, set()).add(d.seq)
    out.dead_letters = dead_letters
    return out


def overhead_ratio(pipeline: Tally, elapsed_s: float, bare_fps: float) -> float:
    """Pipeline throughput over the bare detector's, counting processed frames only.

    >>> t = Tally(ok={0, 1}, other={"shed": {2, 3, 4, 5}})
    >>> overhead_ratio(t, 1.0, 4.0)  # 2 detected frames in 1 s against 4 fps bare
    0.5
    """
    if elapsed_s <= 0 or bare_fps <= 0:
        raise ValueError(f"elapsed_s and bare_fps must be > 0; got {elapsed_s}, {bare_fps}")
    return pipeline.processed / elapsed_s / bare_fps


def spread(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """Median, min and max of ``values`` (the repetitions of one figure)."""
    return {"median": round(statistics.median(values), digits),
            "min": round(min(values), digits), "max": round(max(values), digits)}


def bench_settings(base: Settings, bootstrap: str, tmp: Path, threads: int) -> Settings:
    """The worker's settings: router + cloud detector on a fresh prefix, shedding off."""
    return base.model_copy(update={
        "kafka_bootstrap": bootstrap, "topic_prefix": f"bench{uuid.uuid4().hex[:6]}",
        "roles": "router,cloud", "offload_policy": "cloud-only", "web_port": free_port(),
        "state_dir": tmp, "node": "bench", "intra_op_threads": threads, **SHEDDING_OFF,
    })


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


def pipeline_round(s: Settings, jpegs: list[bytes], camera: str,
                   timeout_s: float = 600) -> tuple[Tally, float]:
    """Produce ``jpegs`` as ``camera``'s frames; read results (and dead letters) until
    every frame has an outcome. Returns the tally and the seconds from first produce to
    the last outcome."""
    names = TopicNames(s.topic_prefix)
    consumer = Consumer(s.consumer_config(f"bench-{uuid.uuid4().hex[:8]}", from_beginning=False))
    consumer.subscribe([names.detections, names.deadletter])
    while not consumer.assignment():  # join before producing, read only new results
        consumer.poll(0.2)
    producer = Producer(s.producer_config())
    t0 = time.perf_counter()
    for seq, jpeg in enumerate(jpegs):
        rec = FrameRecord(camera=camera, seq=seq, ts_ms=now_ms(), jpeg=jpeg)
        producer.produce(names.frames, key=camera.encode(), value=rec.dumps())
        producer.poll(0)
    producer.flush(60)
    results: list[Detection] = []
    dead = 0
    counted = tally(results, camera, dead)
    deadline = time.monotonic() + timeout_s
    while counted.answered() < len(jpegs):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {counted.answered()}/{len(jpegs)} frames answered after "
                             f"{timeout_s}s")
        m = consumer.poll(0.5)
        if m is None or m.error():
            continue
        if m.topic() == names.deadletter:
            letter = DeadLetter.parse(m.value())
            if letter.key == camera.encode():
                dead += 1  # a malformed frame: its seq may be unreadable, count it apart
        else:
            results.append(Detection.parse(m.value()))
        counted = tally(results, camera, dead)
    elapsed = time.perf_counter() - t0
    consumer.close()
    return counted, elapsed


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
        s = bench_settings(base, broker.bootstrap, Path(tmp), threads)
        worker = WorkerProcess(s, Path(tmp) / "worker.log", loglevel="warning")
        print("shedding off for this run (AUTOSTEER_MAX_FRAME_AGE_MS=0): every frame is "
              "produced at once, and only detected frames count", flush=True)
        try:
            worker.start()
            pipeline_round(s, jpegs[:16], "warmup")  # models loaded, partitions assigned
            bare, piped, ratios, tallies = [], [], [], []
            for r in range(rounds):  # interleaved: anchor, pipeline, anchor, pipeline ...
                bare.append(bare_fps(s, decoded, threads))
                counted, elapsed = pipeline_round(s, jpegs, f"round{r}")
                tallies.append(counted)
                piped.append(counted.processed / elapsed)
                ratios.append(overhead_ratio(counted, elapsed, bare[-1]))
                print(f"round {r + 1}/{rounds}: bare {bare[-1]:.1f} fps, pipeline "
                      f"{piped[-1]:.1f} fps ({counted.processed} detected, {counted.shed} "
                      f"shed, {counted.reused} reused, {counted.dead_letters} dead "
                      f"letters), ratio {ratios[-1]:.3f}", flush=True)
        finally:
            worker.stop()
            broker.stop()

    ratio = statistics.median(ratios)
    result = {
        "bench": "pipeline_overhead", "frames": n, "rounds": rounds, "batch_size": s.batch_size,
        "threads": threads, "model": FP32, "max_frame_age_ms": s.max_frame_age_ms,
        "shedding": "off (AUTOSTEER_MAX_FRAME_AGE_MS=0)",
        "pipeline_fps": round(statistics.median(piped), 2),
        "bare_fps": round(statistics.median(bare), 2),
        "ratio": round(ratio, 3),
        "ratio_spread": spread(ratios), "pipeline_fps_spread": spread(piped, 2),
        "bare_fps_spread": spread(bare, 2),
        "processed": sum(t.processed for t in tallies),
        "shed": sum(t.shed for t in tallies), "reused": sum(t.reused for t in tallies),
        "dead_letters": sum(t.dead_letters for t in tallies),
    }
    if ratio > 1.0:
        result["warning"] = ("ratio > 1: the pipeline cannot beat the bare detector on the "
                             "same work; this is a bench bug")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
