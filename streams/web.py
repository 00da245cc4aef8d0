"""HTTP endpoints and the monitoring UI on the worker's own (Faust/aiohttp) web server.

- ``GET /health``            liveness
- ``GET /ready``             the broker and the telemetry store answer (503 when not)
- ``GET|POST /sql?q=...``    read-only SQL over the telemetry store (one SELECT-like
                             statement, row and time limits); ``autosteer sql`` uses it
                             when the embedded store is locked by this worker
- ``GET /status``            counters, routing split and per-camera ingest state
- ``GET /metrics``           this worker in the Prometheus text format
- ``GET /ui/``               the monitoring page (plain JS in ``streams/static/``)
- ``GET /api/graph``         stages, nodes (health from heartbeats) and rates per arrow
- ``GET /api/cameras``       per camera: fps, drops, latency quantiles, last detection
- ``GET /api/cameras/{camera}/thumbnail.jpg``  the last detected frame, boxes drawn
- ``GET /api/timeline``      latency quantiles, throughput, offload ratio, markers
- ``GET /api/feeds``         anomalies, root causes, retrain requests, model versions

Live numbers come from :class:`LiveView`, a Faust sensor that watches what this worker's
agents consume and publish (no extra consumer). Cluster numbers come from ClickHouse:
heartbeats (``telemetry_nodes``) and windows (``telemetry_windows``). ``docs/ui.md``
documents every field.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autosteer.errors import QueryRejected, StoreError
from autosteer.telemetry.schema import latency_quantiles_sql
from autosteer.topics.names import TopicNames
from autosteer.topics.records import Detection, FrameRecord, now_ms
from faust import web
from faust.sensors import Sensor

if TYPE_CHECKING:
    from autosteer.streams.app import Pipeline

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
TIERS = ("edge", "cloud")
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STATES = ("ok", "late", "dead")  # best first
MARKER_KINDS = ("anomaly", "root_cause", "drift", "model_swap")
FEED_KINDS = {"anomaly": "anomalies", "root_cause": "root_causes",
              "retrain_request": "retrain_requests", "drift": "drift",
              "model_swap": "model_swaps", "action": "actions"}


def _jsonable(v: Any) -> Any:
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return str(v)


# --- Prometheus text exposition ---------------------------------------------------------
class Histogram:
    """Cumulative-bucket histogram of observations (for ``/metrics``).

    >>> h = Histogram((0.1, 1.0))
    >>> for v in (0.05, 0.5, 0.5, 3.0):
    ...     h.observe(v)
    >>> h.cumulative(), h.count, h.sum
    ([(0.1, 1), (1.0, 3), (inf, 4)], 4, 4.05)
    """

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS_S) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, v)] += 1
        self.count += 1
        self.sum += v

    def cumulative(self) -> list[tuple[float, int]]:
        out, n = [], 0
        for le, c in zip((*self.bounds, math.inf), self.counts, strict=True):
            n += c
            out.append((le, n))
        return out


@dataclass
class Family:
    """One metric family: its samples are (name suffix, labels, value)."""

    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: Any) -> Family:
        self.samples.append((suffix, {k: str(v) for k, v in labels.items()}, float(value)))
        return self

    def add_histogram(self, h: Histogram, **labels: Any) -> Family:
        for le, n in h.cumulative():
            self.add(n, "_bucket", **labels, le=_num(le))
        self.add(h.sum, "_sum", **labels)
        return self.add(h.count, "_count", **labels)


def _num(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def exposition(families: Iterable[Family]) -> str:
    """Families in the Prometheus text format (version 0.0.4).

    >>> print(exposition([Family("x_total", "counter", "Things.").add(3, tier='e"dge')]))
    # HELP x_total Things.
    # TYPE x_total counter
    x_total{tier="e\\"dge"} 3
    <BLANKLINE>
    """
    lines = []
    for f in families:
        lines.append(f"# HELP {f.name} {f.help.replace(chr(92), chr(92) * 2)}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        for suffix, labels, value in f.samples:
            lab = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            lines.append(f"{f.name}{suffix}{{{lab}}} {_num(value)}" if lab
                         else f"{f.name}{suffix} {_num(value)}")
    return "\n".join(lines) + "\n"


# --- live state of this worker ----------------------------------------------------------
class RateMeter:
    """Per-second rates of growing counters, from snapshots taken about every second.

    >>> m = RateMeter(span_s=5)
    >>> m.sample(0.0, {"a": 0})
    >>> m.sample(2.0, {"a": 10})
    >>> m.rate("a"), m.rate("b")
    (5.0, None)
    """

    def __init__(self, span_s: float = 5.0, keep: int = 32) -> None:
        self.span_s = span_s
        self._snaps: deque[tuple[float, dict[str, float]]] = deque(maxlen=keep)

    def sample(self, t: float, counts: Mapping[str, float]) -> None:
        self._snaps.append((t, dict(counts)))

    def rate(self, key: str) -> float | None:
        if len(self._snaps) < 2 or key not in self._snaps[-1][1]:
            return None
        t1, last = self._snaps[-1]
        t0, first = next(((t, c) for t, c in self._snaps if t >= t1 - self.span_s - 0.5),
                         self._snaps[0])
        if t1 <= t0:
            t0, first = self._snaps[-2]
        return max(0.0, last[key] - first.get(key, 0.0)) / (t1 - t0)


@dataclass
class CameraLive:
    """What this worker saw of one camera."""

    routed_in: int = 0  # frames its router took
    detect_in: int = 0  # frames its detectors took
    detected: int = 0  # detections it published
    shed: int = 0  # results it published for frames shed for their age (no boxes)
    latencies: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=1024))
    seen: float = field(default_factory=time.monotonic)  # last frame or detection
    last: Detection | None = None
    shown: tuple[bytes, Detection] | None = None  # raw FrameRecord and its detection
    thumb: tuple[int, bytes] | None = None  # (seq, rendered JPEG) of ``shown``


_SEQ = re.compile(rb'"seq"\s*:\s*(\d+)')


class LiveView(Sensor):
    """A Faust sensor: frames this worker's agents take, detections they publish.

    Kept small: counters, latency histograms, the recent latencies per camera and, per
    camera, the last detected frame (for the thumbnail). Never raises into Faust.
    """

    def __init__(self, names: TopicNames, *, pending_per_camera: int = 64) -> None:
        super().__init__()
        self.frames_topic = names.frames
        self.tier_topics = {names.frames_edge: "edge", names.frames_cloud: "cloud"}
        self.detections_topic = names.detections
        self.pending_per_camera = pending_per_camera
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.cameras: dict[str, CameraLive] = {}
        self.models: dict[str, tuple[str, str, int]] = {}  # tier -> (model, version, last ms)
        self.errors = 0
        self._pending: dict[tuple[str, str], OrderedDict[int, bytes]] = {}

    # Faust calls these on the event loop for every message; keep them cheap.
    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        try:
            self.frame_in(tp.topic, message.key, message.value)
        except Exception:
            self._failed()

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int,
                          valsize: int) -> Any:
        if topic == self.detections_topic:
            try:
                self.detection_out(message.value)
            except Exception:
                self._failed()
        return None

    def _failed(self) -> None:
        self.errors += 1
        if self.errors in (1, 10, 100) or self.errors % 1000 == 0:
            log.warning("ui sensor failed %d time(s)", self.errors, exc_info=True)

    def camera(self, name: str) -> CameraLive:
        cam = self.cameras.get(name)
        if cam is None:
            cam = self.cameras[name] = CameraLive()
        return cam

    def frame_in(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if not key or not value:
            return
        if topic == self.frames_topic:
            cam = self.camera(key.decode(errors="replace"))
            cam.routed_in += 1
            cam.seen = time.monotonic()
            return
        tier = self.tier_topics.get(topic)
        if tier is None:
            return
        camera = key.decode(errors="replace")
        cam = self.camera(camera)
        cam.detect_in += 1
        cam.seen = time.monotonic()
        m = _SEQ.search(value)
        if m is None:
            return
        pending = self._pending.setdefault((tier, camera), OrderedDict())
        pending[int(m.group(1))] = value
        while len(pending) > self.pending_per_camera:
            pending.popitem(last=False)

    def detection_out(self, value: bytes) -> None:
        d = Detection.parse(value)
        cam = self.camera(d.camera)
        cam.seen = time.monotonic()
        self.models[d.tier] = (d.model_id, d.model_version, now_ms())
        frame = self._done(d)
        if getattr(d, "status", "ok") != "ok":  # shed: too old to detect, no boxes
            cam.shed += 1
            return
        lat = d.latency
        for stage, ms in (("total", lat.total_ms), ("infer", lat.infer_ms),
                          ("queue", lat.queue_ms)):
            h = self.latency.get((d.tier, stage))
            if h is None:
                h = self.latency[(d.tier, stage)] = Histogram()
            h.observe(ms / 1000.0)
        cam.detected += 1
        cam.latencies.append((cam.seen, lat.total_ms))
        cam.last = d
        if frame is not None:
            cam.shown = (frame, d)

    def _done(self, d: Detection) -> bytes | None:
        """Forget the pending frames of ``d``'s tier and camera up to ``d``; return its own."""
        pending = self._pending.get((d.tier, d.camera))
        frame = None
        while pending:
            seq = next(iter(pending))
            if seq > d.seq:
                break
            raw = pending.pop(seq)
            frame = raw if seq == d.seq else frame
        return frame

    def expire(self, max_idle_s: float = 600.0) -> None:
        """Forget cameras this worker has not seen for ``max_idle_s``."""
        cutoff = time.monotonic() - max_idle_s
        for name in [n for n, c in self.cameras.items() if c.seen < cutoff]:
            del self.cameras[name]
            for tier in TIERS:
                self._pending.pop((tier, name), None)

    def counts(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, cam in self.cameras.items():
            out[f"cam_routed:{name}"] = cam.routed_in
            out[f"cam_detect_in:{name}"] = cam.detect_in
            out[f"cam_out:{name}"] = cam.detected
        return out


def quantiles(values: Sequence[float], qs: Sequence[float] = (0.5, 0.95)) -> list[float | None]:
    """Nearest-rank quantiles of ``values`` (None when empty).

    >>> quantiles([5.0, 1.0, 3.0, 2.0, 4.0])
    [3.0, 5.0]
    """
    if not values:
        return [None for _ in qs]
    s = sorted(values)
    return [s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))] for q in qs]


def render_thumbnail(frame_value: bytes, det: Detection, width: int = 360) -> bytes:
    """The frame of ``det`` as a JPEG at most ``width`` pixels wide, its boxes drawn."""
    import cv2
    from autosteer.processors.decode import decode_jpeg, encode_jpeg

    img = decode_jpeg(FrameRecord.parse(frame_value).jpeg)
    h, w = img.shape[:2]
    if w > width:
        img = cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
    color = (60, 200, 60) if det.tier == "edge" else (40, 140, 255)  # BGR
    for b in det.boxes:
        p0 = (int(b.x0 * w), int(b.y0 * h))
        cv2.rectangle(img, p0, (int(b.x1 * w), int(b.y1 * h)), color, 2)
        cv2.putText(img, f"{b.label} {b.score:.2f}", (p0[0] + 2, max(10, p0[1] - 3)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    return encode_jpeg(img, 80)


# --- cluster view from ClickHouse -------------------------------------------------------
Query = Callable[[str], tuple[list[str], list[tuple[Any, ...]]]]
COUNTERS = ("routed_edge", "routed_cloud", "detected_edge", "detected_cloud", "dead_letters")


def node_state(age_s: float, period_s: float, grace_s: float) -> str:
    """``ok``, ``late`` (a heartbeat overdue) or ``dead`` (three missed, plus the time
    a heartbeat takes through Kafka and the sink into ClickHouse).

    >>> [node_state(a, 1.0, 1.0) for a in (1.0, 3.0, 5.0)]
    ['ok', 'late', 'dead']
    """
    if age_s > 3 * period_s + grace_s:
        return "dead"
    if age_s > 1.5 * period_s + grace_s:
        return "late"
    return "ok"


def rates_from_heartbeats(rows: Sequence[tuple[Any, ...]],
                          span_s: float = 10.0) -> dict[str, dict[str, float]]:
    """Per node, per-second rates of the heartbeat counters over the last ``span_s``.

    ``rows`` are ``(node, ts_ms, *COUNTERS)`` ordered by node and time. A counter that
    went down (the worker restarted) counts from zero.

    >>> rows = [("n", 0, 0, 0, 0, 0, 0), ("n", 2000, 10, 4, 8, 4, 0)]
    >>> rates_from_heartbeats(rows)["n"]["routed_edge"]
    5.0
    """
    by_node: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        by_node.setdefault(str(r[0]), []).append(r)
    out: dict[str, dict[str, float]] = {}
    for node, rs in by_node.items():
        if len(rs) < 2:
            continue
        last = rs[-1]
        base = next((r for r in rs[:-1] if int(r[1]) >= int(last[1]) - span_s * 1000), rs[-2])
        dt = (int(last[1]) - int(base[1])) / 1000.0
        if dt <= 0:
            continue
        out[node] = {c: (float(last[i + 2]) - float(base[i + 2]) if last[i + 2] >= base[i + 2]
                         else float(last[i + 2])) / dt for i, c in enumerate(COUNTERS)}
    return out


def heartbeat_period(ts: Sequence[int], default_s: float) -> float:
    """Median gap between a node's recent heartbeats, or ``default_s``.

    >>> heartbeat_period([0, 1000, 2100, 3000], 5.0)
    1.0
    """
    gaps = sorted(b - a for a, b in zip(ts, ts[1:], strict=False) if b > a)
    return gaps[len(gaps) // 2] / 1000.0 if gaps else default_s


ROLE_OF_STAGE = {"cameras": "ingest", "router": "router", "edge": "edge", "cloud": "cloud",
                 "results": "sink"}
ARROWS = (("cameras", "router", ("routed_edge", "routed_cloud")),
          ("router", "edge", ("routed_edge",)), ("router", "cloud", ("routed_cloud",)),
          ("edge", "results", ("detected_edge",)), ("cloud", "results", ("detected_cloud",)))


def graph(nodes: Sequence[Mapping[str, Any]], rates: Mapping[str, float]) -> dict[str, Any]:
    """Stages (coloured by their best node), arrows with rates, and the offload ratio.

    >>> g = graph([{"node": "a", "roles": ["router"], "state": "dead"}],
    ...           {"routed_edge": 3.0, "routed_cloud": 1.0})
    >>> g["stages"][1]["state"], g["edges"][0]["rate"], g["offload_ratio"]
    ('dead', 4.0, 0.25)
    """
    stages = []
    for stage, role in ROLE_OF_STAGE.items():
        members = [n for n in nodes if role in n["roles"]]
        states = [n["state"] for n in members]
        state = next((s for s in STATES if s in states), "none")
        if stage == "cameras":
            flowing = rates.get("routed_edge", 0.0) + rates.get("routed_cloud", 0.0) > 0
            state = "ok" if flowing else (state if members else "idle")
        stages.append({"id": stage, "role": role, "state": state,
                       "nodes": [{"node": n["node"], "state": n["state"]} for n in members]})
    edges = [{"from": a, "to": b, "rate": round(sum(rates.get(c, 0.0) for c in cs), 3)}
             for a, b, cs in ARROWS]
    routed = rates.get("routed_edge", 0.0) + rates.get("routed_cloud", 0.0)
    return {"stages": stages, "edges": edges,
            "offload_ratio": round(rates.get("routed_cloud", 0.0) / routed, 4) if routed else None}


NODE_FIELDS = ("roles", "ts_ms", "cpu_percent", "rss_bytes", "host_cpu_percent",
               "gpu_util_percent", "dead_letters", "frames_dropped", "frames_skipped")


def cluster_heartbeats(query: Query, db: str, now: int, default_period_s: float,
                       lookback_s: int = 3600) -> tuple[dict[str, dict[str, Any]], list[tuple]]:
    """From ``telemetry_nodes``: the last heartbeat of every node seen in the last
    ``lookback_s`` (``{node: {NODE_FIELDS}}``) and the recent ``(node, ts_ms, *COUNTERS)``
    rows that rates and heartbeat periods come from."""
    cols = ", ".join(f"argMax({f}, ts_ms)" if f != "ts_ms" else "max(ts_ms)" for f in NODE_FIELDS)
    _, last = query(f"SELECT node, {cols} FROM {db}.telemetry_nodes "
                    f"WHERE ts_ms >= {now - lookback_s * 1000} GROUP BY node ORDER BY node")
    recent_ms = now - int(max(30.0, 6 * default_period_s) * 1000)
    _, recent = query(
        f"SELECT node, ts_ms, {', '.join(COUNTERS)} FROM {db}.telemetry_nodes "
        f"WHERE ts_ms >= {recent_ms} ORDER BY node, ts_ms")
    return {str(r[0]): dict(zip(NODE_FIELDS, r[1:], strict=True)) for r in last}, recent


def node_health(latest: Mapping[str, Mapping[str, Any]], recent: Sequence[tuple[Any, ...]],
                now: int, default_period_s: float,
                grace_s: float) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Each node's state from its last heartbeat, and the rates summed over live nodes."""
    per_node = rates_from_heartbeats(recent)
    stamps: dict[str, list[int]] = {}
    for r in recent:
        stamps.setdefault(str(r[0]), []).append(int(r[1]))
    nodes, total = [], dict.fromkeys(COUNTERS, 0.0)
    for node, f in sorted(latest.items()):
        period = heartbeat_period(sorted(set(stamps.get(node, []))), default_period_s)
        age = max(0.0, (now - int(f["ts_ms"])) / 1000.0)
        state = node_state(age, period, grace_s)
        rates = per_node.get(node, {}) if state != "dead" else {}
        for c, v in rates.items():
            total[c] += v
        nodes.append({
            "node": node, "roles": [r for r in str(f["roles"]).split(",") if r],
            "state": state, "last_seen_ms": int(f["ts_ms"]), "age_s": round(age, 1),
            "heartbeat_s": period, "cpu_percent": float(f["cpu_percent"]),
            "rss_bytes": int(f["rss_bytes"]), "host_cpu_percent": float(f["host_cpu_percent"]),
            "gpu_util_percent": float(f["gpu_util_percent"]),
            "dead_letters": int(f["dead_letters"]), "frames_dropped": int(f["frames_dropped"]),
            "frames_skipped": int(f["frames_skipped"]),
            "rates": {c: round(v, 3) for c, v in rates.items()},
        })
    return nodes, total


def inprocess_heartbeats(pipeline: Any) -> dict[str, Any]:
    """The last heartbeat per node that this worker consumed itself, when the pipeline
    keeps them (``pipeline.nodes``: node -> (arrival time, NodeRecord))."""
    raw = getattr(pipeline, "nodes", None)
    if not isinstance(raw, Mapping):
        return {}
    out = {}
    for node, v in list(raw.items()):
        rec = v[-1] if isinstance(v, tuple) else v
        if all(hasattr(rec, f) for f in NODE_FIELDS + COUNTERS):
            out[str(node)] = rec
    return out


def timeline(query: Query, db: str, since_ms: int, bucket_s: int) -> dict[str, Any]:
    """Latency quantiles, throughput and offload ratio in ``bucket_s`` buckets, from the
    windows (quantile sketches merge with ``quantileExactWeighted``)."""
    t = f"intDiv(ts_ms, {bucket_s * 1000}) * {bucket_s}"
    lat_sql = latency_quantiles_sql(db, t, since_ms)
    # frames per second of the windows in the bucket (a bucket the pipeline ran only part
    # of, such as the first one, is not diluted)
    fps_sql = (f"SELECT {t} AS t, tier, sum(frames), uniqExact(ts_ms) * max(window_s) "
               f"FROM {db}.telemetry_windows WHERE ts_ms >= {since_ms} "
               f"GROUP BY t, tier ORDER BY t, tier")
    _, lat = query(lat_sql)
    _, fps = query(fps_sql)
    per_t: dict[int, dict[str, float]] = {}
    for ts, tier, n, _ in fps:
        per_t.setdefault(int(ts), {})[str(tier)] = float(n)
    return {
        "latency": [{"t": int(ts), "tier": str(tier), "p50_ms": float(a), "p95_ms": float(b),
                     "p99_ms": float(c)} for ts, tier, a, b, c in lat],
        "throughput": [{"t": int(ts), "tier": str(tier), "fps": float(n) / max(1, int(span))}
                       for ts, tier, n, span in fps],
        "offload": [{"t": ts, "ratio": v.get("cloud", 0.0) / (sum(v.values()) or 1.0)}
                    for ts, v in sorted(per_t.items())],
        "sql": {"latency": lat_sql, "throughput": fps_sql},
    }


def cluster_cameras(query: Query, db: str, since_ms: int) -> dict[str, dict[str, Any]]:
    """Per camera over the windows since ``since_ms``: frames, fps and latency p50/p95."""
    _, counts = query(
        f"SELECT camera, sum(frames), min(ts_ms), max(ts_ms + window_s * 1000) "
        f"FROM {db}.telemetry_windows WHERE ts_ms >= {since_ms} GROUP BY camera")
    _, lat = query(
        f"SELECT camera, quantileExactWeighted(0.5)(v, w), quantileExactWeighted(0.95)(v, w) "
        f"FROM {db}.telemetry_windows ARRAY JOIN total_ms_values AS v, total_ms_weights AS w "
        f"WHERE ts_ms >= {since_ms} GROUP BY camera")
    out = {str(c): {"frames": int(n), "fps": round(int(n) / max(1.0, (e - s) / 1000.0), 3)}
           for c, n, s, e in counts}
    for c, p50, p95 in lat:
        out.setdefault(str(c), {}).update(p50_ms=float(p50), p95_ms=float(p95))
    return out


def cluster_models(query: Query, db: str, since_ms: int) -> list[dict[str, Any]]:
    _, rows = query(
        f"SELECT node, tier, model_id, model_version, max(ts_ms) FROM {db}.telemetry_windows "
        f"WHERE ts_ms >= {since_ms} GROUP BY node, tier, model_id, model_version "
        f"ORDER BY node, tier")
    return [{"node": str(n), "tier": str(t), "model_id": str(m), "model_version": str(v),
             "last_seen_ms": int(ts)} for n, t, m, v, ts in rows]


# --- events fed by other parts (anomalies, root causes, drift, swaps, retrains) -----------
def _event(e: Any) -> dict[str, Any] | None:
    if hasattr(e, "model_dump"):
        e = e.model_dump(mode="json")
    elif is_dataclass(e) and not isinstance(e, type):
        e = asdict(e)
    if not isinstance(e, Mapping) or "kind" not in e:
        return None
    return {str(k): _jsonable(v) for k, v in e.items()}


def events(pipeline: Any, limit: int = 50) -> dict[str, list[dict[str, Any]]]:
    """``pipeline.events`` (if the pipeline has it) by kind, newest first: each event is
    a mapping (or pydantic model / dataclass) with ``kind`` and ideally ``ts_ms``.

    >>> class P: events = [{"kind": "anomaly", "ts_ms": 1, "title": "slow"}, {"x": 1}]
    >>> events(P())["anomalies"]
    [{'kind': 'anomaly', 'ts_ms': 1, 'title': 'slow'}]
    """
    out: dict[str, list[dict[str, Any]]] = {v: [] for v in FEED_KINDS.values()}
    try:
        raw = list(getattr(pipeline, "events", None) or [])
    except Exception:  # someone else's list: never let it break the page
        return out
    for e in reversed(raw[-2000:]):
        ev = _event(e)
        bucket = FEED_KINDS.get(str(ev["kind"])) if ev else None
        if bucket and len(out[bucket]) < limit:
            out[bucket].append(ev)  # type: ignore[arg-type]
    return out


def markers(pipeline: Any, since_ms: int) -> list[dict[str, Any]]:
    """Events to mark on the timelines (anomalies, root causes, drift, model swaps)."""
    feeds = events(pipeline, limit=500)
    out = [e for kind in MARKER_KINDS for e in feeds[FEED_KINDS[kind]]
           if isinstance(e.get("ts_ms"), (int, float)) and e["ts_ms"] >= since_ms]
    return sorted(out, key=lambda e: e["ts_ms"])


# --- the web side -----------------------------------------------------------------------
class _Cache:
    """Shares one store query among the requests of ``ttl_s`` seconds (many tabs)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, asyncio.Future]] = {}

    async def get(self, key: str, ttl_s: float, fn: Callable[[], Any],
                  timeout_s: float = 10.0) -> Any:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is None or hit[0] <= now:
            if len(self._entries) > 64:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            fut = asyncio.get_running_loop().run_in_executor(None, fn)
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved
            hit = self._entries[key] = (now + ttl_s, fut)
        return await asyncio.wait_for(asyncio.shield(hit[1]), timeout_s)


async def _broker_reachable(bootstrap: str, timeout_s: float) -> tuple[bool, str]:
    errors = []
    for hostport in (h.strip() for h in bootstrap.split(",") if h.strip()):
        host, _, port = hostport.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]") or "localhost", int(port)), timeout_s)
            writer.close()
            return True, hostport
        except (OSError, ValueError, TimeoutError) as exc:
            errors.append(f"{hostport}: {exc or type(exc).__name__}")
    return False, "; ".join(errors) or "no bootstrap servers"


class Web:
    """Everything behind the UI for one pipeline: live view, rates and cached queries."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.settings = pipeline.settings
        self.live = LiveView(pipeline.names)
        self.meter = RateMeter()
        self.cache = _Cache()
        self.grace_s = 2 * self.settings.sink_flush_s + 1.0
        self.beats: dict[str, deque[tuple[Any, ...]]] = {}  # in-process heartbeat history

    def sample(self) -> None:
        """Snapshot the counters (every second) for rates."""
        try:
            self._sample()
        except Exception:  # a timer that raises would stop the worker
            log.warning("ui rate sampling failed", exc_info=True)

    def _sample(self) -> None:
        self.live.expire()
        c = self.pipeline.counters
        counts = {f"routed_{t}": c.routed[t] for t in TIERS}
        counts.update({f"detected_{t}": c.detected[t] for t in TIERS})
        counts["dead_letters"] = c.dead_letters
        counts.update(self.live.counts())
        for name, ing in list(self.pipeline.cameras.items()):
            counts[f"cam_sent:{name}"] = ing.stats.frames_sent
        self.meter.sample(time.monotonic(), counts)
        for node, rec in inprocess_heartbeats(self.pipeline).items():
            beats = self.beats.setdefault(node, deque(maxlen=64))
            if not beats or beats[-1][1] != rec.ts_ms:
                beats.append((node, rec.ts_ms, *(getattr(rec, k) for k in COUNTERS)))

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        return self.pipeline.store.query(sql)

    @property
    def db(self) -> str:
        return self.pipeline.store.database

    # --- payloads ------------------------------------------------------------------
    async def graph(self) -> dict[str, Any]:
        s, now = self.settings, now_ms()
        out: dict[str, Any] = {"node": s.node, "now_ms": now, "heartbeat_s": s.heartbeat_s,
                               "dead_after_s": 3 * s.heartbeat_s + self.grace_s}
        try:
            latest, recent = await self.cache.get("graph", 0.9, lambda: cluster_heartbeats(
                self.query, self.db, now_ms(), s.heartbeat_s))
            out.update(source="cluster", error=None, database=self.db)
        except Exception as exc:  # the store is down: what this worker saw itself
            latest, recent = {}, [r for rows in self.beats.values() for r in rows]
            out.update(source="local", error=f"telemetry store: {exc}")
        latest = dict(latest)
        for node, rec in inprocess_heartbeats(self.pipeline).items():  # fresher: no sink lag
            if node not in latest or rec.ts_ms > latest[node]["ts_ms"]:
                latest[node] = {f: getattr(rec, f) for f in NODE_FIELDS}
        if out["source"] == "local" and s.node not in latest:
            latest[s.node] = {**dict.fromkeys(NODE_FIELDS, 0), "ts_ms": now,
                              "roles": ",".join(sorted(self.pipeline.roles))}
        nodes, rates = node_health(latest, recent, now, s.heartbeat_s, self.grace_s)
        if out["source"] == "local" and not any(rates.values()):
            rates = {k: self.meter.rate(k) or 0.0 for k in COUNTERS}
        for n in nodes:
            n["self"] = n["node"] == s.node
        out.update(graph(nodes, rates), nodes=nodes,
                   rates={k: round(v, 3) for k, v in rates.items()})
        return out

    async def cameras(self) -> dict[str, Any]:
        now, cutoff = now_ms(), time.monotonic() - 30.0
        try:
            cluster = await self.cache.get("cameras", 2.0, lambda: cluster_cameras(
                self.query, self.db, now_ms() - 60_000))
            error = None
        except Exception as exc:
            cluster, error = {}, f"telemetry store: {exc}"
        ingest = dict(self.pipeline.cameras)
        rows = []
        for name in sorted(set(self.live.cameras) | set(ingest) | set(cluster)):
            live = self.live.cameras.get(name)
            ing = ingest.get(name)
            recent = [ms for t, ms in live.latencies if t >= cutoff] if live else []
            p50, p95 = quantiles(recent)
            fps_in = (self.meter.rate(f"cam_sent:{name}") if ing else None)
            if fps_in is None and live is not None:
                fps_in = self.meter.rate(f"cam_routed:{name}" if live.routed_in
                                         else f"cam_detect_in:{name}")
            last = live.last if live else None
            shown = live.shown if live else None
            rows.append({
                "camera": name,
                "fps_in": _round(fps_in), "fps_out": _round(self.meter.rate(f"cam_out:{name}")),
                "frames_detected": live.detected if live else 0,
                "frames_shed": live.shed if live else 0,
                "p50_ms": _round(p50), "p95_ms": _round(p95),
                "ingest": ({"url": ing.url, **ing.stats.as_dict()} if ing else None),
                "frames_dropped": ing.stats.frames_dropped if ing else None,
                "frames_skipped": ing.stats.frames_skipped if ing else None,
                "last": None if last is None else {
                    "seq": last.seq, "ts_ms": last.ts_ms, "age_s": round((now - last.ts_ms)
                                                                         / 1000, 1),
                    "tier": last.tier, "node": last.node, "model_id": last.model_id,
                    "model_version": last.model_version, "total_ms": last.latency.total_ms,
                    "boxes": len(last.boxes), "labels": last.counts()},
                "thumbnail": (f"/api/cameras/{name}/thumbnail.jpg?seq={shown[1].seq}"
                              if shown else None),
                "cluster": cluster.get(name),
            })
        return {"node": self.settings.node, "now_ms": now, "cameras": rows, "error": error}

    async def thumbnail(self, camera: str) -> bytes | None:
        live = self.live.cameras.get(camera)
        if live is None or live.shown is None:
            return None
        frame, det = live.shown
        if live.thumb is None or live.thumb[0] != det.seq:
            jpeg = await asyncio.get_running_loop().run_in_executor(
                None, render_thumbnail, frame, det)
            live.thumb = (det.seq, jpeg)
        return live.thumb[1]

    async def timeline(self, minutes: int, bucket_s: int) -> dict[str, Any]:
        since = now_ms() - minutes * 60_000
        out: dict[str, Any] = {"since_ms": since, "bucket_s": bucket_s, "minutes": minutes,
                               "markers": markers(self.pipeline, since)}
        try:
            out.update(await self.cache.get(f"timeline:{minutes}:{bucket_s}", 2.0,
                                            lambda: timeline(self.query, self.db, since,
                                                             bucket_s)), error=None)
        except Exception as exc:
            out.update(latency=[], throughput=[], offload=[], sql={},
                       error=f"telemetry store: {exc}")
        return out

    async def feeds(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(events(self.pipeline))
        local = [{"node": self.settings.node, "tier": t, "model_id": m, "model_version": v,
                  "last_seen_ms": ts} for t, (m, v, ts) in sorted(self.live.models.items())]
        try:
            cluster = await self.cache.get("models", 5.0, lambda: cluster_models(
                self.query, self.db, now_ms() - 600_000))
            out["error"] = None
        except Exception as exc:
            cluster, out["error"] = [], f"telemetry store: {exc}"
        models: dict[tuple[str, ...], dict[str, Any]] = {}
        for m in cluster + local:
            key = (m["node"], m["tier"], m["model_id"], m["model_version"])
            if key not in models or models[key]["last_seen_ms"] < m["last_seen_ms"]:
                models[key] = m
        out["models"] = sorted(models.values(), key=lambda m: (m["node"], m["tier"]))
        return out

    async def ready(self, timeout_s: float = 2.0) -> tuple[bool, dict[str, Any]]:
        t0 = time.monotonic()
        broker_ok, detail = await _broker_reachable(self.settings.kafka_bootstrap, timeout_s)
        checks: dict[str, Any] = {"broker": {"ok": broker_ok, "detail": detail,
                                             "ms": round((time.monotonic() - t0) * 1000, 1)}}
        t0 = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(
                None, lambda: self.pipeline.store.query("SELECT 1")), timeout_s + 1.0)
            store = {"ok": True, "detail": repr(self.pipeline.store)}
        except TimeoutError:
            store = {"ok": False, "detail": f"no answer within {timeout_s + 1.0:.0f}s"}
        except Exception as exc:
            store = {"ok": False, "detail": str(exc)}
        checks["store"] = {**store, "ms": round((time.monotonic() - t0) * 1000, 1)}
        ok = all(c["ok"] for c in checks.values())
        return ok, {"ready": ok, "node": self.settings.node, "checks": checks}

    def metrics(self) -> str:
        return exposition(metric_families(self.pipeline, self.live, self.meter))


def _round(v: float | None, nd: int = 2) -> float | None:
    return None if v is None else round(v, nd)


def _queue_depths(app: Any) -> dict[str, int]:
    """Messages waiting in each agent's stream buffer."""
    out: dict[str, int] = {}
    for name, agent in list(app.agents.items()):
        n = 0
        for actor in list(getattr(agent, "_actors", ())):
            try:
                n += int(actor.stream.channel.queue.qsize())
            except Exception:
                continue
        out[str(name)] = n
    return out


def _consumer_lag(app: Any) -> dict[tuple[str, int], int]:
    """Per assigned partition: end offset minus committed (or read) offset."""
    mon = app.monitor
    try:
        assigned = set(app.consumer.assignment())
    except Exception:
        assigned = None
    out = {}
    for tp, end in list(mon.tp_end_offsets.items()):
        if assigned is not None and tp not in assigned:
            continue
        done = mon.tp_committed_offsets.get(tp)
        if done is None and tp in mon.tp_read_offsets:
            done = mon.tp_read_offsets[tp] + 1
        if done is not None:
            out[(tp.topic, tp.partition)] = max(0, int(end) - int(done))
    return out


def metric_families(pipeline: Any, live: LiveView, meter: RateMeter) -> list[Family]:
    """This worker's metrics: counters since it started, latency histograms of the
    detections it published, queue depths, consumer lag, models in use."""
    s, c = pipeline.settings, pipeline.counters
    node_info = Family("autosteer_node_info", "gauge", "This worker: node name and roles.")
    node_info.add(1, node=s.node, roles=",".join(sorted(pipeline.roles)))
    routed = Family("autosteer_frames_routed_total", "counter",
                    "Frames the router sent to each tier.")
    detected = Family("autosteer_frames_detected_total", "counter",
                      "Frames each tier's detector published detections for.")
    for t in TIERS:
        routed.add(c.routed[t], tier=t)
        detected.add(c.detected[t], tier=t)
    plain = [Family(f"autosteer_{name}_total", "counter", text).add(getattr(c, attr))
             for name, attr, text in (
                 ("dead_letters", "dead_letters", "Messages sent to the dead-letter topic."),
                 ("send_failures", "send_failures", "Produce requests that failed."),
                 ("telemetry_rows", "telemetry_rows", "Telemetry rows the sink stored."),
                 ("store_retries", "store_retries", "Failed telemetry store writes (retried)."),
                 ("frames_shed", "shed", "Frames this worker's detectors shed for their age "
                  "(AUTOSTEER_MAX_FRAME_AGE_MS)."))
             if isinstance(getattr(c, attr, None), int)]
    cam_frames = Family("autosteer_camera_frames_total", "counter",
                        "Camera frames read, sent, skipped (fps cap) and dropped (producer "
                        "full) by this worker's ingest.")
    cam_up = Family("autosteer_camera_up", "gauge", "1 while the camera is streaming.")
    for name, ing in sorted(pipeline.cameras.items()):
        st = ing.stats
        for outcome in ("read", "sent", "skipped", "dropped"):
            cam_frames.add(getattr(st, f"frames_{outcome}"), camera=name, outcome=outcome)
        cam_up.add(1 if st.state == "streaming" else 0, camera=name)
    cam_det = Family("autosteer_camera_frames_detected_total", "counter",
                     "Detections this worker published, per camera.")
    for name, cl in sorted(live.cameras.items()):
        if cl.detected:
            cam_det.add(cl.detected, camera=name)
    latency = Family("autosteer_detection_latency_seconds", "histogram",
                     "Latency of the detections this worker published: total (capture to "
                     "published), infer (model) and queue (waiting for the detector).")
    for (tier, stage), h in sorted(live.latency.items()):
        latency.add_histogram(h, tier=tier, stage=stage)
    edge, cloud = (meter.rate(f"routed_{t}") for t in TIERS)
    if edge is None or cloud is None or edge + cloud == 0:
        edge, cloud = c.routed["edge"], c.routed["cloud"]
    offload = Family("autosteer_offload_ratio", "gauge",
                     "Share of frames this worker's router sent to the cloud tier over the "
                     "last 5 s (since start when none came meanwhile; NaN before the first).")
    offload.add(cloud / (edge + cloud) if edge + cloud else math.nan)
    depth = Family("autosteer_queue_depth", "gauge", "Messages waiting in each agent's buffer.")
    for agent, n in sorted(_queue_depths(pipeline.app).items()):
        depth.add(n, agent=agent)
    lag = Family("autosteer_consumer_lag", "gauge",
                 "Messages behind the end of each assigned partition (committed offset).")
    for (topic, part), n in sorted(_consumer_lag(pipeline.app).items()):
        lag.add(n, topic=topic, partition=part)
    model = Family("autosteer_model_info", "gauge",
                   "Model each detector tier of this worker last used.")
    for tier, (mid, ver, _) in sorted(live.models.items()):
        model.add(1, tier=tier, model_id=mid, model_version=ver)
    sensor_errors = Family("autosteer_ui_sensor_errors_total", "counter",
                           "Messages the UI sensor could not read (see the worker log).")
    sensor_errors.add(live.errors)
    return [node_info, routed, detected, *plain, cam_frames, cam_up, cam_det, latency,
            offload, depth, lag, model, sensor_errors]


NICE_BUCKETS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


def bucket_for(minutes: int, window_s: int, points: int = 120) -> int:
    """A round bucket that gives about ``points`` buckets, never shorter than a window.

    >>> bucket_for(15, 10), bucket_for(5, 2), bucket_for(24 * 60, 10)
    (10, 5, 900)
    """
    want = minutes * 60 / points
    return max(window_s, next((b for b in NICE_BUCKETS_S if b >= want), NICE_BUCKETS_S[-1]))


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    try:
        return min(hi, max(lo, int(request.query.get(name, default))))
    except ValueError:
        return default


def register_pages(pipeline: Pipeline) -> Web:
    """Add the endpoints and the UI to ``pipeline.app``; returns the :class:`Web` state."""
    app = pipeline.app
    ui = Web(pipeline)
    app.sensors.add(ui.live)

    @app.timer(1.0, name="ui-rates")
    async def _sample() -> None:
        ui.sample()

    class Health(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json({"status": "ok", "node": pipeline.settings.node})

    class Ready(web.View):
        async def get(self, request: web.Request) -> web.Response:
            ok, body = await ui.ready()
            return self.json(body, status=200 if ok else 503)

    class Sql(web.View):
        async def _run(self, sql: str) -> web.Response:
            loop = asyncio.get_running_loop()
            try:
                cols, rows = await loop.run_in_executor(
                    None, lambda: pipeline.store.query(sql, readonly=True))
            except QueryRejected as exc:
                return self.json({"error": str(exc)}, status=400)
            except StoreError as exc:
                return self.json({"error": str(exc)}, status=422)
            return self.json({"columns": cols, "rows": [_jsonable(r) for r in rows]})

        async def get(self, request: web.Request) -> web.Response:
            return await self._run(request.query.get("q", ""))

        async def post(self, request: web.Request) -> web.Response:
            try:
                body = await request.json()
            except ValueError:
                return self.json({"error": 'the body must be JSON: {"sql": "SELECT ..."}'},
                                 status=400)
            return await self._run(str(body.get("sql", "")) if isinstance(body, dict) else "")

    class Status(web.View):
        async def get(self, request: web.Request) -> web.Response:
            c = pipeline.counters
            return self.json({
                "node": pipeline.settings.node,
                "roles": sorted(pipeline.roles),
                "policy": repr(pipeline.policy),
                "routed": c.routed, "detected": c.detected,
                "dead_letters": c.dead_letters, "telemetry_rows": c.telemetry_rows,
                "store_retries": c.store_retries,
                "cameras": {k: {"url": v.url, **v.stats.as_dict()}
                            for k, v in pipeline.cameras.items()},
            })

    class Metrics(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.text(ui.metrics(), content_type="text/plain; version=0.0.4")

    class Index(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.html((STATIC_DIR / "index.html").read_text())

    class GraphApi(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json(await ui.graph())

    class CamerasApi(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json(await ui.cameras())

    class Thumbnail(web.View):
        async def get(self, request: web.Request, camera: str) -> web.Response:
            try:
                jpeg = await ui.thumbnail(camera)
            except Exception as exc:
                return self.json({"error": f"cannot draw {camera}: {exc}"}, status=500)
            if jpeg is None:
                return self.json({"error": f"no detected frame of {camera!r} here"}, status=404)
            return self.bytes(jpeg, content_type="image/jpeg",
                              headers={"Cache-Control": "no-store"})

    class TimelineApi(web.View):
        async def get(self, request: web.Request) -> web.Response:
            minutes = _int_param(request, "minutes", 15, 1, 24 * 60)
            auto = bucket_for(minutes, pipeline.settings.window_s)
            return self.json(await ui.timeline(
                minutes, _int_param(request, "bucket_s", auto, 1, 3600)))

    class FeedsApi(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json(await ui.feeds())

    class IndexNoSlash(Index):
        pass

    class Fault(web.View):
        """Fault injection for tests and benchmarks (AUTOSTEER_FAULT_INJECTION=true):
        ``POST /fault?delay_ms=50`` adds that much service time to every detector batch
        of this worker; ``delay_ms=0`` removes it."""

        async def post(self, request: web.Request) -> web.Response:
            if not pipeline.settings.fault_injection:
                return self.json({"error": "fault injection is off; set "
                                  "AUTOSTEER_FAULT_INJECTION=true"}, status=403)
            try:
                delay = float(request.query.get("delay_ms", "0"))
            except ValueError:
                return self.json({"error": "delay_ms must be a number"}, status=400)
            pipeline.fault_delay_ms = max(0.0, delay)
            return self.json({"node": pipeline.settings.node, "delay_ms": delay})

    for path, view in (("/health", Health), ("/ready", Ready), ("/sql", Sql),
                       ("/status", Status), ("/metrics", Metrics), ("/ui/", Index),
                       ("/ui", IndexNoSlash),
                       ("/api/graph", GraphApi), ("/api/cameras", CamerasApi),
                       ("/api/cameras/{camera}/thumbnail.jpg", Thumbnail),
                       ("/api/timeline", TimelineApi), ("/api/feeds", FeedsApi),
                       ("/fault", Fault)):
        app.page(path)(view)
    app.web.add_static("/ui/static/", STATIC_DIR)
    return ui
