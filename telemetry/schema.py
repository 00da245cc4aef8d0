"""ClickHouse DDL for telemetry, valid on ClickHouse 18.16 (Debian) and current versions.

Only features both have: MergeTree with a custom ``PARTITION BY`` on a Date, DEFAULT
expressions, arrays, plain types (no DateTime64, Map, LowCardinality, TTL or codecs),
plain views. Retention is ``ALTER TABLE ... DROP PARTITION`` on old days.

Every table fed from a topic carries ``src_topic, src_partition, src_offset``: the sink
uses them to skip rows that are already stored (exactly once across retries and crashes).

>>> [t.name for t in TABLES]
['telemetry_frames', 'telemetry_windows', 'telemetry_nodes', 'telemetry_quality']
>>> WINDOWS.columns[-3:]
['src_topic', 'src_partition', 'src_offset']
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autosteer.topics.records import (
    NodeRecord,
    QualityRecord,
    Record,
    TelemetryRecord,
    WindowRecord,
)

# A read-only SQL query: column names and rows (a store's ``query``, or the CLI's run_sql)
Query = Callable[[str], tuple[list[str], list[tuple[Any, ...]]]]

SOURCE_COLUMNS: list[tuple[str, str]] = [
    ("src_topic", "String"), ("src_partition", "UInt32"), ("src_offset", "UInt64")]

SUMMARIES = ("total_ms", "infer_ms", "queue_ms", "score")


@dataclass(frozen=True)
class Table:
    """One telemetry table: its columns, sort key, and how a record becomes a row."""

    name: str
    record: type[Record]
    typed_columns: list[tuple[str, str]]
    order_by: str
    to_row: Callable[[Any], tuple]

    @property
    def columns(self) -> list[str]:
        return [c for c, _ in self.typed_columns]

    def ddl(self, database: str) -> str:
        cols = ",\n    ".join(f"{n} {t}" for n, t in self.typed_columns)
        return f"""CREATE TABLE IF NOT EXISTS {database}.{self.name} (
    {cols},
    ts DateTime DEFAULT toDateTime(intDiv(ts_ms, 1000)),
    date Date DEFAULT toDate(toDateTime(intDiv(ts_ms, 1000)))
) ENGINE = MergeTree()
PARTITION BY date
ORDER BY ({self.order_by})"""


FRAME_COLUMNS: list[tuple[str, str]] = [
    ("ts_ms", "UInt64"), ("node", "String"), ("camera", "String"), ("seq", "UInt64"),
    ("tier", "String"), ("model_id", "String"), ("model_version", "String"),
    ("batch_size", "UInt16"), ("queue_depth", "UInt32"), ("ingest_ms", "Float32"),
    ("route_ms", "Float32"), ("queue_ms", "Float32"), ("decode_ms", "Float32"),
    ("infer_ms", "Float32"), ("total_ms", "Float32"), ("n_detections", "UInt16"),
    ("max_score", "Float32"), ("mean_score", "Float32"), ("sample_weight", "Float32"),
    ("link_ms", "Float32"),
]


def _plain(names: list[str]) -> Callable[[Any], tuple]:
    """A record's ``names`` fields as a tuple: one ``operator.attrgetter``, built once
    per table (a per-field ``getattr`` loop was a quarter of the loader's time).

    >>> _plain(["real", "imag"])(3 + 4j)
    (3.0, 4.0)
    """
    if len(names) < 2:
        raise ValueError(f"a plain table needs at least two columns; got {names}")
    return operator.attrgetter(*names)


def _window_row(rec: WindowRecord) -> tuple:
    out: list[Any] = [rec.ts_ms, rec.window_s, rec.node, rec.camera, rec.tier, rec.model_id,
                      rec.model_version, rec.frames, rec.detections, rec.sum_total_ms,
                      rec.max_total_ms, rec.max_queue_depth, rec.reused, rec.distinct_frames]
    for name in SUMMARIES:
        s = getattr(rec, name)
        out += [list(s.values), list(s.weights)]
    out += [list(rec.labels), list(rec.label_counts), json.dumps(rec.sketches)]
    return tuple(out)


WINDOW_COLUMNS: list[tuple[str, str]] = [
    ("ts_ms", "UInt64"), ("window_s", "UInt32"), ("node", "String"), ("camera", "String"),
    ("tier", "String"), ("model_id", "String"), ("model_version", "String"),
    ("frames", "UInt64"), ("detections", "UInt64"), ("sum_total_ms", "Float64"),
    ("max_total_ms", "Float32"), ("max_queue_depth", "UInt32"), ("reused", "UInt64"),
    ("distinct_frames", "Float64"),
    *[(f"{n}_{part}", t) for n in SUMMARIES
      for part, t in (("values", "Array(Float32)"), ("weights", "Array(UInt64)"))],
    ("labels", "Array(String)"), ("label_counts", "Array(UInt64)"), ("sketches", "String"),
]

NODE_COLUMNS: list[tuple[str, str]] = [
    ("ts_ms", "UInt64"), ("node", "String"), ("roles", "String"), ("cpu_percent", "Float32"),
    ("host_cpu_percent", "Float32"), ("rss_bytes", "UInt64"), ("host_mem_percent", "Float32"),
    ("threads", "UInt32"), ("gpu_util_percent", "Float32"), ("gpu_mem_bytes", "Int64"),
    ("routed_edge", "UInt64"), ("routed_cloud", "UInt64"), ("detected_edge", "UInt64"),
    ("detected_cloud", "UInt64"), ("dead_letters", "UInt64"), ("send_failures", "UInt64"),
    ("frames_dropped", "UInt64"), ("frames_skipped", "UInt64"), ("frames_shed", "UInt64"),
    ("frames_reused", "UInt64"),
    ("telemetry_rows", "UInt64"),
    ("store_retries", "UInt64"),
]

QUALITY_COLUMNS: list[tuple[str, str]] = [
    ("ts_ms", "UInt64"), ("node", "String"), ("camera", "String"), ("seq", "UInt64"),
    ("edge_model_id", "String"), ("edge_model_version", "String"),
    ("cloud_model_id", "String"), ("cloud_model_version", "String"),
    ("agreement", "Float32"), ("edge_boxes", "UInt16"), ("cloud_boxes", "UInt16"),
    ("edge_mean_score", "Float32"), ("cloud_mean_score", "Float32"),
]

FRAMES = Table("telemetry_frames", TelemetryRecord, FRAME_COLUMNS + SOURCE_COLUMNS,
               "tier, camera, ts_ms, seq", _plain([c for c, _ in FRAME_COLUMNS]))
WINDOWS = Table("telemetry_windows", WindowRecord, WINDOW_COLUMNS + SOURCE_COLUMNS,
                "tier, camera, ts_ms", _window_row)
NODES = Table("telemetry_nodes", NodeRecord, NODE_COLUMNS + SOURCE_COLUMNS,
              "node, ts_ms", _plain([c for c, _ in NODE_COLUMNS]))
QUALITY = Table("telemetry_quality", QualityRecord, QUALITY_COLUMNS + SOURCE_COLUMNS,
                "camera, ts_ms", _plain([c for c, _ in QUALITY_COLUMNS]))
TABLES = [FRAMES, WINDOWS, NODES, QUALITY]
FRAMES_TABLE = FRAMES.name

# fps is frames answered over the seconds their windows cover: distinct window starts
# times the window length (see fps()); a bucket the worker ran only part of is not
# diluted, and a gap with no windows is no data, not zero. In SQL, over one group:
COVERED_S = "uniqExact(ts_ms) * max(window_s)"

# Named views for the common questions; plain SQL that 18.16 and current versions run.
# The offload ratio is the cloud share (as in /metrics and the UI) everywhere.
VIEWS: dict[str, str] = {
    "p95_latency_per_tier_minute": """
SELECT toStartOfMinute(ts) AS minute, tier,
       quantileExactWeighted(0.5)(v, w) AS p50_ms,
       quantileExactWeighted(0.95)(v, w) AS p95_ms,
       quantileExactWeighted(0.99)(v, w) AS p99_ms
FROM {db}.telemetry_windows ARRAY JOIN total_ms_values AS v, total_ms_weights AS w
GROUP BY minute, tier ORDER BY minute, tier""",
    "cloud_share_per_minute": """
SELECT toStartOfMinute(ts) AS minute, sum(frames) AS n_frames,
       sumIf(frames, tier = 'cloud') AS cloud_frames,
       sumIf(frames, tier = 'cloud') / sum(frames) AS offload_ratio
FROM {db}.telemetry_windows GROUP BY minute ORDER BY minute""",
    "fps_per_camera_minute": f"""
SELECT toStartOfMinute(ts) AS minute, camera, sum(frames) / ({COVERED_S}) AS fps,
       sum(detections) / sum(frames) AS boxes_per_frame
FROM {{db}}.telemetry_windows GROUP BY minute, camera ORDER BY minute, camera""",
    "duplicates_per_minute": """
SELECT toStartOfMinute(ts) AS minute, sum(frames) AS n_frames,
       sum(frames) - sum(distinct_frames) AS reprocessed_estimate
FROM {db}.telemetry_windows GROUP BY minute ORDER BY minute""",
    "agreement_per_camera_minute": """
SELECT toStartOfMinute(ts) AS minute, camera, edge_model_version, count() AS pairs,
       avg(agreement) AS mean_agreement
FROM {db}.telemetry_quality GROUP BY minute, camera, edge_model_version
ORDER BY minute, camera""",
    "node_health": """
SELECT node, max(ts) AS last_seen, argMax(cpu_percent, ts_ms) AS last_cpu_percent,
       argMax(rss_bytes, ts_ms) AS last_rss_bytes, argMax(dead_letters, ts_ms) AS total_dead_letters,
       argMax(frames_dropped, ts_ms) AS total_frames_dropped,
       argMax(frames_skipped, ts_ms) AS total_frames_skipped
FROM {db}.telemetry_nodes GROUP BY node ORDER BY node""",
}


def latency_quantiles_sql(database: str, bucket: str, since_ms: int) -> str:
    """p50/p95/p99 of end-to-end latency per (``bucket`` expression, tier) since
    ``since_ms``, merged from the window sketches: columns t, tier, p50, p95, p99."""
    return (f"SELECT {bucket} AS t, tier, quantileExactWeighted(0.5)(v, w), "
            f"quantileExactWeighted(0.95)(v, w), quantileExactWeighted(0.99)(v, w) "
            f"FROM {database}.telemetry_windows "
            f"ARRAY JOIN total_ms_values AS v, total_ms_weights AS w "
            f"WHERE ts_ms >= {since_ms} GROUP BY t, tier ORDER BY t, tier")


def fps(frames: float, window_starts: Iterable[int], window_s: float) -> float:
    """Frames answered per second: ``frames`` over the seconds that their windows cover,
    the number of distinct window starts times ``window_s`` (:data:`COVERED_S` in SQL);
    0 when no window covers them. Reused (carried-forward) frames are not in ``frames``.

    A 60 s bucket in which the worker ran for two 10 s windows, 50 frames in all:

    >>> fps(50, [1_000_000, 1_010_000, 1_010_000], 10)
    2.5
    >>> fps(0, [], 10)
    0.0
    """
    covered = len(set(window_starts)) * window_s
    return frames / covered if covered > 0 else 0.0


def offload_ratio(frames_per_tier: Mapping[str, float]) -> float:
    """The offload ratio: the cloud tier's share of the frames answered (0 when none).

    >>> offload_ratio({"edge": 30, "cloud": 10})
    0.25
    """
    total = sum(frames_per_tier.values())
    return frames_per_tier.get("cloud", 0.0) / total if total else 0.0


def throughput_sql(database: str, bucket: str, since_ms: int) -> str:
    """Per (``bucket`` expression, tier) since ``since_ms``: columns t, tier, frames, the
    window starts, window_s; :func:`throughput` turns the rows into fps."""
    return (f"SELECT {bucket} AS t, tier, sum(frames), groupUniqArray(ts_ms), max(window_s) "
            f"FROM {database}.telemetry_windows WHERE ts_ms >= {since_ms} "
            f"GROUP BY t, tier ORDER BY t, tier")


def throughput(rows: Iterable[Sequence[Any]]) -> list[tuple[Any, str, float]]:
    """``(t, tier, fps)`` from :func:`throughput_sql`'s rows. Every tier of a bucket is
    divided by the seconds that the bucket's windows cover, whichever tier they hold, so
    the tiers' rates add up to the stream's rate.

    One bucket, two 10 s windows; the cloud answered in only one of them:

    >>> throughput([(0, "cloud", 5, [0], 10), (0, "edge", 35, [0, 10_000], 10)])
    [(0, 'cloud', 0.25), (0, 'edge', 1.75)]
    """
    rows = list(rows)
    starts: dict[Any, set[int]] = {}
    window_s: dict[Any, float] = {}
    for t, _, _, ts, w in rows:
        starts.setdefault(t, set()).update(int(x) for x in ts)
        window_s[t] = max(window_s.get(t, 0.0), float(w))
    return [(t, str(tier), fps(float(n), starts[t], window_s[t])) for t, tier, n, _, _ in rows]


def ddl(database: str) -> list[str]:
    """Statements that create the database, tables and views (idempotent)."""
    stmts = [f"CREATE DATABASE IF NOT EXISTS {database}"]
    stmts += [t.ddl(database) for t in TABLES]
    stmts += [f"CREATE VIEW IF NOT EXISTS {database}.{name} AS {sql.format(db=database).strip()}"
              for name, sql in VIEWS.items()]
    return stmts


def partitions_sql(database: str) -> str:
    """The day partitions of every telemetry table (for retention)."""
    names = ", ".join(f"'{t.name}'" for t in TABLES)
    return (f"SELECT DISTINCT table, partition FROM system.parts WHERE database = '{database}' "
            f"AND table IN ({names}) AND active ORDER BY table, partition")


def drop_partition_sql(database: str, table: str, partition: str) -> str:
    """Retention: drop one day of one table (works on 18.16 and current versions)."""
    return f"ALTER TABLE {database}.{table} DROP PARTITION '{partition}'"
