"""Both telemetry stores (ClickHouse 18.16 server and chdb's current engine) pass the
same checks: DDL, inserts, SQL answers, read-only guard."""

from __future__ import annotations

import pytest
from autosteer.errors import QueryRejected
from autosteer.telemetry.schema import FRAME_COLUMNS, FRAMES_TABLE
from autosteer.telemetry.store import TelemetryStore

pytestmark = pytest.mark.integration

COLUMNS = [c for c, _ in FRAME_COLUMNS]



def rows(n: int, tier: str, base_ms: int = 1_763_000_000_000) -> list[tuple]:
    out = []
    for i in range(n):
        rec = {"ts_ms": base_ms + i * 100, "node": "n1", "camera": f"cam{i % 3}", "seq": i,
               "tier": tier, "model_id": "m", "model_version": "1", "batch_size": 4,
               "queue_depth": i % 5, "ingest_ms": 1.0, "route_ms": 0.5, "queue_ms": 2.0,
               "decode_ms": 3.0, "infer_ms": 20.0 + i, "total_ms": 30.0 + i,
               "n_detections": i % 7, "max_score": 0.9, "mean_score": 0.6, "sample_weight": 1.0,
               "link_ms": 1.5}
        out.append(tuple(rec[c] for c in COLUMNS))
    return out


def test_setup_is_idempotent(store: TelemetryStore) -> None:
    store.setup()  # the fixture ran it once already
    _, rows = store.query(f"EXISTS TABLE {store.database}.{FRAMES_TABLE}")
    assert rows[0][0] == 1


def test_rows_are_queryable_with_sql(store: TelemetryStore) -> None:
    store.insert(FRAMES_TABLE, COLUMNS, rows(100, "edge") + rows(50, "cloud"))
    cols, res = store.query(
        f"SELECT tier, count() AS n, max(total_ms) AS worst, "
        f"toDate(min(ts)) AS day FROM {store.database}.{FRAMES_TABLE} "
        "GROUP BY tier ORDER BY tier", readonly=True)
    assert cols == ["tier", "n", "worst", "day"]
    assert [(r[0], r[1], round(r[2])) for r in res] == [("cloud", 50, 79), ("edge", 100, 129)]
    assert str(res[0][3]) == "2025-11-13"


def test_a_columnar_insert_stores_what_a_row_insert_does(store: TelemetryStore) -> None:
    """The sink's path (insert_columns, one sequence per column) against insert (rows)."""
    edge, cloud = rows(20, "edge"), rows(10, "cloud")
    store.insert(FRAMES_TABLE, COLUMNS, edge)
    store.insert_columns(FRAMES_TABLE, COLUMNS, list(zip(*cloud, strict=True)))
    store.insert_columns(FRAMES_TABLE, COLUMNS, [() for _ in COLUMNS])  # nothing to insert
    _, res = store.query(f"SELECT tier, count(), sum(seq), round(sum(total_ms), 1), "
                         f"groupUniqArray(camera) FROM {store.database}.{FRAMES_TABLE} "
                         "GROUP BY tier ORDER BY tier")
    assert [(r[0], r[1], r[2], r[3], sorted(r[4])) for r in res] == [
        ("cloud", 10, 45, 345.0, ["cam0", "cam1", "cam2"]),
        ("edge", 20, 190, 790.0, ["cam0", "cam1", "cam2"])]
    with pytest.raises(ValueError, match="columns of values"):
        store.insert_columns(FRAMES_TABLE, COLUMNS, list(zip(*cloud, strict=True))[:-1])


def test_unqualified_table_names_mean_the_telemetry_database(store: TelemetryStore) -> None:
    store.insert(FRAMES_TABLE, COLUMNS, rows(30, "edge"))
    _, res = store.query(f"SELECT count() FROM {FRAMES_TABLE}", readonly=True)
    assert res == [(30,)]
    _, res = store.query("SELECT currentDatabase()", readonly=True)
    assert res == [(store.database,)]


def test_a_server_query_before_any_worker_says_who_creates_the_database(clickhouse) -> None:
    from autosteer.errors import StoreError
    from autosteer.telemetry.store import ServerStore
    from helpers import unique

    store = ServerStore(clickhouse.url(unique("db")))  # `autosteer sql` before any worker
    try:
        with pytest.raises(StoreError, match="a worker with the sink role creates it"):
            store.query(f"SELECT count() FROM {FRAMES_TABLE}", readonly=True)
        store.setup()  # a worker came up: the same session now finds the table
        assert store.query(f"SELECT count() FROM {FRAMES_TABLE}", readonly=True)[1] == [(0,)]
    finally:
        store.close()


def test_quantiles_and_buckets_work_on_both_versions(store: TelemetryStore) -> None:
    store.insert(FRAMES_TABLE, COLUMNS, rows(200, "edge"))
    _, res = store.query(
        "SELECT toDateTime(intDiv(toUInt32(ts), 10) * 10) AS bucket, count(), "
        f"quantileTDigest(0.95)(total_ms) FROM {store.database}.{FRAMES_TABLE} "
        "GROUP BY bucket ORDER BY bucket", readonly=True)
    assert sum(r[1] for r in res) == 200
    assert len(res) == 2


@pytest.mark.parametrize("sql", ["DROP TABLE x", "SELECT 1; DROP TABLE x",
                                 "INSERT INTO t VALUES (1)", "SELECT 1 INTO OUTFILE '/tmp/x'"])
def test_read_only_guard(store: TelemetryStore, sql: str) -> None:
    with pytest.raises(QueryRejected):
        store.query(sql, readonly=True)



def test_every_named_view_runs(store: TelemetryStore) -> None:
    from autosteer.telemetry.schema import VIEWS

    for name in VIEWS:
        cols, _ = store.query(f"SELECT * FROM {store.database}.{name}", readonly=True)
        assert cols, name


def test_retention_drops_old_day_partitions(store: TelemetryStore) -> None:
    from autosteer.telemetry.schema import drop_partition_sql, partitions_sql

    store.insert(FRAMES_TABLE, COLUMNS + ["src_topic", "src_partition", "src_offset"],
                 [(*r, "t", 0, i) for i, r in enumerate(rows(10, "edge"))])
    _, parts = store.query(partitions_sql(store.database))
    assert ("telemetry_frames", "2025-11-13") in [tuple(p) for p in parts]
    store.query(drop_partition_sql(store.database, "telemetry_frames", "2025-11-13"))
    _, n = store.query(f"SELECT count() FROM {store.database}.{FRAMES_TABLE}")
    assert n[0][0] == 0


def test_tables_of_an_older_version_get_the_new_columns(store: TelemetryStore) -> None:
    from autosteer.telemetry.store import migrate

    db = store.database
    store.query(f"ALTER TABLE {db}.{FRAMES_TABLE} DROP COLUMN sample_weight")
    ran = migrate(store)
    assert ran == [f"ALTER TABLE {db}.{FRAMES_TABLE} ADD COLUMN sample_weight Float32"]
    assert migrate(store) == []
