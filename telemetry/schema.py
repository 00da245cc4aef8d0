"""ClickHouse DDL for telemetry, valid on ClickHouse 18.16 (Debian) and current versions.

Only features both have: MergeTree with a custom ``PARTITION BY`` on a Date, DEFAULT
expressions, plain types (no DateTime64, Map, LowCardinality, TTL or codecs).
Retention is ``ALTER TABLE ... DROP PARTITION`` on old days.
"""

from __future__ import annotations

FRAMES_TABLE = "telemetry_frames"

# (column, ClickHouse type) for what producers insert; the record field of the same name.
FRAME_COLUMNS: list[tuple[str, str]] = [
    ("ts_ms", "UInt64"),
    ("node", "String"),
    ("camera", "String"),
    ("seq", "UInt64"),
    ("tier", "String"),
    ("model_id", "String"),
    ("model_version", "String"),
    ("batch_size", "UInt16"),
    ("queue_depth", "UInt32"),
    ("ingest_ms", "Float32"),
    ("route_ms", "Float32"),
    ("queue_ms", "Float32"),
    ("decode_ms", "Float32"),
    ("infer_ms", "Float32"),
    ("total_ms", "Float32"),
    ("n_detections", "UInt16"),
    ("max_score", "Float32"),
    ("mean_score", "Float32"),
]


def ddl(database: str) -> list[str]:
    """Statements that create the database and tables (idempotent)."""
    cols = ",\n    ".join(f"{name} {typ}" for name, typ in FRAME_COLUMNS)
    return [
        f"CREATE DATABASE IF NOT EXISTS {database}",
        f"""CREATE TABLE IF NOT EXISTS {database}.{FRAMES_TABLE} (
    {cols},
    ts DateTime DEFAULT toDateTime(intDiv(ts_ms, 1000)),
    date Date DEFAULT toDate(toDateTime(intDiv(ts_ms, 1000)))
) ENGINE = MergeTree()
PARTITION BY date
ORDER BY (tier, camera, ts_ms, seq)""",
    ]
