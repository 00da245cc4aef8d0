"""HTTP endpoints and the monitoring UI on the worker's own (Faust/aiohttp) web server.

- ``GET /health``            liveness
- ``GET /ready``             the broker and the telemetry store answer, and every agent
                             runs (503 when not: a crashed or stalled agent is named)
- ``GET|POST /sql?q=...``    read-only SQL over the telemetry store (one SELECT-like
                             statement, row and time limits); ``autosteer sql`` uses it
                             when the embedded store is locked by this worker
- ``GET /status``            counters, routing split and per-camera ingest state
- ``GET /metrics``           this worker in the Prometheus text format
- ``GET /ui/``               the monitoring page (plain JS in ``streams/web/static/``)
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

from autosteer.streams.web.cluster import (
    cluster_heartbeats,
    events,
    graph,
    inprocess_heartbeats,
    markers,
    node_health,
)
from autosteer.streams.web.live import CameraLive, CounterRates, LiveView, quantiles
from autosteer.streams.web.prometheus import Family, Histogram, exposition, metric_families
from autosteer.streams.web.routes import register_pages
from autosteer.streams.web.state import Web
from autosteer.streams.web.thumbnails import render_thumbnail

__all__ = ["CameraLive", "Family", "Histogram", "LiveView", "CounterRates", "Web",
           "cluster_heartbeats", "events",
           "exposition", "graph", "inprocess_heartbeats", "markers", "metric_families",
           "node_health", "quantiles", "register_pages", "render_thumbnail"]
