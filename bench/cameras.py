"""Cameras per box: the most 10 fps cameras this machine sustains with p95 <= 300 ms and
no shed frames, found by adding cameras, for three configurations of the real pipeline.

1. ``today``: the edge tier on ONNX Runtime (``AUTOSTEER_PROVIDERS=onnxruntime``), every
   frame detected;
2. ``fastest``: the fastest runtime measured for the model (``AUTOSTEER_PROVIDERS=auto``,
   the pick ``autosteer models prepare`` calibrated into its manifest);
3. ``gated``: ``fastest`` plus the motion gate (``AUTOSTEER_MOTION_GATE=on``, default
   thresholds, ``AUTOSTEER_GATE_CHECK_RATE`` checks included).

The box: one worker process (roles ``router,edge``, policy ``edge-only``, shadowing off:
no cloud here) on a real tansu broker, the INT8 edge model, both cores. Cameras are file
cameras with real footage: this process replays each camera's JPEG frames at 10 fps in
real time (capture time = scheduled time, cameras staggered in the 100 ms period, each
starting at its own place in the clip), so the box pays for JSON, Kafka, the router,
decode and detection, not for the cameras' own video decoding (an RTSP camera's ingest
would add that). Two clips: ``quiet`` (bursts of vtest motion between still stretches
with sensor noise, :func:`gating.quiet_clip`) and ``vtest`` itself (people walk all the
time).

A trial of N cameras passes when every frame produced got a result, the p95 of capture
-> result read back (this process's consumer) is <= 300 ms over the scored window (after
a warm-up), no frame was shed and none dead-lettered. The search adds cameras from a
start (the previous configuration's figure, or 2) while trials pass, then closes the gap
by bisection; the best is confirmed ``--reps`` times (passes reported). Shed, reused and
checked frames are counted apart: ``gated_fraction`` is 1 - inferences / frames, where
inferences = fresh detections + gate checks.

Accuracy: pooled F1 (retrain.agreement, IoU >= 0.5, same label) of the results of each
best trial (fresh and reused) against FP32 ONNX Runtime detection of every frame
(``f1_vs_fp32``), and against the same edge model detecting every frame
(``f1_vs_every_frame``; for the gated configuration that is ``gated_f1``).

    python bench/cameras.py --quick  # ~8 min
    python bench/cameras.py

Last line: JSON with cameras_today, cameras_best, cameras_ratio (per clip),
gated_fraction, gated_f1 (per clip, gated configuration) and every trial.
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autosteer.infra.broker import LocalBroker
from autosteer.infra.process import free_port
from autosteer.infra.sample import ensure_sample_video
from autosteer.infra.worker import WorkerProcess
from autosteer.processors.decode import decode_jpeg, encode_jpeg
from autosteer.processors.detector import load_detector
from autosteer.processors.manifest import Manifest
from autosteer.processors.prepare import FP32, INT8, prepare_models
from autosteer.settings import Settings
from autosteer.topics.names import TopicNames
from autosteer.topics.records import Detection, Latency
from confluent_kafka import Consumer, Producer
from gating import pooled_f1, quiet_clip, read_video

FPS = 10.0
STAGES = ("ingest_ms", "route_ms", "link_ms", "queue_ms", "decode_ms", "infer_ms", "total_ms")
P95_MS = 300.0
CONFIGS = {
    "today": {"providers": "onnxruntime", "motion_gate": "off"},
    "fastest": {"providers": "auto", "motion_gate": "off"},
    "gated": {"providers": "auto", "motion_gate": "on"},
}


@dataclass
class Seen:
    """One camera's results: seq -> (status, read-back wall ms, capture ms, boxes, latency)."""

    results: dict[int, tuple[str, float, int, list, Latency]] = field(default_factory=dict)
    checks: int = 0  # gate checks (fresh detections of reused frames, on the shadow topic)
    dead: int = 0


class Collector(threading.Thread):
    """Reads detections, shadow results and dead letters of the worker's prefix."""

    def __init__(self, s: Settings) -> None:
        super().__init__(name="collector", daemon=True)
        self.names = TopicNames(s.topic_prefix)
        conf = s.consumer_config(f"cams-{uuid.uuid4().hex[:8]}", from_beginning=False)
        # librdkafka waits up to 500 ms on an empty fetch by default: as long as the
        # worker's own consumers (AUTOSTEER_FETCH_WAIT_MS), so the read-back adds no delay
        conf.update({"fetch.wait.max.ms": s.fetch_wait_ms, "fetch.min.bytes": 1})
        self.consumer = Consumer(conf)
        self.consumer.subscribe([self.names.detections, self.names.shadow,
                                 self.names.deadletter])
        self.cams: dict[str, Seen] = {}
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.assigned = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            if not self.assigned.is_set() and self.consumer.assignment():
                self.assigned.set()
            for m in self.consumer.consume(256, timeout=0.05):
                if m.error():
                    continue
                now = time.time() * 1000
                topic, key = m.topic(), (m.key() or b"").decode(errors="replace")
                camera = key.rsplit(":", 1)[0]
                with self.lock:
                    seen = self.cams.setdefault(camera, Seen())
                    if topic == self.names.detections:
                        d = Detection.parse(m.value())
                        seen.results.setdefault(d.seq, (d.status, now, d.ts_ms, d.boxes,
                                                        d.latency))
                    elif topic == self.names.shadow:
                        seen.checks += 1
                    else:
                        seen.dead += 1
        self.consumer.close()

    def answered(self, cameras: list[str]) -> int:
        with self.lock:
            return sum(len(self.cams.get(c, Seen()).results) for c in cameras)


def record_json(camera: str, seq: int, ts_ms: int, b64: str) -> bytes:
    """A FrameRecord's JSON, built from pre-encoded base64 (the bench's producer must
    not be what limits the box)."""
    return (f'{{"camera":"{camera}","seq":{seq},"ts_ms":{ts_ms},"jpeg":"{b64}"}}').encode()


def offset(i: int, n: int, clip_len: int) -> int:
    """Where camera ``i`` of ``n`` starts in the clip."""
    return (i * clip_len) // max(1, n)


def trial(s: Settings, col: Collector, clip: str, b64s: list[str], n: int, warmup_s: float,
          scored_s: float, drain_s: float = 12.0) -> dict[str, Any]:
    """``n`` cameras for ``warmup_s + scored_s`` seconds; their results and the verdict."""
    tag = uuid.uuid4().hex[:4]
    cams = [f"{clip}-{tag}-{i}" for i in range(n)]
    producer = Producer(s.producer_config())
    topic = TopicNames(s.topic_prefix).frames
    frames = int((warmup_s + scored_s) * FPS)
    t0 = time.time() + 0.3
    for k in range(frames):
        for i, cam in enumerate(cams):
            due = t0 + k / FPS + i / (FPS * n)
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            idx = (offset(i, n, len(b64s)) + k) % len(b64s)
            producer.produce(topic, key=cam.encode(),
                             value=record_json(cam, k, int(due * 1000), b64s[idx]))
            producer.poll(0)
    producer.flush(30)
    deadline = time.time() + drain_s
    while col.answered(cams) < n * frames and time.time() < deadline:
        time.sleep(0.1)
    with col.lock:
        seen = {c: col.cams.get(c, Seen()) for c in cams}
    lat, counts, missing, boxes = [], {"ok": 0, "shed": 0, "reused": 0}, 0, []
    parts: dict[str, list[float]] = {}
    for i, c in enumerate(cams):
        for k in range(frames):
            r = seen[c].results.get(k)
            scored = k >= warmup_s * FPS
            if r is None:
                missing += 1
                if scored:
                    lat.append(float("inf"))
                continue
            status, got_ms, ts_ms, bx, latency = r
            counts[status] = counts.get(status, 0) + 1
            if scored:
                lat.append(got_ms - ts_ms)
                if status == "ok":
                    for part in STAGES:
                        parts.setdefault(part, []).append(getattr(latency, part))
                    parts.setdefault("read_back_ms", []).append(got_ms - ts_ms - latency.total_ms)
            boxes.append(((offset(i, n, len(b64s)) + k) % len(b64s), bx))
    checks = sum(v.checks for v in seen.values())
    dead = sum(v.dead for v in seen.values())
    lat.sort()
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else float("inf")
    total = n * frames
    inferences = counts["ok"] + checks
    ok = p95 <= P95_MS and counts["shed"] == 0 and missing == 0 and dead == 0
    return {"cameras": n, "pass": ok, "p95_ms": round(p95, 1) if p95 != float("inf") else None,
            "p50_ms": round(statistics.median(lat), 1) if lat and lat[len(lat) // 2] != float(
                "inf") else None,
            "frames": total, "detected": counts["ok"], "reused": counts["reused"],
            "shed": counts["shed"], "missing": missing, "dead_letters": dead, "checks": checks,
            "gated_fraction": round(1 - inferences / total, 4) if total else 0.0,
            "median_ms": {k: round(statistics.median(v), 1) for k, v in parts.items()},
            "_boxes": boxes}


def search(run: Any, start: int, limit: int) -> tuple[int, list[dict]]:
    """Most cameras that pass, adding cameras from ``start`` (then bisecting)."""
    trials: list[dict] = []

    def passes(n: int) -> bool:
        t = run(n)
        trials.append(t)
        print(f"    {n} cameras: {'pass' if t['pass'] else 'FAIL'} p95 {t['p95_ms']} ms "
              f"(p50 {t['p50_ms']}; medians {t['median_ms']}), "
              f"{t['detected']} detected, {t['reused']} reused, {t['shed']} shed, "
              f"{t['missing']} missing, {t['checks']} checks", flush=True)
        return bool(t["pass"])

    n = max(1, start)
    if not passes(n):
        while n > 1:
            n -= 1
            if passes(n):
                return n, trials
        return 0, trials
    best, step = n, max(1, n // 4)
    while best + step <= limit:
        if passes(best + step):
            best, step = best + step, step * 2
            continue
        lo, hi = best, best + step  # lo passes, hi fails
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if passes(mid):
                lo = mid
            else:
                hi = mid
        return lo, trials
    return best, trials


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI-sized run (~8 min)")
    ap.add_argument("--reps", type=int, default=None, help="confirmations of each best")
    ap.add_argument("--limit", type=int, default=48, help="most cameras tried")
    ap.add_argument("--probe", type=int, default=0, help="only one trial of this many "
                    "cameras per configuration on vtest, with its latency breakdown")
    args = ap.parse_args()
    warmup_s, scored_s = (2.0, 8.0) if args.quick else (3.0, 20.0)
    reps = args.reps or (1 if args.quick else 3)

    base = Settings()
    video = ensure_sample_video(base.sample_video)
    prepare_models(base.model_dir, video)
    frames = read_video(video, 300 if args.quick else 0)
    clips = {"quiet": quiet_clip(frames, cycles=2 if args.quick else 4), "vtest": frames}
    jpegs = {k: [encode_jpeg(f, base.jpeg_quality) for f in v] for k, v in clips.items()}
    b64s = {k: [base64.b64encode(j).decode() for j in v] for k, v in jpegs.items()}
    ref_det = load_detector(base.model_dir, FP32, providers="onnxruntime", intra_op_threads=2,
                            score_threshold=base.score_threshold)
    ref = {k: [ref_det.detect([decode_jpeg(j)])[0] for j in v] for k, v in jpegs.items()}
    same_det = load_detector(base.model_dir, INT8, providers="auto", intra_op_threads=2,
                             score_threshold=base.score_threshold)
    same = {k: [same_det.detect([decode_jpeg(j)])[0] for j in v] for k, v in jpegs.items()}
    del ref_det, same_det
    runtimes = Manifest.load(base.model_dir / INT8).runtimes
    out: dict[str, Any] = {"bench": "cameras", "quick": args.quick, "fps": FPS,
                           "p95_ms_max": P95_MS, "warmup_s": warmup_s, "scored_s": scored_s,
                           "reps": reps, "model": INT8, "roles": "router,edge",
                           "auto_pick": runtimes.get("pick"),
                           "clip_frames": {k: len(v) for k, v in jpegs.items()},
                           "configs": {}}
    best: dict[str, dict[str, int]] = {}
    logs = Path(tempfile.gettempdir()) / "autosteer-bench-cameras"
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in CONFIGS.items():
            # a fresh broker per configuration: tansu keeps every frame in memory (no
            # retention), and a loaded one stopped answering in a long run
            broker = LocalBroker(free_port(), Path(tmp) / name)
            broker.start()
            try:
                if args.probe and name == "fastest":
                    continue
                s = base.model_copy(update={
                    "kafka_bootstrap": broker.bootstrap,
                    "topic_prefix": f"cams{uuid.uuid4().hex[:6]}", "roles": "router,edge",
                    "offload_policy": "edge-only", "shadow_rate": 0.0, "node": "cams",
                    "web_port": free_port(), "state_dir": Path(tmp), **cfg})
                worker = WorkerProcess(s, logs / f"{name}.log", loglevel="warning")
                col = Collector(s)
                try:
                    worker.start(120)  # creates the topics first
                    col.start()
                    if not col.assigned.wait(60):
                        raise SystemExit(f"{name}: the collector got no partitions in 60 s")
                    warm = trial(s, col, "warm", b64s["vtest"][:20], 1, 0.0, 3.0, drain_s=60)
                    if not warm["detected"]:
                        raise SystemExit(f"{name}: the worker answered {warm['detected']} of "
                                         f"{warm['frames']} warm-up frames; see {logs}/{name}.log")
                    print(f"{name}: {cfg}", flush=True)
                    best[name] = {}
                    out["configs"][name] = {"settings": cfg}
                    if args.probe:
                        t = trial(s, col, "vtest", b64s["vtest"], args.probe, warmup_s,
                                  scored_s)
                        print(json.dumps({k: v for k, v in t.items() if k != "_boxes"}))
                        continue
                    for clip in clips:
                        start = (best["fastest"][clip] if name == "gated" else
                                 best["today"][clip] if name == "fastest" else 2)
                        print(f"  {clip}: from {start} cameras", flush=True)
                        def run(n: int, s: Any = s, col: Any = col, c: str = clip) -> dict:
                            return trial(s, col, c, b64s[c], n, warmup_s, scored_s)

                        n, trials = search(run, start, args.limit)
                        confirm = [run(n) for _ in range(reps - 1)] if n else []
                        passing = [t for t in trials + confirm if t["cameras"] == n and t["pass"]]
                        pick = passing[-1] if passing else None
                        f1 = f1_same = None
                        if pick is not None:
                            got = [bx for _i, bx in pick["_boxes"]]
                            f1 = round(pooled_f1(got, [ref[clip][i] for i, _ in pick["_boxes"]]), 4)
                            f1_same = round(pooled_f1(
                                got, [same[clip][i] for i, _ in pick["_boxes"]]), 4)
                        best[name][clip] = n
                        out["configs"][name][clip] = {
                            "cameras": n, "f1_vs_fp32": f1, "f1_vs_every_frame": f1_same,
                            "confirmations": f"{sum(t['pass'] for t in confirm) + 1}/"
                                             f"{len(confirm) + 1}" if n else "0/0",
                            "p95_ms": [t["p95_ms"] for t in trials + confirm
                                       if t["cameras"] == n],
                            "gated_fraction": pick["gated_fraction"] if pick else None,
                            "trials": [{k: v for k, v in t.items() if k != "_boxes"}
                                       for t in trials + confirm]}
                        print(f"  {clip}: {n} cameras, F1 vs FP32 {f1}", flush=True)
                finally:
                    col.halt.set()
                    if col.is_alive():
                        col.join(10)
                    worker.stop()
            finally:
                broker.stop()

    if args.probe:
        return
    g = out["configs"]["gated"]
    out["cameras_today"] = best["today"]
    out["cameras_fastest"] = best["fastest"]
    out["cameras_best"] = {c: max(best[k][c] for k in CONFIGS) for c in clips}
    out["cameras_ratio"] = {c: round(out["cameras_best"][c] / best["today"][c], 3)
                            if best["today"][c] else None for c in clips}
    out["gated_fraction"] = {c: g[c]["gated_fraction"] for c in clips}
    out["gated_f1"] = {c: g[c]["f1_vs_every_frame"] for c in clips}
    out["f1_vs_fp32"] = {k: {c: out["configs"][k][c]["f1_vs_fp32"] for c in clips}
                         for k in CONFIGS}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
