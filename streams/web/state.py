"""Everything behind the UI for one worker: live view, rates and cached queries."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from autosteer.streams.web.cluster import (
    COUNTERS,
    NODE_FIELDS,
    cluster_cameras,
    cluster_heartbeats,
    cluster_models,
    events,
    graph,
    inprocess_heartbeats,
    markers,
    node_health,
    timeline,
)
from autosteer.streams.web.live import CounterRates, LiveView, quantiles
from autosteer.streams.web.prometheus import exposition, metric_families, rounded
from autosteer.streams.web.thumbnails import render_thumbnail
from autosteer.topics.records import now_ms

if TYPE_CHECKING:
    from autosteer.streams.worker import WorkerView

log = logging.getLogger(__name__)





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
    """Everything behind the UI for one worker: live view, rates and cached queries."""

    def __init__(self, view: WorkerView, app: Any = None) -> None:
        self.view = view
        self.app = app
        self.settings = view.settings
        self.live = LiveView(view.names)
        self.meter = CounterRates()
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
        c = self.view.counts()
        counts: dict[str, float] = {k: c[k] for k in COUNTERS}
        counts.update(self.live.counts())
        for name, ing in list(self.view.cameras().items()):
            counts[f"cam_sent:{name}"] = ing.stats.frames_sent
        self.meter.sample(time.monotonic(), counts)
        for node, rec in inprocess_heartbeats(self.view.nodes()).items():
            beats = self.beats.setdefault(node, deque(maxlen=64))
            if not beats or beats[-1][1] != rec.ts_ms:
                beats.append((node, rec.ts_ms, *(getattr(rec, k) for k in COUNTERS)))

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        return self.view.store().query(sql)

    @property
    def db(self) -> str:
        return self.view.store().database

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
        for node, rec in inprocess_heartbeats(self.view.nodes()).items():  # fresher: no sink lag
            if node not in latest or rec.ts_ms > latest[node]["ts_ms"]:
                latest[node] = {f: getattr(rec, f) for f in NODE_FIELDS}
        if out["source"] == "local" and s.node not in latest:
            latest[s.node] = {**dict.fromkeys(NODE_FIELDS, 0), "ts_ms": now,
                              "roles": ",".join(sorted(self.view.roles))}
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
        ingest = dict(self.view.cameras())
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
                "fps_in": rounded(fps_in), "fps_out": rounded(self.meter.rate(f"cam_out:{name}")),
                "frames_detected": live.detected if live else 0,
                "frames_shed": live.shed if live else 0,
                "p50_ms": rounded(p50), "p95_ms": rounded(p95),
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
                               "markers": markers(self.view.events, since)}
        try:
            out.update(await self.cache.get(f"timeline:{minutes}:{bucket_s}", 2.0,
                                            lambda: timeline(self.query, self.db, since,
                                                             bucket_s)), error=None)
        except Exception as exc:
            out.update(latency=[], throughput=[], offload=[], sql={},
                       error=f"telemetry store: {exc}")
        return out

    async def feeds(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(events(self.view.events))
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
                None, lambda: self.view.store().query("SELECT 1")), timeout_s + 1.0)
            store = {"ok": True, "detail": repr(self.view.store())}
        except TimeoutError:
            store = {"ok": False, "detail": f"no answer within {timeout_s + 1.0:.0f}s"}
        except Exception as exc:
            store = {"ok": False, "detail": str(exc)}
        checks["store"] = {**store, "ms": round((time.monotonic() - t0) * 1000, 1)}
        problems = self.view.health.problems()
        checks["agents"] = {"ok": not problems, "detail": "; ".join(
            f"{name}: {why}" for name, why in sorted(problems.items())) or "all running",
                            "problems": problems}
        ok = all(c["ok"] for c in checks.values())
        return ok, {"ready": ok, "node": self.settings.node, "checks": checks}

    def metrics(self) -> str:
        return exposition(metric_families(self.view, self.app, self.live, self.meter))
