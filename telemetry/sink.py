"""The telemetry sink: batched, retried, exactly-once inserts of topic records.

Each row carries its source position (topic, partition, offset). Before inserting into
a table, the sink drops rows at or below the highest offset already stored for their
partition (learnt from ClickHouse on first sight of a partition, and again after any
failed insert, since a failed insert may have landed). One MergeTree insert of less than
``max_insert_block_size`` rows is atomic, and a partition is fed by one sink at a time,
so a retried batch or a batch re-consumed after a crash is stored once.

The worker calls :meth:`forget` when partitions are assigned, so a partition that moved
is checked against what its last owner stored. Caveat: during a rebalance, a batch the
old owner is still inserting can land after the new owner read the watermark; its rows
are then stored twice. Queries that must be
exact can de-duplicate on (src_topic, src_partition, src_offset).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from autosteer.errors import StoreError
from autosteer.processors.ingest import Backoff
from autosteer.telemetry.schema import Table
from autosteer.telemetry.store import TelemetryStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Position:
    topic: str
    partition: int
    offset: int


class Sink:
    """Write rows with their source positions into ``store``, exactly once."""

    def __init__(self, store: TelemetryStore) -> None:
        self.store = store
        self._marks: dict[tuple[str, str, int], int] = {}  # (table, topic, partition) -> offset
        self._loaded: set[tuple[str, str]] = set()  # (table, topic) whose marks were read
        self._lock = threading.RLock()
        self.rows_written = 0
        self.rows_skipped = 0
        self.failures = 0

    def _load_marks(self, table: Table, topic: str) -> None:
        _, rows = self.store.query(
            f"SELECT src_partition, max(src_offset) FROM {self.store.database}.{table.name} "
            f"WHERE src_topic = '{topic}' GROUP BY src_partition")
        for partition, offset in rows:
            self._marks[(table.name, topic, int(partition))] = int(offset)

    def _forget(self, table: Table) -> None:
        for k in [k for k in self._marks if k[0] == table.name]:
            del self._marks[k]
        self._loaded = {k for k in self._loaded if k[0] != table.name}

    def forget(self) -> None:
        """Drop every watermark (after a rebalance); they are read again when needed.
        Safe to call from another thread than :meth:`write`'s."""
        with self._lock:
            self._marks.clear()
            self._loaded.clear()

    def write(self, table: Table, rows: Sequence[tuple], positions: Sequence[Position]) -> int:
        """Insert the rows not stored yet; return how many were inserted. Raises
        StoreError (and forgets its watermarks) when the store fails."""
        with self._lock:
            return self._write(table, rows, positions)

    def _write(self, table: Table, rows: Sequence[tuple], positions: Sequence[Position]) -> int:
        try:
            for topic in {p.topic for p in positions}:
                if (table.name, topic) not in self._loaded:
                    self._load_marks(table, topic)
                    self._loaded.add((table.name, topic))
            fresh, marks = [], {}
            for row, p in zip(rows, positions, strict=True):
                key = (table.name, p.topic, p.partition)
                if p.offset <= self._marks.get(key, -1):
                    self.rows_skipped += 1
                    continue
                fresh.append((*row, p.topic, p.partition, p.offset))
                marks[key] = max(marks.get(key, -1), p.offset)
            if fresh:
                self.store.insert(table.name, table.columns, fresh)
        except StoreError:
            self.failures += 1
            self._forget(table)
            raise
        self._marks.update(marks)
        self.rows_written += len(fresh)
        return len(fresh)

    def write_until_done(self, table: Table, rows: Sequence[tuple],
                         positions: Sequence[Position], *,
                         sleep: Callable[[float], None] = time.sleep,
                         give_up: Callable[[], bool] = lambda: False) -> int:
        """:meth:`write`, retried with exponential backoff while the store is down.

        The caller's stream waits meanwhile (backpressure); Kafka keeps the data."""
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                return self.write(table, rows, positions)
            except StoreError as exc:
                if give_up():
                    raise
                delay = backoff.next()
                log.warning("telemetry insert into %s failed (%s); retry in %.1fs",
                            table.name, exc, delay)
                sleep(delay)
