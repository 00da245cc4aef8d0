"""The numbers a detector sees for one window or one heartbeat, and the series they belong to.

Metric names are shared with :mod:`autosteer.rootcause` (``fps``, ``infer_ms``, ...), so
an anomaly's ``metrics`` can be looked up in a root cause's ``causes``.

>>> from autosteer.topics.records import QuantileSummary, WindowRecord
>>> w = WindowRecord(ts_ms=0, window_s=10, node="edge-1", camera="cam1", tier="edge",
...                  model_id="m", model_version="1", frames=20, detections=30,
...                  sum_total_ms=1000.0, max_total_ms=80.0, distinct_frames=20.0,
...                  total_ms=QuantileSummary(values=[40.0, 60.0], weights=[10, 10]),
...                  infer_ms=QuantileSummary(values=[30.0], weights=[20]),
...                  queue_ms=QuantileSummary(values=[2.0, 4.0], weights=[10, 10]),
...                  score=QuantileSummary(values=[0.6, 0.8], weights=[15, 15]))
>>> series_key(w)
SeriesKey(node='edge-1', camera='cam1', tier='edge')
>>> for name, value in window_features(w).items():
...     print(name, value)
fps 2.0
boxes_per_frame 1.5
total_ms 50.0
total_p95_ms 60.0
infer_ms 30.0
queue_ms 3.0
score 0.7
"""

from __future__ import annotations

from typing import NamedTuple

from autosteer.telemetry.schema import fps
from autosteer.topics.records import NodeRecord, QuantileSummary, WindowRecord

WINDOW_METRICS = ("fps", "boxes_per_frame", "total_ms", "total_p95_ms", "infer_ms", "queue_ms",
                  "score")
NODE_METRICS = ("host_cpu_percent", "cpu_percent", "rss_bytes")


class SeriesKey(NamedTuple):
    """One telemetry series: a (node, camera, tier) stream, or a node (camera = tier = "")."""

    node: str
    camera: str = ""
    tier: str = ""


def series_key(window: WindowRecord) -> SeriesKey:
    return SeriesKey(window.node, window.camera, window.tier)


def mean(s: QuantileSummary) -> float | None:
    """Weighted mean of a sketch's retained items (None when it is empty)."""
    n = sum(s.weights)
    return sum(v * w for v, w in zip(s.values, s.weights, strict=True)) / n if n else None


def quantile(s: QuantileSummary, q: float) -> float | None:
    """The weighted ``q`` quantile (the first value whose cumulative weight reaches ``q``)."""
    n = sum(s.weights)
    if not n:
        return None
    seen = 0
    for v, w in sorted(zip(s.values, s.weights, strict=True)):
        seen += w
        if seen >= q * n:
            return v
    return max(s.values)


def window_features(window: WindowRecord) -> dict[str, float]:
    """Per-window metrics of one series; a metric with no data (no boxes: no score) is left out."""
    out: dict[str, float] = {"fps": fps(window.frames, [window.ts_ms], window.window_s)}
    if window.frames:
        out["boxes_per_frame"] = window.detections / window.frames
        out["total_ms"] = window.sum_total_ms / window.frames
    for name, value in (("total_p95_ms", quantile(window.total_ms, 0.95)),
                        ("infer_ms", mean(window.infer_ms)), ("queue_ms", mean(window.queue_ms)),
                        ("score", mean(window.score))):
        if value is not None:
            out[name] = value
    return out


def node_features(node: NodeRecord) -> dict[str, float]:
    """Resource metrics of one heartbeat."""
    return {"host_cpu_percent": node.host_cpu_percent, "cpu_percent": node.cpu_percent,
            "rss_bytes": float(node.rss_bytes)}
