"""Offload controllers in a discrete-event simulation of edge queue -> uplink -> cloud queue.

Every controller (ours and each baseline) runs on the same seeded arrival trace, the same
service-time profiles and the same emulated link (``offload.link.EmulatedLink``), through
the same ``decide``/``learn`` seam as in the pipeline. Observations come back with the
pipeline's latency fields (plus ``link_ms``) after the result's return trip.

- Edge: one server, INT8 SSD-MobileNet-v2 per-frame time measured on this machine with
  one thread, times ``EDGE_SLOWDOWN`` (a weaker box than this one), lognormal noise.
- Cloud: ``CLOUD_SERVERS`` servers, FP32 batches of up to 4, measured batch profile scaled
  to 20 ms per single frame (a stronger box), lognormal noise.
- Uplink: FIFO wire at the link's bandwidth, one-way delay plus exponential jitter; the
  result comes back after the one-way delay plus jitter.
- Quality levels: a cloud frame may be re-encoded smaller on the edge box first (a FIFO
  encoder, measured time x ``EDGE_SLOWDOWN``), then carries the level's measured share of
  the bytes; its result's accuracy is the level's measured agreement with the cloud model
  on the original (``LEVELS_MEASURED``). Ours, DeepDecision and FastVA choose levels; the
  others send frames as captured. Accuracy is reported for every policy; ours keeps
  ``ACCURACY_FLOOR``.
- Loads: empty (2 cameras x 5 fps), normal (4 x 8 fps), busy (normal plus a backlog
  chunk of queued video inserted every few seconds). Links: 50 Mbit/s, 20 ms RTT and
  10 Mbit/s, 100 ms RTT.
- Step tests: mid-run RTT x5, and the edge slowed x3; an SVG of p95 and the offload ratio
  over time goes to ``bench/results/offload_step.svg``.

Latency is end to end (arrival at the router -> result back at the router); the first
``WARMUP_S`` seconds are not scored; frames still unfinished when the run stops count with
the time they had waited.

Then the real pipeline (skip it with ``--no-real``): a tansu broker and, per policy, a
fresh worker (roles router, edge, cloud; the emulated link in its router, 20 Mbit/s,
20 ms one way) fed JPEG frames of vtest.avi paced in real time from a seeded schedule,
the same for every policy. Both detectors run on this machine's cores with one thread
each, so the two tiers compete for the same CPU. Every policy gets the same profile,
measured at the start (decode + inference per frame, one thread). Latency is
``Detection.latency.total_ms`` (capture -> detection published), scored after
``REAL_WARMUP_S``. Only detected frames (``status: "ok"``) are served: a frame shed for
its age, or given an earlier frame's boxes, is counted apart (``shed``, ``reused``), never
in ``fps``, and its latency is the time it had waited when the run stopped, as for an
unfinished frame.

- busy load (2 cameras x 5 fps plus an 8-frame backlog chunk every ~6 s): every policy;
  ``real_p95_ratio`` = the controller's p95 / the best baseline's.
- normal load (the cameras alone): the controller again; ``model_mape`` = mean
  |predicted - measured| / measured of the mean latency, each decision's prediction
  against the next decision's measurement (the frames seen back in between).

Last line: one JSON object.

    python bench/offload.py            # 120 s sim runs x 3 seeds; 60 s real runs, all policies
    python bench/offload.py --quick    # 30 s x 1 seed; 25 s real runs, controller, JSEC, FastVA
    python bench/offload.py --measure  # re-measure service times and quality levels first
    python bench/offload.py --testbed [--quick]  # on separate hosts (bench/offload_testbed.py)
    python bench/offload.py --testbed --steps [--quick]  # step tests on them
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from autosteer.errors import RecordError
from autosteer.infra.process import free_port
from autosteer.infra.worker import WorkerProcess
from autosteer.offload import (
    FULL,
    CloudOnly,
    ControlConfig,
    DeepDecisionStyle,
    EdgeOnly,
    EmulatedLink,
    FastVAStyle,
    FixedRatio,
    FrameMeta,
    HillClimbing,
    ModelInputs,
    Observation,
    OffloadController,
    OffloadModel,
    OffloadPolicy,
    QualityLevel,
    RateMeter,
    ShortestCompletion,
    SystemProfile,
    TierProfile,
)
from autosteer.settings import Settings
from autosteer.topics.names import TopicNames
from autosteer.topics.records import Detection, FrameRecord, OffloadDecision

RESULTS = Path(__file__).resolve().parent / "results"
DOCS = Path(__file__).resolve().parent.parent / "docs"

# Measured on this machine (ONNX Runtime, 1 intra-op thread, 768x576 frames of vtest.avi):
# INT8 batch 1: 27.0 ms (sd 1.2); FP32 batches of 1 / 2 / 4: 47.5 / 94.3 / 170.9 ms.
EDGE_MS = 27.0
EDGE_CV = 0.05
CLOUD_BATCH_MS = (47.5, 94.3, 132.6, 170.9)  # batch 3 interpolated
CLOUD_CV = 0.05
EDGE_SLOWDOWN = 1.5  # the edge box is weaker: ~40 ms/frame, 2.5x the 16.5 ms of 2 threads
CLOUD_FRAME_MS = 20.0  # the cloud box is stronger: 20 ms for a single frame
CLOUD_SERVERS = 2
FRAME_BYTES = 80_000
FRAME_CV = 0.10
ACCURACY = {"edge": 0.90, "cloud": 1.0}
# Quality levels a cloud frame may be sent at (re-encoded on the edge box first), measured
# on this machine (``--measure``): 100 frames of vtest.avi spread over the video, JPEG q85 as
# captured (89 KB); bytes = mean re-encoded / captured; accuracy = agreement (F1, same
# label, IoU >= 0.5; retrain.agreement) of the FP32 detector on the re-encoded frame with
# its own boxes on the captured one; encode = decode + resize + encode, median ms, 1 thread.
# (name, scale, JPEG quality, bytes ratio, accuracy, encode ms)
LEVELS_MEASURED = (  # the bytes / accuracy frontier of the measured grid (LEVEL_GRID)
    ("s0.75q50", 0.75, 50, 0.297, 0.935, 4.3),
    ("s0.75q30", 0.75, 30, 0.214, 0.904, 3.2),
    ("s0.5q50", 0.5, 50, 0.156, 0.889, 1.8),
)
ACCURACY_FLOOR = 0.90  # ours: least expected accuracy, that of edge only (INT8 vs FP32)
FEEDBACK_S = 0.010  # result -> detections topic -> router feedback agent
WARMUP_S = 5.0
DEADLINE_MS = 200.0  # for the baselines that take a deadline (DeepDecision, FastVA)
SLO_MS = 200.0  # every policy's SLO (capture -> result back): the same as that deadline
SLO_WIDE_MS = 400.0  # a second, looser SLO, reported too
SHED_BUDGET = 0.02  # the most frames any policy may shed (of the last 10 s); --shed-budget

LINKS = {"50M-20ms": (50e6, 0.010, 0.001), "10M-100ms": (10e6, 0.050, 0.005)}
LOADS = {  # cameras, fps each, backlog chunk (frames, every s)
    "empty": (2, 5.0, None),
    "normal": (4, 8.0, None),
    "busy": (4, 8.0, (30, 5.0)),
}


def quality_levels(measured: tuple = LEVELS_MEASURED) -> tuple[QualityLevel, ...]:
    """FULL, then the measured levels; encoding runs on the (weaker) edge box."""
    return (FULL,) + tuple(
        QualityLevel(name, scale, q, ratio, acc, enc_ms * EDGE_SLOWDOWN / 1000)
        for name, scale, q, ratio, acc, enc_ms in measured)


def system_profile(edge_ms: float = EDGE_MS,
                   cloud_batch_ms: tuple[float, ...] = CLOUD_BATCH_MS,
                   levels: tuple = LEVELS_MEASURED) -> SystemProfile:
    """What every policy is told about the tiers (the simulator uses the same numbers)."""
    scale = CLOUD_FRAME_MS / cloud_batch_ms[0]
    return SystemProfile(
        edge=TierProfile((edge_ms * EDGE_SLOWDOWN / 1000,), 1, ACCURACY["edge"], EDGE_CV ** 2),
        cloud=TierProfile(tuple(b * scale / 1000 for b in cloud_batch_ms), CLOUD_SERVERS,
                          ACCURACY["cloud"], CLOUD_CV ** 2),
        levels=quality_levels(levels))


LEVEL_GRID = ((1.0, 50), (1.0, 30), (0.75, 50), (0.75, 30), (0.6, 50), (0.6, 30), (0.5, 70),
              (0.5, 50), (0.5, 30), (0.4, 50))


def measure_levels(grid: tuple = LEVEL_GRID, n: int = 100) -> tuple:
    """Bytes, accuracy and encode time of each (scale, JPEG quality) in ``grid`` (see
    :data:`LEVELS_MEASURED`); returns rows in its format, one per grid point."""
    import cv2
    from autosteer.processors.decode import decode_jpeg, encode_jpeg
    from autosteer.processors.detector import load_detector
    from autosteer.processors.reencode import reencode
    from autosteer.retrain.agreement import agreement

    cap = cv2.VideoCapture(str(Path.home() / ".cache/autosteer/data/vtest.avi"))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    src = []
    for i in range(0, total, max(1, total // n)):
        cap.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, img = cap.read()
        if ok and len(src) < n:
            src.append(encode_jpeg(img, 85))
    cap.release()
    det = load_detector(Path.home() / ".cache/autosteer/models", "ssd_mobilenet_v2_coco_fp32",
                        intra_op_threads=1)
    ref = [det.detect([decode_jpeg(j)])[0] for j in src]
    rows = []
    for scale, q in grid:
        ms, out = [], []
        for j in src:
            for _ in range(3):
                t0 = time.perf_counter()
                r = reencode(j, scale=scale, quality=q)
                ms.append((time.perf_counter() - t0) * 1000)
            out.append(r)
        acc = statistics.mean(agreement(det.detect([decode_jpeg(r)])[0], b)
                              for r, b in zip(out, ref, strict=True))
        name = f"q{q}" if scale == 1.0 else f"s{scale:g}q{q}"
        rows.append((name, scale, q, round(sum(map(len, out)) / sum(map(len, src)), 3),
                     round(acc, 3), round(statistics.median(ms), 1)))
    return tuple(rows)


def measure_profiles() -> tuple[float, tuple[float, ...]]:
    """Re-measure INT8 batch-1 and FP32 batch-1..4 times (1 thread), in ms."""
    import cv2
    from autosteer.processors.detector import load_detector

    cap = cv2.VideoCapture(str(Path.home() / ".cache/autosteer/data/vtest.avi"))
    frames = [cap.read()[1] for _ in range(16)]
    cap.release()
    models = Path.home() / ".cache/autosteer/models"
    out = {}
    for name in ("ssd_mobilenet_v2_coco_int8", "ssd_mobilenet_v2_coco_fp32"):
        det = load_detector(models, name, intra_op_threads=1)
        det.detect(frames[:1])
        ms = []
        for b in (1, 2, 3, 4):
            ts = []
            for i in range(0, 16 - b + 1, b):
                t0 = time.perf_counter()
                det.detect(frames[i:i + b])
                ts.append((time.perf_counter() - t0) * 1000)
            ms.append(statistics.median(ts))
        out[name] = ms
    return out["ssd_mobilenet_v2_coco_int8"][0], tuple(out["ssd_mobilenet_v2_coco_fp32"])


# -- arrivals -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    camera: str
    seq: int
    t: float
    size: int


@dataclass(frozen=True)
class Copy(Frame):
    """A copy of an edge frame that the policy also sent to the cloud (``Route.copy``):
    it loads the link and the cloud, its result only goes back to the policy."""


def trace(load: str, duration_s: float, seed: int,
          loads: dict[str, tuple] = LOADS) -> list[Frame]:
    """Periodic cameras (random phase, 2 ms capture jitter) plus backlog chunks (busy)."""
    rng = random.Random(seed)
    n_cam, fps, chunk = loads[load]
    sigma = math.sqrt(math.log(1 + FRAME_CV ** 2))

    def size() -> int:
        return int(FRAME_BYTES * rng.lognormvariate(-sigma * sigma / 2, sigma))

    out = []
    for c in range(n_cam):
        t, seq = rng.uniform(0, 1 / fps), 0
        while t < duration_s:
            out.append(Frame(f"cam{c}", seq, max(0.0, t + rng.gauss(0, 0.002)), size()))
            t, seq = t + 1 / fps, seq + 1
    if chunk is not None:
        frames, every = chunk
        t, k = rng.uniform(1.0, every), 0
        while t < duration_s:
            out.extend(Frame(f"backlog{k}", i, t, size()) for i in range(frames))
            t, k = t + every * rng.uniform(0.7, 1.3), k + 1
    return sorted(out, key=lambda f: f.t)


# -- the simulator --------------------------------------------------------------------------
PolicyFactory = Callable[[Callable[[], float]], OffloadPolicy]  # clock -> policy


@dataclass
class Run:
    latencies: np.ndarray  # end to end, s, scored frames
    tiers: list[str]
    throughput_fps: float
    decide_us: float
    learn_us: float
    decide_p50_us: float
    decisions: list = field(default_factory=list)  # (t, ControlDecision) for ours
    done: list = field(default_factory=list)  # (t_back, e2e_s) for every frame
    accuracy: list = field(default_factory=list)  # per scored frame: its tier's / level's
    levels: Counter = field(default_factory=Counter)  # cloud frames per quality level
    copies: int = 0  # edge frames also sent to the cloud to measure it (scored window)
    shed: int = 0  # scored frames the policy answered "shed" (never answered: SLO misses)
    frames: list = field(default_factory=list)  # (arrival, tier or "shed", e2e_s), all frames


class Sim:
    """One run: a trace through one policy, the edge, the link and the cloud."""

    def __init__(self, prof: SystemProfile, frames: list[Frame], policy_factory: PolicyFactory,
                 link: tuple[float, float, float], seed: int, duration_s: float,
                 steps: tuple[tuple[float, str, float], ...] = ()) -> None:
        self.now = 0.0
        self.policy = policy_factory(lambda: self.now)
        self.frames = frames
        self.link = EmulatedLink(link[0], link[1], link[2], seed=seed + 1)
        self.seed = seed
        self.duration_s = duration_s
        self.steps = steps
        self.edge_factor = 1.0
        self.edge_s = prof.edge.batch_s[0]
        self.cloud_batch_s = prof.cloud.batch_s
        self._events: list = []
        self._n = 0

    def _at(self, t: float, kind: str, data: object) -> None:
        self._n += 1
        heapq.heappush(self._events, (t, self._n, kind, data))

    def _noise(self, cv: float, *key: object) -> float:
        """Lognormal service-time noise, mean 1. Keyed by what is served (common random
        numbers): the same frame takes the same time under every policy, so policies are
        compared on the same draws, not on the order in which they consumed a stream."""
        s = math.sqrt(math.log(1 + cv * cv))
        rng = random.Random(zlib.crc32("/".join(map(str, (self.seed,) + key)).encode()))
        return rng.lognormvariate(-s * s / 2, s)

    def run(self, drain_s: float = 20.0) -> Run:
        for f in self.frames:
            self._at(f.t, "arrive", f)
        for t, what, factor in self.steps:
            self._at(t, what, factor)
        edge_q: deque = deque()
        edge_busy = False
        cloud_q: deque = deque()
        cloud_free = CLOUD_SERVERS
        routed: dict[tuple[str, int, bool], tuple[str, float, float]] = {}  # tier, link, arrived
        copies = 0
        shed: set[tuple[str, int]] = set()
        result: dict[tuple[str, int], float] = {}
        tiers: dict[tuple[str, int], str] = {}
        accuracy: dict[tuple[str, int], float] = {}
        levels: Counter = Counter()
        encoder_free = 0.0  # the edge box's re-encoder: a FIFO of its own
        done_log = []
        t_dec = t_learn = 0.0
        n_dec = n_learn = 0
        dec_times = []
        decisions = []
        last_dec = None
        served_in_window = 0
        end = self.duration_s + drain_s
        policy = self.policy

        def start_edge() -> None:
            nonlocal edge_busy
            f = edge_q.popleft()
            edge_busy = True
            s = self.edge_s * self.edge_factor * self._noise(EDGE_CV, "edge", f.camera, f.seq)
            self._at(self.now + s, "edge_done", (f, self.now, s))

        def start_cloud() -> None:
            nonlocal cloud_free
            n = min(len(cloud_q), len(self.cloud_batch_s))
            batch = [cloud_q.popleft() for _ in range(n)]
            cloud_free -= 1
            s = self.cloud_batch_s[n - 1] * self._noise(CLOUD_CV, "cloud", batch[0].camera,
                                                           batch[0].seq, n)
            self._at(self.now + s, "cloud_done", (batch, self.now, s))

        def to_cloud(f: Frame, wire_bytes: int, handover: float) -> None:
            """Onto the link at ``handover``; into the cloud's queue when it arrives."""
            transit = self.link.transit_s(wire_bytes, handover)
            routed[(f.camera, f.seq, isinstance(f, Copy))] = ("cloud", transit,
                                                               handover + transit)
            self._at(handover + transit, "cloud_arrive", f)

        while self._events:
            t, _, kind, data = heapq.heappop(self._events)
            if t > end:
                break
            self.now = t
            if kind == "arrive":
                f = data
                meta = FrameMeta(f.camera, f.seq, int(round(f.t * 1000)), f.size)
                t0 = time.perf_counter()
                route = policy.decide(meta)
                tier = route.tier
                dt = time.perf_counter() - t0
                t_dec += dt
                dec_times.append(dt)
                n_dec += 1
                if isinstance(policy, OffloadController):
                    d = policy.last_decision()
                    if d is not last_dec:
                        decisions.append((t, d))
                        last_dec = d
                tiers[(f.camera, f.seq)] = tier
                if route.shed:  # answered "shed": nothing is sent
                    shed.add((f.camera, f.seq))
                    tiers[(f.camera, f.seq)] = "shed"
                elif tier == "edge":
                    accuracy[(f.camera, f.seq)] = ACCURACY["edge"]
                    routed[(f.camera, f.seq, False)] = ("edge", 0.0, t)
                    edge_q.append(f)
                    if not edge_busy:
                        start_edge()
                    if route.copy:  # sent as captured, right away
                        copies += WARMUP_S <= f.t <= self.duration_s
                        to_cloud(Copy(f.camera, f.seq, f.t, f.size), f.size, t)
                else:
                    lv = route.level
                    levels[lv.name] += WARMUP_S <= f.t <= self.duration_s
                    accuracy[(f.camera, f.seq)] = ACCURACY["cloud"] * lv.accuracy
                    handover = t
                    if not lv.is_full:  # re-encoded on the edge box before the wire
                        encoder_free = (max(t, encoder_free)
                                        + lv.encode_s * self._noise(EDGE_CV, "encode", f.camera, f.seq))
                        handover = encoder_free
                    to_cloud(f, max(1, int(f.size * lv.bytes_ratio)), handover)
            elif kind == "cloud_arrive":
                cloud_q.append(data)
                if cloud_free > 0:
                    start_cloud()
            elif kind in ("edge_done", "cloud_done"):
                batch, started, s = data
                batch = batch if isinstance(batch, list) else [batch]
                tier = "edge" if kind == "edge_done" else "cloud"
                for f in batch:
                    is_copy = isinstance(f, Copy)
                    _, transit, arrived = routed.pop((f.camera, f.seq, is_copy))
                    back = t if tier == "edge" else t + self.link.delay_s + self.link.jitter()
                    ts = round(f.t * 1000) / 1000
                    obs = Observation(  # total_ms: until the result is back at the edge
                        camera=f.camera, tier=tier, total_ms=(back - ts) * 1000,
                        infer_ms=s / len(batch) * 1000,
                        queue_ms=(started - arrived) * 1000,
                        seq=f.seq, ts_ms=int(round(f.t * 1000)),
                        link_ms=transit * 1000 if tier == "cloud" else 0.0, copy=is_copy)
                    self._at(back + FEEDBACK_S, "observe", obs)
                    if is_copy:
                        continue
                    result[(f.camera, f.seq)] = back - f.t
                    done_log.append((back, back - f.t))
                    if WARMUP_S <= f.t and WARMUP_S <= t <= self.duration_s:
                        served_in_window += 1
                if tier == "edge":
                    edge_busy = False
                    if edge_q:
                        start_edge()
                else:
                    cloud_free += 1
                    if cloud_q:
                        start_cloud()
            elif kind == "observe":
                t0 = time.perf_counter()
                policy.learn(data)
                t_learn += time.perf_counter() - t0
                n_learn += 1
            elif kind == "delay":
                self.link.set(delay_s=self.link.delay_s * data)
            elif kind == "edge":
                self.edge_factor *= data
        scored = [f for f in self.frames if WARMUP_S <= f.t <= self.duration_s]
        # a shed frame is never answered: it counts as an unfinished one (the time until
        # the run stopped), in the percentiles too, and misses every SLO
        lat = np.array([result.get((f.camera, f.seq), end - f.t) for f in scored])
        return Run(lat, [tiers.get((f.camera, f.seq), "edge") for f in scored],
                   served_in_window / (self.duration_s - WARMUP_S),
                   t_dec / max(n_dec, 1) * 1e6, t_learn / max(n_learn, 1) * 1e6,
                   float(np.median(dec_times)) * 1e6 if dec_times else 0.0, decisions, done_log,
                   [accuracy[(f.camera, f.seq)] for f in scored if (f.camera, f.seq) in accuracy],
                   levels, copies, sum((f.camera, f.seq) in shed for f in scored),
                   [(f.t, tiers.get((f.camera, f.seq), "edge"),
                     result.get((f.camera, f.seq), end - f.t))
                    for f in self.frames if f.t <= self.duration_s])


# -- policies -------------------------------------------------------------------------------
def policies(prof: SystemProfile, shed_budget: float = SHED_BUDGET
             ) -> dict[str, PolicyFactory]:
    """Every policy, each with the same SLO and the same shedding option (``shed_budget``:
    0 = none sheds); edge only and cloud only are fixed placements and never shed."""
    slo = {"slo_ms": SLO_MS, "shed_budget": shed_budget}
    return {
        "ours": lambda clock: OffloadController(
            prof, ControlConfig(accuracy_floor=ACCURACY_FLOOR, **slo), clock=clock),
        "edge-only": lambda clock: EdgeOnly(),
        "cloud-only": lambda clock: CloudOnly(),
        "deepdecision": lambda clock: DeepDecisionStyle(
            prof, deadline_ms=DEADLINE_MS, accuracy_floor=ACCURACY_FLOOR, clock=clock,
            **slo),
        "fastva": lambda clock: FastVAStyle(prof, deadline_ms=DEADLINE_MS, clock=clock, **slo),
        "hill-climb": lambda clock: HillClimbing(prof, clock=clock, **slo),
        "jsec": lambda clock: ShortestCompletion(prof, clock=clock, **slo),
    }


def summarize(run: Run) -> dict:
    """Latency percentiles (shed frames count as never answered), SLO attainment (the
    share of scored frames answered within the SLO: shed, late and unfinished frames
    miss), accuracy over the answered frames (each at its tier's / level's measured
    accuracy), the shed share."""
    lat = run.latencies * 1000
    n_cloud = run.tiers.count("cloud")
    answered = np.array([t != "shed" for t in run.tiers])
    return {
        "slo": float(np.mean(answered & (lat <= SLO_MS))),
        "slo_wide": float(np.mean(answered & (lat <= SLO_WIDE_MS))),
        "shed_share": run.shed / len(run.tiers),
        "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
        "p99": float(np.percentile(lat, 99)), "mean": float(lat.mean()),
        "fps": run.throughput_fps, "cloud_share": n_cloud / len(run.tiers),
        "accuracy": float(np.mean(run.accuracy)) if run.accuracy else math.nan,
        "reduced_share": (n_cloud - run.levels.get("full", 0)) / max(n_cloud, 1),
        "decide_us": run.decide_us, "decide_p50_us": run.decide_p50_us,
        "learn_us": run.learn_us,
    }


def geomean(xs: list[float]) -> float:
    return float(math.exp(sum(math.log(x) for x in xs) / len(xs)))


# -- model check ----------------------------------------------------------------------------
def model_mape(prof: SystemProfile, duration_s: float, seed: int) -> tuple[float, list]:
    """Predicted (true inputs) vs simulated mean latency, fixed splits, normal load."""
    rows = []
    for link_name, link in LINKS.items():
        frames = trace("normal", duration_s, seed)
        meter = RateMeter(window_s=duration_s)
        for f in frames:
            meter.update(f.t)
        n_cam, fps, _ = LOADS["normal"]
        sizes = np.array([f.size for f in frames], dtype=float)
        inputs = ModelInputs(
            rates_fps=(fps,) * n_cam, sizes_bytes=(float(sizes.mean()),) * n_cam,
            edge_s=prof.edge.batch_s[0], cloud=prof.cloud, bandwidth_Bps=link[0] / 8,
            delay_s=link[1] + link[2], jitter_s=link[2],
            arrival_scv=meter.dispersion(6 * prof.edge.batch_s[0]), edge_scv=EDGE_CV ** 2,
            size_scv=float(sizes.var() / sizes.mean() ** 2))
        model = OffloadModel(inputs)
        for x in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
            pred = model.predict(x)
            if not (pred.edge_util < 0.95 and pred.link_util < 0.95):
                continue
            run = Sim(prof, frames, lambda clock, x=x: FixedRatio(1 - x), link, seed,
                      duration_s).run()
            sim = float(run.latencies.mean())
            rows.append((link_name, x, 1000 * float(pred.mean_s), 1000 * sim,
                         1000 * float(pred.p95_s), 1000 * float(np.percentile(run.latencies, 95))))
    mape = statistics.mean(abs(p - s) / s for _, _, p, s, _, _ in rows)
    return mape, rows


# -- step tests and the plot ----------------------------------------------------------------
def step_test(prof: SystemProfile, what: str, factor: float, duration_s: float,
              seed: int, shed_budget: float = SHED_BUDGET) -> dict:
    """Normal load on the fast link; at half time the RTT (``delay``) or the edge's service
    time (``edge``) is multiplied by ``factor``. Ours and JSEC, same trace, same SLO.

    ``settle_intervals``: control steps after the change until our offload ratio stays
    within 0.05 of where it ends; ``slo_settle_s``: seconds (1 s bins, by arrival) after
    the change until our SLO attainment stays within 0.05 of its final level (the median
    of the last 40% of the run)."""
    t_step = duration_s / 2
    frames = trace("normal", duration_s, seed)
    link = LINKS["50M-20ms"]
    out = {}
    for name in ("ours", "jsec"):
        run = Sim(prof, frames, policies(prof, shed_budget)[name], link, seed, duration_s,
                  steps=((t_step, what, factor),)).run()
        out[name] = run
    ours = out["ours"]
    ticks = [(t, d.offload_ratio) for t, d in ours.decisions if d is not None]
    after = [(t, r) for t, r in ticks if t >= t_step]
    final = statistics.median(r for t, r in after if t >= t_step + 0.6 * (duration_s - t_step))
    settle = len(after)  # control steps after the change until the ratio stays within 0.05
    for i in range(len(after)):
        if all(abs(r2 - final) <= 0.05 for _, r2 in after[i:]):
            settle = i + 1
            break
    slo = [(t, v) for t, v in per_second(ours, duration_s)["slo"] if t >= t_step]
    slo_final = statistics.median(v for t, v in slo if t >= t_step + 0.6 * (duration_s - t_step))
    slo_settle = next((i for i in range(len(slo))
                       if all(v >= slo_final - 0.05 for _, v in slo[i:])), len(slo))
    return {"t_step": t_step, "ticks": ticks, "final_ratio": final, "settle_intervals": settle,
            "slo_settle_s": slo_settle, "slo_final": slo_final,
            "slo_before": statistics.mean(v for t, v in per_second(ours, duration_s)["slo"]
                                          if WARMUP_S <= t < t_step),
            "ours": ours, "jsec": out["jsec"], "what": what, "factor": factor,
            "duration": duration_s}


def per_second(run: Run, duration_s: float, bin_s: float = 1.0) -> dict[str, list]:
    """By arrival second: p95 latency (ms; shed frames as never answered), cloud share of
    the answered frames, SLO attainment (shed and late frames miss)."""
    bins: dict[int, list] = {}
    for t, tier, e in run.frames:
        if t <= duration_s:
            bins.setdefault(int(t / bin_s), []).append((tier, e))
    out: dict[str, list] = {"p95": [], "cloud": [], "slo": []}
    for k, v in sorted(bins.items()):
        t = (k + 0.5) * bin_s
        answered = [tier for tier, _ in v if tier != "shed"]
        out["p95"].append((t, 1000 * float(np.percentile([e for _, e in v], 95))))
        out["cloud"].append((t, answered.count("cloud") / max(len(answered), 1)))
        out["slo"].append((t, sum(tier != "shed" and e * 1000 <= SLO_MS for tier, e in v)
                           / len(v)))
    return out


@dataclass(frozen=True)
class Panel:
    """One chart of the step-test figure: lines over run time, the step marked."""

    title: str
    xmax: float
    ymax: float
    t_mark: float
    series: list  # (label, "#rrggbb", [(t, value), ...])


PANEL_W, PANEL_H, PANEL_PAD = 760, 170, 48


def step_panels(tests: list[dict]) -> list[Panel]:
    """Per step test, by arrival second, ours and JSEC: p95 latency, cloud share (with our
    planned offload ratio per control interval), SLO attainment."""
    panels = []
    for st in tests:
        dur = st["duration"]
        ours, jsec = per_second(st["ours"], dur), per_second(st["jsec"], dur)
        ymax = max(v for s in (ours["p95"], jsec["p95"]) for _, v in s) * 1.1
        step = (f"{'RTT' if st['what'] == 'delay' else 'edge CPU'} "
                f"{'x' if st['what'] == 'delay' else '/'}{st['factor']:g} at t={st['t_step']:.0f}s")
        panels.append(Panel(f"{step}: p95 latency per second (ms)", dur, ymax, st["t_step"],
                            [("ours", "#d62728", ours["p95"]), ("JSEC", "#7f7f7f", jsec["p95"])]))
        panels.append(Panel(
            f"cloud share per second; our planned ratio per interval (settles in "
            f"{st['settle_intervals']} intervals)", dur, 1.0, st["t_step"],
            [("ours", "#d62728", ours["cloud"]), ("JSEC", "#7f7f7f", jsec["cloud"]),
             ("ours planned", "#1f77b4", st["ticks"])]))
        panels.append(Panel(
            f"SLO attainment ({SLO_MS:.0f} ms) per second (ours back within 0.05 of its "
            f"final level after {st['slo_settle_s']} s)", dur, 1.0, st["t_step"],
            [("ours", "#d62728", ours["slo"]), ("JSEC", "#7f7f7f", jsec["slo"])]))
    return panels


def _layout(panels: list[Panel]) -> tuple[list[float], int]:
    """Top edge of each panel and the figure's height (a wider gap after every three)."""
    tops, y = [], 10.0
    for i, _ in enumerate(panels):
        tops.append(y)
        y += PANEL_H + (30 if i % 3 != 2 else 40)
    return tops, int(y)


def _axes(p: Panel, y0: float) -> tuple[Callable[[float], float], Callable[[float], float]]:
    w, h, pad = PANEL_W, PANEL_H, PANEL_PAD
    return (lambda t: pad + (w - 2 * pad) * t / p.xmax,
            lambda v: y0 + 20 + (h - 30) * (1 - min(v, p.ymax) / p.ymax))


def write_svg(path: Path, panels: list[Panel]) -> None:
    """The figure as a dependency-free SVG."""
    w, h, pad = PANEL_W, PANEL_H, PANEL_PAD
    tops, height = _layout(panels)
    out = []
    for p, y0 in zip(panels, tops, strict=True):
        x_of, y_of = _axes(p, y0)
        out += [f'<text x="{pad}" y="{y0 + 12}" font-weight="bold">{p.title}</text>',
                f'<rect x="{pad}" y="{y0 + 20}" width="{w - 2 * pad}" height="{h - 30}" '
                f'fill="none" stroke="#999"/>',
                f'<line x1="{x_of(p.t_mark):.1f}" y1="{y0 + 20}" x2="{x_of(p.t_mark):.1f}" '
                f'y2="{y0 + h - 10}" stroke="#555" stroke-dasharray="4,3"/>']
        for frac in (0.0, 0.5, 1.0):
            out.append(f'<text x="{pad - 4}" y="{y_of(p.ymax * frac) + 4:.1f}" '
                       f'text-anchor="end">{p.ymax * frac:.3g}</text>')
        for t in range(0, int(p.xmax) + 1, 10):
            out.append(f'<text x="{x_of(t):.1f}" y="{y0 + h + 2}" '
                       f'text-anchor="middle">{t}s</text>')
        for i, (label, color, pts) in enumerate(p.series):
            if pts:
                d = " ".join(f"{x_of(t):.1f},{y_of(v):.1f}" for t, v in pts)
                out += [f'<polyline points="{d}" fill="none" stroke="{color}" '
                        f'stroke-width="1.5"/>',
                        f'<text x="{w - pad - 4}" y="{y0 + 34 + 13 * i}" text-anchor="end" '
                        f'fill="{color}">{label}</text>']
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" '
                    f'font-family="sans-serif" font-size="11">\n<rect width="100%" '
                    f'height="100%" fill="white"/>\n' + "\n".join(out) + "\n</svg>\n")


def write_png(path: Path, panels: list[Panel]) -> None:
    """The same figure as a PNG, drawn with OpenCV (already a dependency)."""
    import cv2

    w, h, pad = PANEL_W, PANEL_H, PANEL_PAD
    tops, height = _layout(panels)
    img = np.full((height, w, 3), 255, np.uint8)
    font, grey = cv2.FONT_HERSHEY_SIMPLEX, (150, 150, 150)

    def bgr(color: str) -> tuple[int, int, int]:
        return int(color[5:7], 16), int(color[3:5], 16), int(color[1:3], 16)

    def text(s: str, x: float, y: float, color: tuple = (0, 0, 0), right: bool = False,
             thick: int = 1) -> None:
        if right:
            x -= cv2.getTextSize(s, font, 0.4, thick)[0][0]
        cv2.putText(img, s, (int(x), int(y)), font, 0.4, color, thick, cv2.LINE_AA)

    for p, y0 in zip(panels, tops, strict=True):
        x_of, y_of = _axes(p, y0)
        text(p.title, pad, y0 + 12, thick=1)
        cv2.rectangle(img, (pad, int(y0 + 20)), (w - pad, int(y0 + h - 10)), grey, 1)
        xm = int(x_of(p.t_mark))
        for y in range(int(y0 + 20), int(y0 + h - 10), 7):  # dashed: the step
            cv2.line(img, (xm, y), (xm, min(y + 4, int(y0 + h - 10))), (85, 85, 85), 1)
        for frac in (0.0, 0.5, 1.0):
            text(f"{p.ymax * frac:.3g}", pad - 4, y_of(p.ymax * frac) + 4, right=True)
        for t in range(0, int(p.xmax) + 1, 10):
            text(f"{t}s", x_of(t) - 8, y0 + h + 4)
        for i, (label, color, pts) in enumerate(p.series):
            if pts:
                line = np.array([[x_of(t), y_of(v)] for t, v in pts], np.int32)
                cv2.polylines(img, [line], False, bgr(color), 1, cv2.LINE_AA)
                text(label, w - pad - 4, y0 + 34 + 13 * i, bgr(color), right=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"OpenCV could not write {path}")


# -- the real pipeline ----------------------------------------------------------------------
# One worker (router, edge, cloud agents) on a real tansu broker per policy, the emulated
# link in its router, frames of vtest.avi replayed in real time. Both detectors run on
# this machine's cores, so the "edge" and "cloud" tiers compete for the same CPU.
REAL_LINK = (20.0, 20.0, 1.0)  # Mbit/s, one-way delay ms, jitter ms (40 ms RTT)
REAL_LOADS = {  # cameras, fps each, backlog chunk (frames, every s)
    "normal": (2, 5.0, None),  # the model check: steady cameras only
    "busy": (2, 5.0, (8, 6.0)),  # the comparison: plus a backlog chunk every ~6 s
}
REAL_POLICIES = ("controller", "edge-only", "cloud-only", "fastva", "jsec", "deepdecision")
REAL_QUICK = ("controller", "jsec", "fastva")
REAL_WARMUP_S = 8.0
VIDEO_FRAMES = 120  # distinct frames of vtest.avi, JPEG-encoded once, replayed in a loop


@dataclass
class RealRun:
    """What one policy did on the real pipeline; wall times in s since the replay began."""

    policy: str
    frames: list[Frame]
    done: dict[tuple[str, int], tuple[str, float, float]]  # key -> tier, total_ms, done_t
    decisions: list  # (t, OffloadDecision)
    ended_t: float  # when waiting for results stopped
    startup_s: float
    load1: tuple[float, float]  # the machine's 1-minute load average before and after
    detections: list = field(default_factory=list)  # every Detection read back


class Collector(threading.Thread):
    """Reads detections and offload decisions of one topic prefix in the background."""

    def __init__(self, s: Settings) -> None:
        super().__init__(name="collector", daemon=True)
        from confluent_kafka import Consumer

        self.names = TopicNames(s.topic_prefix)
        self._consumer = Consumer(s.consumer_config(f"bench-{uuid.uuid4().hex[:8]}"))
        self._consumer.subscribe([self.names.detections, self.names.offload_decisions])
        self.detections: list[Detection] = []
        self.decisions: list[tuple[float, OffloadDecision]] = []
        self._halt = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                for m in self._consumer.consume(256, timeout=0.1):
                    if m.error():
                        continue
                    try:
                        if m.topic() == self.names.detections:
                            det = Detection.parse(m.value())
                            with self.lock:
                                self.detections.append(det)
                        else:
                            self.decisions.append((time.time(), OffloadDecision.parse(m.value())))
                    except RecordError as exc:  # not ours to fix here; say so and go on
                        print(f"  skipped a malformed record on {m.topic()}: {exc}")
        finally:
            self._consumer.close()

    def seen(self) -> set[tuple[str, int]]:
        with self.lock:
            return {(d.camera, d.seq) for d in self.detections}

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def video_jpegs(video: Path, quality: int, n: int = VIDEO_FRAMES) -> list[bytes]:
    import cv2
    from autosteer.processors.decode import encode_jpeg

    cap = cv2.VideoCapture(str(video))
    out = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        out.append(encode_jpeg(img, quality))
    cap.release()
    return out


def measure_real_profile(s: Settings, jpegs: list[bytes], n: int = 8) -> tuple[float, float]:
    """Per-frame ms (JPEG decode + inference, batch 1, 1 thread) of the edge and cloud
    models now, on this machine: the profile every policy is given."""
    from autosteer.processors.decode import decode_jpeg
    from autosteer.processors.detector import load_detector

    out = []
    for name in (s.edge_model, s.cloud_model):
        det = load_detector(s.model_dir, name, providers=s.providers, intra_op_threads=1,
                            score_threshold=s.score_threshold)
        det.detect([decode_jpeg(jpegs[0])])
        ms = []
        for j in jpegs[1:n + 1]:
            t0 = time.perf_counter()
            det.detect([decode_jpeg(j)])
            ms.append((time.perf_counter() - t0) * 1000)
        out.append(statistics.median(ms))
    return out[0], out[1]


def produce_on_schedule(producer: Any, topic: str, frames: list[Frame],
                        jpegs: list[bytes]) -> float:
    """Produce ``frames`` in real time (capture time = scheduled time) and flush;
    returns the wall time of t=0."""
    t0 = time.time() + 0.2
    for f in frames:
        wait = t0 + f.t - time.time()
        if wait > 0:
            time.sleep(wait)
        rec = FrameRecord(camera=f.camera, seq=f.seq, ts_ms=int((t0 + f.t) * 1000),
                          jpeg=jpegs[jpeg_index(f.camera, f.seq, len(jpegs))])
        producer.produce(topic, key=f.camera.encode(), value=rec.dumps())
        producer.poll(0)
    producer.flush(30)
    return t0


def replay(s: Settings, frames: list[Frame], jpegs: list[bytes], collector: Collector,
           drain_s: float) -> tuple[float, float]:
    """Produce ``frames`` in real time (capture time = scheduled time), then wait up to
    ``drain_s`` for their results. Returns (wall time of t=0, seconds waited in all)."""
    from confluent_kafka import Producer

    t0 = produce_on_schedule(Producer(s.producer_config()), TopicNames(s.topic_prefix).frames,
                             frames, jpegs)
    want = {(f.camera, f.seq) for f in frames}
    deadline = time.time() + drain_s
    while time.time() < deadline and not want <= collector.seen():
        time.sleep(0.1)
    return t0, time.time() - t0


def wait_ready(s: Settings, collector: Collector, jpeg: bytes, timeout_s: float = 90) -> None:
    """Feed a probe camera one frame every 0.5 s until its first result comes back (the
    worker's agents hold their partitions and the models are loaded)."""
    from confluent_kafka import Producer

    producer = Producer(s.producer_config())
    topic = TopicNames(s.topic_prefix).frames
    deadline = time.monotonic() + timeout_s
    seq = 0
    while not any(c == "probe" for c, _ in collector.seen()):
        if time.monotonic() > deadline:
            raise SystemExit(f"no result from the worker within {timeout_s:.0f}s")
        producer.produce(topic, key=b"probe", value=FrameRecord(
            camera="probe", seq=seq, ts_ms=int(time.time() * 1000), jpeg=jpeg).dumps())
        producer.flush(5)
        seq += 1
        time.sleep(0.5)


def run_real(base: Settings, policy: str, frames: list[Frame], jpegs: list[bytes],
             workdir: Path, drain_s: float) -> RealRun:
    """Fresh workers for ``policy`` (fresh topics too), the replay, then stop them. The
    router, the edge detector and the cloud detector are three workers, as on three boxes:
    one Faust consumer per role, so a full edge buffer does not stall the cloud's
    consumer (and its ``link_ms``) or the router's feedback."""
    s = base.model_copy(update={
        "topic_prefix": f"offl{uuid.uuid4().hex[:6]}", "offload_policy": policy,
        "state_dir": workdir,
    })
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    workers = [WorkerProcess(s.model_copy(update={
        "roles": role, "web_port": free_port(), "node": f"bench-{policy}-{role}"}),
        workdir / f"worker-{policy}-{role}.log", loglevel="warning")
        for role in ("edge", "cloud", "router")]
    collector: Collector | None = None
    try:
        from autosteer.topics.admin import ensure_topics

        ensure_topics(s)  # the fresh topics, then the three workers at once
        with ThreadPoolExecutor(len(workers)) as pool:
            list(pool.map(lambda w: w.start(create_topics=False), workers))
        # subscribe once the topics exist: a consumer subscribed to a missing topic may not
        # look for it again for minutes (seen here from the second worker on a broker on)
        collector = Collector(s)
        collector.start()
        wait_ready(s, collector, jpegs[0])
        startup = time.monotonic() - started
        t0, ended = replay(s, frames, jpegs, collector, drain_s)
    finally:
        with ThreadPoolExecutor(len(workers)) as pool:  # stopping takes seconds each
            list(pool.map(lambda w: w.stop(timeout_s=20), workers))
        if collector is not None:
            collector.stop()
    done = detected_results(collector.detections, t0)
    decisions = [(rec.ts_ms / 1000 - t0, rec) for _, rec in collector.decisions]
    return RealRun(policy, frames, done, decisions, ended, startup,
                   (load_before, os.getloadavg()[0]), collector.detections)


def reference_boxes(s: Settings, jpegs: list[bytes]) -> list[list]:
    """The cloud (FP32) model's boxes on each replayed JPEG as captured: what a frame's
    result is scored against, whichever tier and quality level served it."""
    from autosteer.processors.decode import decode_jpeg
    from autosteer.processors.detector import load_detector

    det = load_detector(s.model_dir, s.cloud_model, providers=s.providers, intra_op_threads=1,
                        score_threshold=s.score_threshold)
    return [det.detect([decode_jpeg(j)])[0] for j in jpegs]


def detected_results(detections: list[Detection], t0: float
                     ) -> dict[tuple[str, int], tuple[str, float, float]]:
    """``(camera, seq) -> (tier, total_ms, done_t)`` of the frames really detected: a
    result with ``status`` other than ``"ok"`` (shed, reused) is no served frame."""
    return {(d.camera, d.seq): (d.tier, d.latency.total_ms, d.ts_ms / 1000 - t0
                                + d.latency.total_ms / 1000)
            for d in detections if d.camera != "probe" and d.status == "ok"}


def jpeg_index(camera: str, seq: int, n: int) -> int:
    """Which of the ``n`` replayed JPEGs frame ``(camera, seq)`` carries."""
    return (zlib.crc32(camera.encode()) + seq) % n


def real_accuracy(run: RealRun, ref: list[list], keys: set[tuple[str, int]]) -> float:
    """Mean agreement (retrain.agreement) of each result in ``keys`` with the cloud model's
    boxes on the frame as captured."""
    from autosteer.retrain.agreement import agreement

    scores = [agreement(d.boxes, ref[jpeg_index(d.camera, d.seq, len(ref))])
              for d in run.detections if (d.camera, d.seq) in keys and d.status == "ok"]
    return statistics.mean(scores) if scores else math.nan


def summarize_real(run: RealRun, warmup_s: float, duration_s: float,
                   ref: list[list] | None = None) -> dict:
    """Latency (unfinished frames count with the time they waited), throughput in the
    scored window, cloud share, accuracy (measured against ``ref`` when given: the cloud
    model on the frames as captured; else the tier proxy); as in :func:`summarize`."""
    scored = [f for f in run.frames if warmup_s <= f.t <= duration_s]
    lat, tiers = [], []
    for f in scored:
        tier, total_ms, _ = run.done.get((f.camera, f.seq), ("", math.nan, math.nan))
        lat.append(total_ms if tier else (run.ended_t - f.t) * 1000)
        tiers.append(tier)
    lat_a = np.array(lat)
    served = sum(1 for f in scored if (f.camera, f.seq) in run.done
                 and run.done[(f.camera, f.seq)][2] <= duration_s)
    n_cloud, n_edge = tiers.count("cloud"), tiers.count("edge")
    not_detected: dict[str, set[tuple[str, int]]] = {}  # status -> keys (shed, reused)
    for d in run.detections:
        if d.status != "ok" and (d.camera, d.seq) not in run.done:
            not_detected.setdefault(d.status, set()).add((d.camera, d.seq))
    keys = {(f.camera, f.seq) for f in scored}
    n_shed = len(not_detected.get("shed", set()) & keys)
    n_reused = len(not_detected.get("reused", set()) & keys)
    return {
        "p50": float(np.percentile(lat_a, 50)), "p95": float(np.percentile(lat_a, 95)),
        "p99": float(np.percentile(lat_a, 99)), "mean": float(lat_a.mean()),
        "fps": served / (duration_s - warmup_s),
        "offered_fps": len(scored) / (duration_s - warmup_s),
        "unfinished": len(scored) - n_cloud - n_edge - n_shed - n_reused,
        "shed": n_shed, "reused": n_reused,
        "cloud_share": n_cloud / max(n_cloud + n_edge, 1),
        "accuracy": (n_cloud * ACCURACY["cloud"] + n_edge * ACCURACY["edge"])
        / max(n_cloud + n_edge, 1) if ref is None
        else real_accuracy(run, ref, {(f.camera, f.seq) for f in scored}),
        "startup_s": run.startup_s, "load1_before": run.load1[0], "load1_after": run.load1[1],
    }


def real_model_mape(run: RealRun, warmup_s: float, duration_s: float) -> tuple[float, list]:
    """Each decision's predicted mean vs the next decision's measured mean (the frames
    seen back in between), over decisions made after the warm-up and before the end."""
    recs = sorted(run.decisions, key=lambda d: d[0])
    pairs = [(t, a.predicted_mean_ms, b.measured_mean_ms)
             for (t, a), (t2, b) in zip(recs, recs[1:], strict=False)
             if warmup_s <= t and t2 <= duration_s + 1.0
             and a.predicted_mean_ms is not None and b.measured_mean_ms]
    if not pairs:
        return math.nan, []
    return statistics.mean(abs(p - m) / m for _, p, m in pairs), pairs


def _print_real(name: str, r: dict) -> None:
    print(f"  {name:13} p50 {r['p50']:7.1f} p95 {r['p95']:7.1f} p99 {r['p99']:7.1f} "
          f"mean {r['mean']:7.1f} ms; {r['fps']:5.1f}/{r['offered_fps']:.1f} fps; "
          f"cloud {r['cloud_share']:.2f}; acc {r['accuracy']:.3f}; "
          f"unfinished {r['unfinished']}; shed {r.get('shed', 0)}; startup {r['startup_s']:.0f} s; machine load "
          f"{r['load1_before']:.1f} -> {r['load1_after']:.1f}", flush=True)


def _controller_check(run: RealRun, duration_s: float) -> tuple[float, list]:
    mape, pairs = real_model_mape(run, REAL_WARMUP_S, duration_s)
    scored = [d for t, d in run.decisions if t >= REAL_WARMUP_S]
    reasons = Counter(d.reason.split(":")[0] for d in scored)
    ratio = statistics.mean(d.offload_ratio for d in scored) if scored else math.nan
    apes = sorted(abs(p - m) / m for _, p, m in pairs)
    median = apes[len(apes) // 2] if apes else math.nan
    print(f"  controller: {len(pairs)} decisions paired, model MAPE {mape:.3f} (median "
          f"{median:.3f}); offload ratio mean {ratio:.2f}; reasons {dict(reasons)}", flush=True)
    return mape, pairs


def real_compare(names: tuple[str, ...], duration_s: float, check_s: float, seed: int,
                 drain_s: float) -> dict:
    """Every policy in ``names`` on the same replayed busy load, the same link and the same
    profile (measured here and now); then the controller alone on the normal load, for the
    model check."""
    from autosteer.infra.broker import LocalBroker
    from autosteer.infra.sample import ensure_sample_video
    from autosteer.processors.prepare import prepare_models

    base = Settings()
    video = ensure_sample_video(base.sample_video)
    prepare_models(base.model_dir, video)
    jpegs = video_jpegs(video, base.jpeg_quality)
    edge_ms, cloud_ms = measure_real_profile(base, jpegs)
    ref = reference_boxes(base, jpegs)
    levels = ",".join(f"{n}:{sc:g}:{q}:{r:g}:{a:g}:{ms:g}"
                      for n, sc, q, r, a, ms in LEVELS_MEASURED)  # encoding runs here too
    busy = trace("busy", duration_s, seed, loads=REAL_LOADS)
    normal = trace("normal", check_s, seed, loads=REAL_LOADS)
    mbps, delay_ms, jitter_ms = REAL_LINK
    kb = statistics.mean(map(len, jpegs)) / 1000
    print(f"real pipeline: edge {edge_ms:.1f} ms/frame, cloud {cloud_ms:.1f} ms/frame "
          f"(decode + infer, 1 thread, measured now); JPEG {kb:.0f} KB; link {mbps:g} Mbit/s, "
          f"{delay_ms:g} ms one way; busy: {len(busy)} frames in {duration_s:.0f} s; first "
          f"{REAL_WARMUP_S:.0f} s not scored", flush=True)
    rows: dict[str, dict] = {}
    out: dict = {"edge_ms": edge_ms, "cloud_ms": cloud_ms, "mape_busy": math.nan}
    with tempfile.TemporaryDirectory() as tmp:
        broker = LocalBroker(free_port(), Path(tmp))
        broker.start()
        try:
            prof = base.model_copy(update={
                "kafka_bootstrap": broker.bootstrap, "edge_frame_ms": round(edge_ms, 2),
                "cloud_frame_ms": round(cloud_ms, 2), "link_mbps": mbps,
                "link_delay_ms": delay_ms, "link_jitter_ms": jitter_ms,
                "max_frame_age_ms": 0, "intra_op_threads": 1, "offload_levels": levels,
                "accuracy_floor": ACCURACY_FLOOR})
            for name in names:
                run = run_real(prof, name, busy, jpegs, Path(tmp), drain_s)
                rows[name] = summarize_real(run, REAL_WARMUP_S, duration_s, ref)
                _print_real(name, rows[name])
                if name == "controller":
                    out["mape_busy"] = _controller_check(run, duration_s)[0]
            print(f"model check: the controller alone, normal load ({len(normal)} frames in "
                  f"{check_s:.0f} s)", flush=True)
            run = run_real(prof, "controller", normal, jpegs, Path(tmp), drain_s)
            out["normal"] = summarize_real(run, REAL_WARMUP_S, check_s, ref)
            _print_real("controller", out["normal"])
            out["mape"], out["pairs"] = _controller_check(run, check_s)
        finally:
            broker.stop()
    baselines = {n: r for n, r in rows.items() if n != "controller"}
    out["best"] = min(baselines, key=lambda n: baselines[n]["p95"]) if baselines else None
    out["ratio"] = (rows["controller"]["p95"] / baselines[out["best"]]["p95"]
                    if out["best"] and "controller" in rows else math.nan)
    out["rows"] = rows
    return out


# -- main -----------------------------------------------------------------------------------
Table = dict[tuple[str, str, str], list[dict]]  # (load, link, policy) -> one summary per seed


REFERENCE = "ref:fastest-first"  # not a baseline: the busy cells' headroom, see compare()


def compare(prof: SystemProfile, duration: float, seeds: list[int],
            shed_budget: float = SHED_BUDGET) -> Table:
    """Every policy on every load x link x seed, same trace per cell. Busy cells also run
    a reference that is not a baseline: every frame to the tier and quality level
    predicted to finish it first (FastVA's clocks with no deadline, no accuracy floor),
    what routing alone can do about a backlog drained through FIFO queues."""
    table: Table = {}
    for load in LOADS:
        for link_name, link in LINKS.items():
            for seed in seeds:
                frames = trace(load, duration, seed)
                makers = dict(policies(prof, shed_budget))
                if load == "busy":
                    makers[REFERENCE] = lambda clock: FastVAStyle(prof, deadline_ms=0.0,
                                                                  clock=clock)
                for name, make in makers.items():
                    run = Sim(prof, frames, make, link, seed, duration).run()
                    table.setdefault((load, link_name, name), []).append(summarize(run))
    return table


def best_baselines(table: Table, seeds: list[int]) -> dict[tuple[str, str, int], str]:
    """The baseline with the lowest p95 per (load, link, seed index); neither ours nor
    the reference counts."""
    names = sorted({k[2] for k in table} - {"ours", REFERENCE})
    return {(load, link_name, i): min(names, key=lambda n: table[(load, link_name, n)][i]["p95"])
            for load, link_name in {(k[0], k[1]) for k in table} for i in range(len(seeds))}


def p95_ratios(table: Table, seeds: list[int]) -> tuple[dict[str, float], dict]:
    """Ours / best baseline p95 per cell and seed; geometric mean per load."""
    ratios: dict[str, list[float]] = {}
    cells = {}
    for (load, link_name, i), best in best_baselines(table, seeds).items():
        r = table[(load, link_name, "ours")][i]["p95"] / table[(load, link_name, best)][i]["p95"]
        ratios.setdefault(load, []).append(r)
        cells[f"{load}/{link_name}/seed{seeds[i]}"] = (round(r, 3), best)
    return {load: geomean(v) for load, v in ratios.items()}, cells


def reference_ratio(table: Table, seeds: list[int]) -> float:
    """The fastest-first reference's p95 / the best baseline's, busy cells, geometric mean."""
    return geomean([table[(load, link_name, REFERENCE)][i]["p95"]
                    / table[(load, link_name, best)][i]["p95"]
                    for (load, link_name, i), best in best_baselines(table, seeds).items()
                    if load == "busy"])


def _by_load(table: Table) -> dict[tuple[str, str, str], list[dict]]:
    """Every link's and seed's summaries of one (load, policy), keyed (load, "", policy)."""
    out: dict[tuple[str, str, str], list[dict]] = {}
    for (load, _, name), rows in table.items():
        out.setdefault((load, "", name), []).extend(rows)
    return out


def print_table(table: Table) -> None:
    print(f"{'load':7} {'link':10} {'policy':13} {'p50':>7} {'p95':>7} {'p99':>7} {'fps':>6} "
          f"{'cloud':>6} {'acc':>6} {'reduced':>7} {'dec_us':>7} {'dec_p50':>7} "
          f"{'SLO' + str(int(SLO_MS)):>6} {'SLO' + str(int(SLO_WIDE_MS)):>6} {'shed':>5}")
    for (load, link_name, name), rows in table.items():
        a = {k: statistics.mean(r[k] for r in rows) for k in rows[0]}
        print(f"{load:7} {link_name:10} {name:13} {a['p50']:7.1f} {a['p95']:7.1f} "
              f"{a['p99']:7.1f} {a['fps']:6.1f} {a['cloud_share']:6.2f} {a['accuracy']:6.3f} "
              f"{a['reduced_share']:7.2f} {a['decide_us']:7.1f} {a['decide_p50_us']:7.1f} "
              f"{a['slo']:6.3f} {a['slo_wide']:6.3f} {a['shed_share']:5.3f}")


def reference_cells(table: Table) -> dict[str, dict]:
    """Busy cells: ours vs the fastest-first reference, p95 ratio and SLO attainment
    (means over seeds)."""
    out = {}
    for (load, link_name, name), rows in table.items():
        if load != "busy" or name != "ours":
            continue
        ref = table[(load, link_name, REFERENCE)]
        out[link_name] = {
            "p95_ratio": round(statistics.mean(a["p95"] / b["p95"]
                                               for a, b in zip(rows, ref, strict=True)), 3),
            "slo": round(statistics.mean(r["slo"] for r in rows), 3),
            "slo_ref": round(statistics.mean(r["slo"] for r in ref), 3),
            "shed": round(statistics.mean(r["shed_share"] for r in rows), 3)}
    return out


def next_interval_mape(prof: SystemProfile, load: str, duration: float, seed: int,
                       shed_budget: float = SHED_BUDGET) -> dict[str, float]:
    """Ours on ``load`` over both links: each control step's predicted mean against the
    next step's measured one (the frames seen back in between), as on the real pipeline.
    ``transient``: the prediction as recorded (``predicted_mean_ms``, the known backlog
    drained first); ``steady``: the steady-state model alone (``steady_mean_ms``; the
    recorded prediction where a controller has no such field)."""
    errs: dict[str, list[float]] = {"transient": [], "steady": []}
    for link in LINKS.values():
        run = Sim(prof, trace(load, duration, seed), policies(prof, shed_budget)["ours"],
                  link, seed, duration).run()
        recs = [d for t, d in run.decisions if d is not None and WARMUP_S <= t <= duration]
        for a, b in zip(recs, recs[1:], strict=False):
            m = b.measured_mean_ms
            if not (math.isfinite(m) and m > 0):
                continue
            for key, v in (("transient", a.predicted_mean_ms),
                           ("steady", getattr(a, "steady_mean_ms", a.predicted_mean_ms))):
                if math.isfinite(v):
                    errs[key].append(abs(v - m) / m)
    return {k: round(statistics.mean(v), 3) for k, v in errs.items() if v}


def online_mape(prof: SystemProfile, duration: float, seed: int,
                shed_budget: float = SHED_BUDGET) -> float:
    """Our own steady-state predicted mean (averaged over control steps) vs simulated,
    normal load."""
    errs = []
    for link_name, link in LINKS.items():
        run = Sim(prof, trace("normal", duration, seed), policies(prof, shed_budget)["ours"],
                  link, seed, duration).run()
        pred = statistics.mean(getattr(d, "steady_mean_ms", d.predicted_mean_ms)
                               for t, d in run.decisions
                               if t >= WARMUP_S and not math.isnan(d.predicted_mean_ms))
        sim_mean = 1000 * float(run.latencies.mean())
        errs.append(abs(pred - sim_mean) / sim_mean)
        print(f"online model check {link_name}: our predicted mean {pred:.1f} ms, "
              f"simulated {sim_mean:.1f} ms")
    return statistics.mean(errs)


def main() -> None:
    # a killed run still stops the broker and worker it started (finally blocks run)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="30 s sim runs, 1 seed; 25 s real runs of 3 policies (under 3 min)")
    ap.add_argument("--measure", action="store_true", help="re-measure service-time profiles")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-real", action="store_true", help="skip the real-pipeline runs")
    ap.add_argument("--shed-budget", type=float, default=None,
                    help="the share of frames every policy may shed when hopeless under "
                         f"the SLO (0: none sheds; default {SHED_BUDGET}, on the testbed "
                         "offload_testbed.SHED_BUDGET)")
    ap.add_argument("--real-policies", default=None,
                    help="comma list of policies for the real runs (default: "
                         f"{','.join(REAL_QUICK)} with --quick, else all)")
    ap.add_argument("--testbed", action="store_true",
                    help="only the comparison on the testbed's separate hosts (root; "
                         "bench/offload_testbed.py)")
    ap.add_argument("--reps", type=int, default=3, help="with --testbed: repetitions")
    ap.add_argument("--broker-host", choices=("cloud", "edge"), default="cloud",
                    help="with --testbed: the host tansu runs on (the issue's: cloud)")
    ap.add_argument("--steps", action="store_true",
                    help="with --testbed: the two step tests (RTT x5, edge CPU quota /3) "
                         "instead of the comparison")
    args = ap.parse_args()
    if args.testbed and args.steps:
        import offload_testbed

        return offload_testbed.main_steps(args.quick, args.seed, (
            offload_testbed.SHED_BUDGET if args.shed_budget is None else args.shed_budget))
    if args.testbed:
        import offload_testbed

        return offload_testbed.main(args.quick, args.seed, tuple(
            args.real_policies.split(",")) if args.real_policies else None, args.reps,
            shed_budget=(offload_testbed.SHED_BUDGET if args.shed_budget is None
                         else args.shed_budget), broker_host=args.broker_host)
    duration = 30.0 if args.quick else 120.0
    seeds = [args.seed] if args.quick else [args.seed + i for i in range(3)]
    if args.measure:
        edge_ms, cloud_ms = measure_profiles()
        print(f"measured: INT8 {edge_ms:.1f} ms, FP32 batches {cloud_ms} ms")
        grid = measure_levels()
        for row in grid:
            print(f"measured level {row[0]}: bytes x{row[3]}, accuracy {row[4]}, encode "
                  f"{row[5]} ms")
        chosen = {name for name, *_ in LEVELS_MEASURED}
        prof = system_profile(edge_ms, cloud_ms, tuple(r for r in grid if r[0] in chosen))
    else:
        prof = system_profile()
    print(f"edge {prof.edge.batch_s[0] * 1000:.1f} ms/frame; cloud {CLOUD_SERVERS} servers, "
          f"batch ms {[round(b * 1000, 1) for b in prof.cloud.batch_s]}; frames "
          f"{FRAME_BYTES // 1000} KB; {duration:.0f} s runs x {len(seeds)} seed(s)")
    t_start = time.perf_counter()
    budget = SHED_BUDGET if args.shed_budget is None else args.shed_budget
    table = compare(prof, duration, seeds, budget)
    print_table(table)
    ratios, cells = p95_ratios(table, seeds)
    for load in LOADS:
        print(f"p95 ours / best baseline, {load}: {ratios[load]:.3f}  " + ", ".join(
            f"{k.split('/', 1)[1]}: {v[0]} vs {v[1]}" for k, v in sorted(cells.items())
            if k.startswith(load + "/")))

    reference = reference_ratio(table, seeds)
    print(f"p95 fastest-first reference / best baseline, busy: {reference:.3f} (accuracy "
          f"{statistics.mean(r['accuracy'] for k, v in table.items() if k[2] == REFERENCE for r in v):.3f})")

    mape, rows = model_mape(prof, duration, seeds[0])
    for link_name, x, p, s, pp, sp in rows:
        print(f"model check {link_name:10} offload {x:.1f}: mean predicted {p:6.1f} ms, "
              f"simulated {s:6.1f} ms; p95 predicted {pp:6.1f}, simulated {sp:6.1f}")
    print(f"sim model MAPE (mean latency, true inputs): {mape:.3f}")
    mape_online = online_mape(prof, duration, seeds[0], budget)
    mape_next = {load: next_interval_mape(prof, load, duration, seeds[0], budget)
                 for load in ("normal", "busy")}
    for load, m in mape_next.items():
        print(f"next-interval model MAPE, {load}: {m}")
    ref_cells = reference_cells(table)
    for link_name, c in ref_cells.items():
        print(f"busy {link_name}: p95 ours / fastest-first {c['p95_ratio']:.3f}; SLO "
              f"{SLO_MS:g} ms ours {c['slo']:.3f} vs {c['slo_ref']:.3f}; ours shed {c['shed']:.3f}")
    step_s = max(duration * 1.5, 60.0)  # the split settles ~35 s in: step after that
    tests = [step_test(prof, "delay", 5.0, step_s, seeds[0], budget),
             step_test(prof, "edge", 3.0, step_s, seeds[0], budget)]
    for st in tests:
        print(f"step {st['what']} x{st['factor']:g} at {st['t_step']:.0f}s: ratio settles at "
              f"{st['final_ratio']:.2f} within {st['settle_intervals']} control intervals; "
              f"SLO attainment {st['slo_before']:.3f} before, {st['slo_final']:.3f} after, "
              f"back within 0.05 after {st['slo_settle_s']} s")
    panels = step_panels(tests)
    svg, png = RESULTS / "offload_step.svg", RESULTS / "offload_step.png"
    write_svg(svg, panels)
    write_png(png, panels)
    write_png(DOCS / "offload_step.png", panels)  # the figure docs/offload.md shows
    print(f"wrote {svg}, {png} and {DOCS / 'offload_step.png'}; took {time.perf_counter() - t_start:.1f} s")

    real = None
    if not args.no_real:
        names = (tuple(args.real_policies.split(",")) if args.real_policies
                 else REAL_QUICK if args.quick else REAL_POLICIES)
        real = real_compare(names, 25.0 if args.quick else 60.0, 20.0 if args.quick else 60.0,
                            seeds[0], drain_s=3.0 if args.quick else 15.0)
        if real["best"]:
            print(f"real p95 controller / best baseline ({real['best']}), busy: "
                  f"{real['ratio']:.3f}")
        print(f"real model MAPE (mean latency, each decision vs the next interval): normal "
              f"{real['mape']:.3f}, busy {real['mape_busy']:.3f}")
    print(f"took {time.perf_counter() - t_start:.1f} s in all")

    def num(v: float) -> float | None:
        return None if v is None or not math.isfinite(v) else round(v, 3)

    ours = [r for k, v in table.items() if k[2] == "ours" for r in v]
    print(json.dumps({
        "p95_ratio_empty": round(ratios["empty"], 3),
        "p95_ratio_normal": round(ratios["normal"], 3),
        "p95_ratio_busy": round(ratios["busy"], 3),
        "p95_ratio_per_cell": {k: v[0] for k, v in sorted(cells.items())},
        "p95_ratio_busy_fastest_first": round(reference, 3),
        "p95_ms": {f"{load}/{name}": round(statistics.mean(r["p95"] for r in rows), 1)
                   for (load, _, name), rows in _by_load(table).items()},
        "accuracy": {f"{load}/{name}": round(statistics.mean(r["accuracy"] for r in rows), 3)
                     for (load, _, name), rows in _by_load(table).items()},
        "accuracy_floor": ACCURACY_FLOOR,
        "sim_model_mape": round(mape, 3),
        "sim_model_mape_online": round(mape_online, 3),
        "sim_model_mape_next": mape_next,
        "slo_ms": SLO_MS, "shed_budget": budget,
        "slo": {f"{load}/{name}": round(statistics.mean(r["slo"] for r in rows), 3)
                for (load, _, name), rows in _by_load(table).items()},
        "busy_vs_fastest_first": ref_cells,
        "step_settle_intervals": {f"{st['what']}x{st['factor']:g}": st["settle_intervals"]
                                  for st in tests},
        "step_slo_settle_s": {f"{st['what']}x{st['factor']:g}": st["slo_settle_s"]
                              for st in tests},
        "ours_decide_us_mean": round(statistics.mean(r["decide_us"] for r in ours), 1),
        "ours_decide_us_p50": round(statistics.mean(r["decide_p50_us"] for r in ours), 1),
        "real_p95_ratio": num(real["ratio"]) if real else None,
        "model_mape": num(real["mape"]) if real else None,
        "model_mape_busy": num(real["mape_busy"]) if real else None,
        "real_best_baseline": real["best"] if real else None,
        "real_busy": {n: {k: round(v, 3) for k, v in r.items()}
                      for n, r in real["rows"].items()} if real else None,
        "real_normal_controller": {k: round(v, 3) for k, v in real["normal"].items()}
        if real else None,
        "real_profile_ms": {"edge": round(real["edge_ms"], 1), "cloud": round(real["cloud_ms"], 1)}
        if real else None,
        "quick": args.quick, "duration_s": duration, "seeds": seeds,
    }))


if __name__ == "__main__":
    sys.exit(main())
