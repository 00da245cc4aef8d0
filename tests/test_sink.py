"""The exactly-once telemetry sink on both stores, and through a ClickHouse outage."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from autosteer.errors import StoreError
from autosteer.infra.clickhouse import LocalClickHouse
from autosteer.infra.process import free_port
from autosteer.settings import Settings
from autosteer.telemetry.schema import FRAMES
from autosteer.telemetry.sink import Position, Positions, Sink
from autosteer.telemetry.store import ServerStore, TelemetryStore
from autosteer.topics.names import TopicNames
from autosteer.topics.records import TelemetryRecord, now_ms
from helpers import Worker, produce, unique, wait_for

pytestmark = pytest.mark.integration


def record(seq: int, node: str = "n1") -> TelemetryRecord:
    return TelemetryRecord(
        ts_ms=now_ms(), node=node, camera="cam1", seq=seq, tier="edge", model_id="m",
        model_version="1", batch_size=1, queue_depth=0, ingest_ms=1, route_ms=1, queue_ms=1,
        decode_ms=1, infer_ms=10, total_ms=20 + seq % 50, n_detections=2, max_score=0.9,
        mean_score=0.7)



def stored(store: TelemetryStore) -> tuple[int, int]:
    _, rows = store.query(f"SELECT count(), uniqExact(src_partition, src_offset) "
                          f"FROM {store.database}.{FRAMES.name}")
    return int(rows[0][0]), int(rows[0][1])


def test_retried_and_replayed_batches_are_stored_once(store: TelemetryStore) -> None:
    recs = [record(i) for i in range(100)]
    rows = [FRAMES.to_row(r) for r in recs]
    pos = [Position("t.telemetry", i % 2, i // 2) for i in range(100)]
    sink = Sink(store)
    assert sink.write(FRAMES, rows[:60], pos[:60]) == 60
    assert sink.write(FRAMES, rows[:60], pos[:60]) == 0  # a retry of a batch that landed
    # a new sink (the worker restarted) re-reads the topic from an older commit
    again = Sink(store)
    assert again.write(FRAMES, rows, pos) == 40
    assert again.rows_skipped == 60
    assert again.write(FRAMES, rows[50:], Positions.of(pos[50:])) == 0  # marks moved on
    assert stored(store) == (100, 100)
    # another topic's offsets are its own
    assert again.write(FRAMES, rows[:5], [Position("other", 0, i) for i in range(5)]) == 5


def clickhouse_for_this_test(tmp_path: Path, request: pytest.FixtureRequest) -> LocalClickHouse:
    """A private ClickHouse server this test may stop and start; stopped at teardown."""
    ch = LocalClickHouse(free_port(), free_port(), tmp_path)
    request.addfinalizer(ch.stop)
    ch.start()
    return ch


def test_a_failed_insert_raises_store_error_and_is_retried(
        tmp_path: Path, request: pytest.FixtureRequest, measurements: dict) -> None:
    ch = clickhouse_for_this_test(tmp_path, request)
    store = ServerStore(ch.url(unique("db")))
    try:
        store.setup()
        sink = Sink(store)
        rows = [FRAMES.to_row(record(i)) for i in range(10)]
        pos = [Position("t", 0, i) for i in range(10)]
        ch.stop()
        with pytest.raises(StoreError):
            sink.write(FRAMES, rows, pos)
        waits: list[float] = []
        restart = threading.Timer(2.0, ch.start)
        restart.start()
        assert sink.write_until_done(FRAMES, rows, pos, sleep=lambda d: (waits.append(d),
                                                                         time.sleep(d))) == 10
        restart.join()
        assert waits[:2] == [0.5, 1.0]
        assert stored(store) == (10, 10)
    finally:
        store.close()
        ch.stop()


def test_clickhouse_down_for_60s_under_load_loses_and_duplicates_nothing(
        make_settings: Callable[..., Settings], start_worker: Callable[[Settings], Worker],
        tmp_path: Path, request: pytest.FixtureRequest, measurements: dict) -> None:
    ch = clickhouse_for_this_test(tmp_path, request)
    database = unique("db")
    s = make_settings(store="server", clickhouse_url=ch.url(database), roles="sink",
                      sink_flush_s=0.5)
    topic = TopicNames(s.topic_prefix).telemetry
    start_worker(s)
    node = unique("n")
    sent = 0
    stop = threading.Event()

    def load() -> None:  # ~100 rows/s for the whole test
        nonlocal sent
        while not stop.is_set():
            batch = [record(sent + i, node) for i in range(20)]
            produce(s, topic, [(node.encode(), r.dumps()) for r in batch])
            sent += len(batch)
            time.sleep(0.2)

    loader = threading.Thread(target=load)
    loader.start()
    store = ServerStore(s.clickhouse_url)
    try:
        wait_for(lambda: _count(store, node) > 0, 60, "first rows in ClickHouse")
        ch.stop()
        down_at = sent
        time.sleep(60)  # scenario: ClickHouse stays down for 60 s under load
        ch.start()
        back_at = time.monotonic()
        produced_while_down = sent - down_at
        time.sleep(5)  # scenario: the load goes on 5 s after ClickHouse is back
        stop.set()
        loader.join()
        wait_for(lambda: _count(store, node) >= sent, 90, f"all {sent} rows after the outage")
        all_in = time.monotonic()
        time.sleep(2)  # scenario: a late duplicate would land within 2 s
        _, rows = store.query(
            f"SELECT count(), uniqExact(seq), min(seq), max(seq), "
            f"uniqExact(src_partition, src_offset) FROM {database}.{FRAMES.name} "
            f"WHERE node = '{node}'")
        assert produced_while_down > 1000
        assert tuple(rows[0]) == (sent, sent, 0, sent - 1, sent), "lost or duplicated rows"
        measurements["clickhouse_down_60s"] = {
            "rows": sent, "rows_produced_while_down": produced_while_down,
            "lost": sent - int(rows[0][1]), "duplicates": int(rows[0][0]) - int(rows[0][4]),
            "all_stored_after_restart_s": round(all_in - back_at, 1)}
    finally:
        stop.set()
        loader.join()
        store.close()
        ch.stop()


def _count(store: ServerStore, node: str) -> int:
    try:
        _, rows = store.query(f"SELECT count() FROM {store.database}.{FRAMES.name} "
                              f"WHERE node = '{node}'")
        return int(rows[0][0])
    except StoreError:
        return 0
