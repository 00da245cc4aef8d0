"""The metrics root-cause analysis compares, how SQL computes them, and how they relate.

Every metric is a ratio of two sums over rows of one telemetry table (or a rate: a sum
per second), so it rolls up exactly from any set of rows to any slice, in Python and in
SQL alike. ``parents`` encode the pipeline's own structure (CPU drives model time, model
time drives queueing, all components add up to end-to-end latency, confidence drives
box counts): a metric that moved only because a parent moved is not a root cause.

>>> METRICS["infer_ms"].parents, METRICS["fps"].den is None
(('host_cpu_percent',), True)
>>> cause_type("tier", "queue_ms", tiers={"cloud"}, new_version=False)
'link_degradation'
>>> cause_type("camera", "score", tiers={"edge", "cloud"}, new_version=False)
'model_drift'
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

CauseType = Literal["node_overload", "link_degradation", "camera_failure", "model_drift",
                    "bad_deploy", "unknown"]
DIMENSIONS = ("node", "camera", "tier", "model_version")

WINDOWS_TABLE = "telemetry_windows"
FRAMES_TABLE = "telemetry_frames"
NODES_TABLE = "telemetry_nodes"


@dataclass(frozen=True)
class Metric:
    """``sum(num) / sum(den)`` over a slice's rows (``den`` None: ``sum(num)`` per second)."""

    name: str
    table: str
    num: str
    den: str | None
    worse: int  # +1: higher is worse; -1: lower is worse
    parents: tuple[str, ...] = ()
    home: str = "node"  # the dimension named when two slices hold exactly the same rows
    unit: str = ""
    rel_floor: float = 0.01  # a robust sigma is at least this share of the median

    @property
    def node_level(self) -> bool:
        """Measured per node (heartbeats), so only node slices exist for it."""
        return self.table == NODES_TABLE


def _sketch(name: str) -> tuple[str, str]:
    return (f"arraySum(arrayMap((v, w) -> v * w, {name}_values, {name}_weights))",
            f"arraySum({name}_weights)")


METRICS: dict[str, Metric] = {m.name: m for m in [
    # a slower detector also serves fewer frames per second: fps is a symptom there
    Metric("fps", WINDOWS_TABLE, "frames", None, -1, parents=("infer_ms", "queue_ms"),
           home="camera", unit="frames/s"),
    Metric("boxes_per_frame", WINDOWS_TABLE, "detections", "frames", -1, parents=("score",),
           home="camera", unit="boxes"),
    Metric("score", WINDOWS_TABLE, *_sketch("score"), -1, home="camera", unit="confidence"),
    Metric("total_ms", WINDOWS_TABLE, "sum_total_ms", "frames", +1,
           parents=("infer_ms", "queue_ms", "route_ms", "link_ms", "decode_ms", "ingest_ms"),
           unit="ms"),
    Metric("infer_ms", WINDOWS_TABLE, *_sketch("infer_ms"), +1, parents=("host_cpu_percent",),
           unit="ms"),
    Metric("queue_ms", WINDOWS_TABLE, *_sketch("queue_ms"), +1, parents=("infer_ms",),
           home="tier", unit="ms"),
    Metric("route_ms", FRAMES_TABLE, "sample_weight * route_ms", "sample_weight", +1,
           home="tier", unit="ms"),
    # router -> detector's worker: the Kafka hop, and for cloud rows the edge-to-cloud link
    Metric("link_ms", FRAMES_TABLE, "sample_weight * link_ms", "sample_weight", +1,
           home="tier", unit="ms"),
    Metric("decode_ms", FRAMES_TABLE, "sample_weight * decode_ms", "sample_weight", +1,
           parents=("host_cpu_percent",), unit="ms"),
    Metric("ingest_ms", FRAMES_TABLE, "sample_weight * ingest_ms", "sample_weight", +1,
           home="camera", unit="ms"),
    Metric("host_cpu_percent", NODES_TABLE, "host_cpu_percent", "1", +1, unit="%"),
    Metric("cpu_percent", NODES_TABLE, "cpu_percent", "1", +1, unit="% of a core"),
    Metric("rss_bytes", NODES_TABLE, "rss_bytes", "1", +1, unit="bytes", rel_floor=0.01),
]}


def cause_type(dimension: str, metric: str, *, tiers: Collection[str],
               new_version: bool) -> CauseType:
    """Name the kind of fault a (slice, metric) cause points at.

    ``tiers``: the tiers of the slice's rows (a slice of cloud rows only is behind the
    edge-to-cloud link); ``new_version``: a model version absent from the baseline."""
    if dimension == "model_version" and new_version:
        return "bad_deploy"
    if metric in ("host_cpu_percent", "cpu_percent", "rss_bytes", "infer_ms", "decode_ms"):
        return "node_overload"
    if metric in ("queue_ms", "route_ms", "link_ms"):
        return "link_degradation" if set(tiers) == {"cloud"} else "node_overload"
    if metric in ("fps", "ingest_ms"):
        return "camera_failure" if dimension == "camera" else "node_overload"
    if metric in ("score", "boxes_per_frame"):
        return "model_drift"
    return "unknown"
