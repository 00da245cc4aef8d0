"""Cluster numbers from heartbeats and windows in ClickHouse, and the UI's event feeds."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

from autosteer.telemetry.schema import (
    Query,
    fps,
    latency_quantiles_sql,
    offload_ratio,
    throughput,
    throughput_sql,
)

log = logging.getLogger(__name__)

STATES = ("ok", "late", "dead")  # best first
MARKER_KINDS = ("anomaly", "root_cause", "drift", "model_swap")
FEED_KINDS = {"anomaly": "anomalies", "root_cause": "root_causes",
              "retrain_request": "retrain_requests", "drift": "drift",
              "model_swap": "model_swaps", "action": "actions"}

def jsonable(v: Any) -> Any:
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return str(v)


# --- nodes: heartbeats, rates, health -----------------------------------------------------
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


def inprocess_heartbeats(raw: Any) -> dict[str, Any]:
    """The last heartbeat per node that this worker consumed itself (``raw``: node ->
    (arrival time, NodeRecord)); {} for anything else."""
    if not isinstance(raw, Mapping):
        return {}
    out = {}
    for node, v in list(raw.items()):
        rec = v[-1] if isinstance(v, tuple) else v
        if all(hasattr(rec, f) for f in NODE_FIELDS + COUNTERS):
            out[str(node)] = rec
    return out


def timeline(query: Query, db: str, since_ms: int, bucket_s: int) -> dict[str, Any]:
    """Latency quantiles, throughput and offload ratio (the cloud share) in ``bucket_s``
    buckets, from the windows (quantile sketches merge with ``quantileExactWeighted``;
    fps is :func:`~autosteer.telemetry.schema.fps`, frames over the seconds covered)."""
    t = f"intDiv(ts_ms, {bucket_s * 1000}) * {bucket_s}"
    lat_sql = latency_quantiles_sql(db, t, since_ms)
    fps_sql = throughput_sql(db, t, since_ms)
    _, lat = query(lat_sql)
    _, rows = query(fps_sql)
    per_t: dict[int, dict[str, float]] = {}
    for ts, tier, n, *_ in rows:
        per_t.setdefault(int(ts), {})[str(tier)] = float(n)
    return {
        "latency": [{"t": int(ts), "tier": str(tier), "p50_ms": float(a), "p95_ms": float(b),
                     "p99_ms": float(c)} for ts, tier, a, b, c in lat],
        "throughput": [{"t": int(ts), "tier": tier, "fps": rate}
                       for ts, tier, rate in throughput(rows)],
        "offload": [{"t": ts, "ratio": offload_ratio(v)} for ts, v in sorted(per_t.items())],
        "sql": {"latency": lat_sql, "throughput": fps_sql},
    }


def cluster_cameras(query: Query, db: str, since_ms: int) -> dict[str, dict[str, Any]]:
    """Per camera over the windows since ``since_ms``: frames, fps (over the seconds the
    camera's windows cover) and latency p50/p95."""
    _, counts = query(
        f"SELECT camera, sum(frames), groupUniqArray(ts_ms), max(window_s) "
        f"FROM {db}.telemetry_windows WHERE ts_ms >= {since_ms} GROUP BY camera")
    _, lat = query(
        f"SELECT camera, quantileExactWeighted(0.5)(v, w), quantileExactWeighted(0.95)(v, w) "
        f"FROM {db}.telemetry_windows ARRAY JOIN total_ms_values AS v, total_ms_weights AS w "
        f"WHERE ts_ms >= {since_ms} GROUP BY camera")
    out = {str(c): {"frames": int(n), "fps": round(fps(int(n), starts, float(w)), 3)}
           for c, n, starts, w in counts}
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
    return {str(k): jsonable(v) for k, v in e.items()}


def events(feed: Any, limit: int = 50) -> dict[str, list[dict[str, Any]]]:
    """The worker's event feed by kind, newest first: each event is
    a mapping (or pydantic model / dataclass) with ``kind`` and ideally ``ts_ms``.

    >>> events([{"kind": "anomaly", "ts_ms": 1, "title": "slow"}, {"x": 1}])["anomalies"]
    [{'kind': 'anomaly', 'ts_ms': 1, 'title': 'slow'}]
    """
    out: dict[str, list[dict[str, Any]]] = {v: [] for v in FEED_KINDS.values()}
    try:
        raw = list(feed or [])
    except Exception:  # someone else's list: never let it break the page
        return out
    for e in reversed(raw[-2000:]):
        ev = _event(e)
        bucket = FEED_KINDS.get(str(ev["kind"])) if ev else None
        if bucket and len(out[bucket]) < limit:
            out[bucket].append(ev)  # type: ignore[arg-type]
    return out


def markers(feed: Any, since_ms: int) -> list[dict[str, Any]]:
    """Events to mark on the timelines (anomalies, root causes, drift, model swaps)."""
    feeds = events(feed, limit=500)
    out = [e for kind in MARKER_KINDS for e in feeds[FEED_KINDS[kind]]
           if isinstance(e.get("ts_ms"), (int, float)) and e["ts_ms"] >= since_ms]
    return sorted(out, key=lambda e: e["ts_ms"])
