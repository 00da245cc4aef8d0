"""Simulated telemetry with the pipeline's own records, for benchmarks and tests.

Frames are drawn per camera and routed to the camera's edge node or (a share) to a
cloud node; each node aggregates them with a real
:class:`~autosteer.telemetry.window.WindowAggregator`, samples per-frame rows with a
real :class:`~autosteer.telemetry.sampling.Sampler`, and sends a heartbeat every 5 s,
so :func:`write` stores exactly the rows the workers would (through the real
:class:`~autosteer.telemetry.sink.Sink`).

Normal life is not flat: a shared load wave moves CPU and latency, the number of people
in each scene drifts slowly, and now and then a node has a one-window GC pause or a CPU
blip (single spikes that must not page). :class:`~autosteer.rootcause.faults.Fault` s
change it on purpose.

>>> tel = simulate(Topology(cameras=2, edge_nodes=("edge-1",), cloud_nodes=("cloud-1",)),
...                [], start_ms=1_763_000_000_000, seconds=60, seed=1)
>>> len(tel.windows) > 0, sorted({w.node for w in tel.windows}), len(tel.nodes)
(True, ['cloud-1', 'edge-1'], 24)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from autosteer.rootcause.faults import Fault, Topology
from autosteer.telemetry.sampling import Sampler
from autosteer.telemetry.schema import FRAMES, NODES, WINDOWS
from autosteer.telemetry.sink import Position, Sink
from autosteer.telemetry.store import TelemetryStore
from autosteer.telemetry.window import Sample, WindowAggregator
from autosteer.topics.records import NodeRecord, TelemetryRecord, WindowRecord

WINDOW_S = 10
HEARTBEAT_S = 5
MB = 2**20


@dataclass
class Telemetry:
    """What the workers would publish: windows, sampled frame rows, heartbeats."""

    windows: list[WindowRecord] = field(default_factory=list)
    frames: list[TelemetryRecord] = field(default_factory=list)
    nodes: list[NodeRecord] = field(default_factory=list)


@dataclass
class _Effects:
    """What the active faults do during one window."""

    cpu_add: dict[str, float] = field(default_factory=dict)
    infer_mul: dict[str, float] = field(default_factory=dict)
    infer_add: dict[str, float] = field(default_factory=dict)
    leak_bytes: dict[str, float] = field(default_factory=dict)
    link_ms: float = 0.0
    fps_mul: dict[str, float] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)  # camera -> severity
    version: dict[str, tuple[str, float]] = field(default_factory=dict)  # node -> (v, severity)


def _effects(faults: Sequence[Fault], topo: Topology, t_ms: int) -> _Effects:
    e = _Effects()
    for f in faults:
        if not f.active(t_ms):
            continue
        s = f.severity
        if f.kind == "node_slowdown" and f.variant == "cpu_hog":
            e.cpu_add[f.target] = 25 + 35 * s
            e.infer_mul[f.target] = 1 + 0.8 * s
        elif f.kind == "node_slowdown":
            e.infer_add[f.target] = 0.3 + 0.9 * s  # x the node's normal model time
        elif f.kind == "link_degradation":
            e.link_ms = 20 + 100 * s
        elif f.kind == "camera_failure":
            e.fps_mul[f.target] = 0.0 if f.variant == "kill" else 0.5 - 0.45 * s
        elif f.kind == "lighting_change":
            e.quality[f.target] = s
        elif f.kind == "memory_leak":
            e.leak_bytes[f.target] = (4 + 16 * s) * MB * (t_ms - f.start_ms) / 60_000
        elif f.kind == "bad_deploy":
            tier = f.target if f.target in ("edge", "cloud") else topo.tier_of(f.target)
            nodes = topo.edge_nodes if tier == "edge" else topo.cloud_nodes
            for n in nodes if f.target == tier else (f.target,):
                e.version[n] = (f.version, s)
    return e


class _Scene:
    """Per-camera and per-node constants drawn once per simulation."""

    def __init__(self, topo: Topology, rng: np.random.Generator) -> None:
        n = topo.cameras
        self.boxes = rng.uniform(0.8, 4.0, n)
        self.conf = rng.uniform(0.62, 0.8, n)
        self.period_s = rng.uniform(600, 2400, n)
        self.phase = rng.uniform(0, 2 * math.pi, n)
        self.cpu = {node: rng.uniform(35, 55) if topo.tier_of(node) == "edge"
                    else rng.uniform(20, 40) for node in topo.nodes}
        self.rss = {node: rng.uniform(500, 900) * MB for node in topo.nodes}
        self.infer = {node: (45.0 if topo.tier_of(node) == "edge" else 12.0)
                      * rng.uniform(0.85, 1.15) for node in topo.nodes}


def simulate(topology: Topology, faults: Sequence[Fault], *, start_ms: int, seconds: int,
             seed: int, sample_rate: float = 0.2) -> Telemetry:
    """Telemetry of ``seconds`` from ``start_ms`` (aligned down to a window) with ``faults``."""
    rng = np.random.default_rng(seed)
    topo = topology
    scene = _Scene(topo, rng)
    aggs = {node: WindowAggregator(node, window_s=WINDOW_S) for node in topo.nodes}
    samplers = {node: Sampler(sample_rate, seed=seed * 31 + i) for i, node in enumerate(topo.nodes)}
    counters = {node: {"edge": 0, "cloud": 0} for node in topo.nodes}
    seqs = [0] * topo.cameras
    out = Telemetry()
    load = 0.0
    start = start_ms - start_ms % (WINDOW_S * 1000)
    for t in range(start, start + seconds * 1000, WINDOW_S * 1000):
        eff = _effects(faults, topo, t)
        load = 0.9 * load + rng.normal(0, 0.04)
        level = 1 + max(-0.3, min(0.5, load))
        pause = {node: rng.random() < 0.01 for node in topo.nodes}  # one-window GC pauses
        for cam in range(topo.cameras):
            _camera_window(topo, scene, eff, rng, cam, t, level, pause, aggs, samplers,
                           counters, seqs, out)
        for node in topo.nodes:
            for hb in range(WINDOW_S // HEARTBEAT_S):
                out.nodes.append(_heartbeat(topo, scene, eff, rng, node, level, counters,
                                            t + hb * HEARTBEAT_S * 1000 + 2500))
            out.windows += aggs[node].flush(t + 2 * WINDOW_S * 1000)
    for node in topo.nodes:
        out.windows += aggs[node].flush(0, force=True)
    out.windows.sort(key=lambda w: (w.ts_ms, w.node, w.camera, w.tier))
    return out


def _camera_window(topo: Topology, scene: _Scene, eff: _Effects, rng: np.random.Generator,
                   cam: int, t: int, level: float, pause: dict[str, bool],
                   aggs: dict[str, WindowAggregator], samplers: dict[str, Sampler],
                   counters: dict[str, dict[str, int]], seqs: list[int], out: Telemetry) -> None:
    camera = f"cam{cam}"
    n = int(rng.binomial(round(topo.fps * WINDOW_S), 0.98 * eff.fps_mul.get(camera, 1.0)))
    if n == 0:
        return
    when = np.sort(rng.uniform(0, WINDOW_S * 1000 - 400, n)).astype(int) + t
    cloud = rng.random(n) < topo.offload
    wave = 1 + 0.35 * math.sin(2 * math.pi * (t / 1000) / scene.period_s[cam] + scene.phase[cam])
    light = eff.quality.get(camera, 0.0)
    ingest = rng.lognormal(math.log(5), 0.3, n)
    route = rng.lognormal(math.log(2), 0.4, n)
    decode = rng.lognormal(math.log(2.5), 0.1, n)
    noise = rng.lognormal(0, 0.12, n)
    wait = rng.exponential(1.0, n)
    nodes = [topo.cloud_of(cam) if c else topo.edge_of(cam) for c in cloud]
    deploys = np.array([eff.version[node][1] if node in eff.version else 0.0 for node in nodes])
    base = np.array([scene.infer[node] for node in nodes])
    slow = np.array([eff.infer_mul.get(node, 1.0) for node in nodes])
    paused = np.array([2.0 if pause[node] else 1.0 for node in nodes])
    delay = np.array([eff.infer_add.get(node, 0.0) for node in nodes])
    infer = base * noise * math.sqrt(level) * slow * paused * (1 + 0.2 * deploys) + base * delay
    backlog = np.maximum(0.0, infer - base * 1.3)
    # router -> detector's worker: a Kafka hop; for cloud frames the edge-to-cloud link
    link = 0.5 + 0.5 * wait + cloud * (20 + 4 * wait + eff.link_ms * (0.7 + 0.6 * wait))
    queue = (3.0 + 1.5 * backlog) * wait + cloud * (5 + wait)
    decode = decode * slow
    total = ingest + route + link + queue + decode + infer + 0.5
    depth = rng.poisson(1 + backlog / 20)
    done = (when + total).astype(int)
    quality = 1 - 0.3 * light - 0.3 * deploys
    boxes = rng.poisson(scene.boxes[cam] * wave * (1 - 0.6 * light) * (1 - 0.5 * deploys))
    confidence = np.clip(rng.normal(np.repeat(scene.conf[cam] * quality, boxes), 0.07), 0.3, 0.99)
    ends = np.cumsum(boxes).tolist()
    scores_all = confidence.tolist()
    rows = zip(nodes, cloud.tolist(), boxes.tolist(), ends, done.tolist(), depth.tolist(),
               infer.tolist(), queue.tolist(), total.tolist(), ingest.tolist(), route.tolist(),
               decode.tolist(), link.tolist(), strict=True)
    for node, to_cloud, k, end, ts, dep, inf, que, tot, ing, rou, dec, lnk in rows:
        tier = "cloud" if to_cloud else "edge"
        model_id, version = topo.cloud_model if to_cloud else topo.edge_model
        if node in eff.version:
            version = eff.version[node][0]
        scores = scores_all[end - k:end]
        seq = seqs[cam]
        seqs[cam] += 1
        aggs[node].update(Sample(ts_ms=ts, camera=camera, seq=seq, tier=tier, model_id=model_id,
                                 model_version=version, total_ms=tot, infer_ms=inf,
                                 queue_ms=que, queue_depth=dep, labels=("person",) * k,
                                 scores=scores))
        counters[node][tier] += 1
        sampler = samplers[node]
        if sampler.keep():
            out.frames.append(TelemetryRecord(
                ts_ms=ts, node=node, camera=camera, seq=seq, tier=tier, model_id=model_id,
                model_version=version, batch_size=1, queue_depth=dep, ingest_ms=ing,
                route_ms=rou, link_ms=lnk, queue_ms=que, decode_ms=dec, infer_ms=inf,
                total_ms=tot,
                n_detections=k, max_score=max(scores, default=0.0),
                mean_score=sum(scores) / k if k else 0.0, sample_weight=sampler.weight))


def _heartbeat(topo: Topology, scene: _Scene, eff: _Effects, rng: np.random.Generator,
               node: str, level: float, counters: dict[str, dict[str, int]],
               ts_ms: int) -> NodeRecord:
    blip = 20.0 if rng.random() < 0.01 else 0.0
    host = scene.cpu[node] + 25 * (level - 1) + rng.normal(0, 2) + blip + eff.cpu_add.get(node, 0)
    rss = scene.rss[node] + rng.normal(0, 3 * MB) + eff.leak_bytes.get(node, 0.0)
    c = counters[node]
    return NodeRecord(
        ts_ms=ts_ms, node=node, roles="detector-" + topo.tier_of(node),
        cpu_percent=float(max(0.0, 80 * level + rng.normal(0, 4))),
        host_cpu_percent=float(min(100.0, max(0.0, host))), rss_bytes=int(rss),
        host_mem_percent=float(rss / (16 * 1024 * MB) * 100), threads=24,
        detected_edge=c["edge"], detected_cloud=c["cloud"])


def write(store: TelemetryStore, telemetry: Telemetry, topic: str = "sim") -> None:
    """Store the telemetry through the real sink (creates the tables first)."""
    store.setup()
    sink = Sink(store)
    for table, records in ((WINDOWS, telemetry.windows), (FRAMES, telemetry.frames),
                           (NODES, telemetry.nodes)):
        rows = [table.to_row(r) for r in records]
        sink.write(table, rows, [Position(f"{topic}.{table.name}", 0, i)
                                 for i in range(len(rows))])
