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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

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


class Positions:
    """The source positions of a batch of rows, kept as three columns (what the store
    inserts), with each partition's lowest and highest offset (what the sink checks
    against its watermarks, and what the loader commits). Cheaper per row than a
    :class:`Position` each: the loader adds one per consumed message.

    >>> p = Positions.of([Position("t", 0, 7), Position("t", 1, 3), Position("t", 0, 5)])
    >>> len(p), p.offsets, p.lowest(), p.highest()
    (3, [7, 3, 5], {('t', 0): 5, ('t', 1): 3}, {('t', 0): 7, ('t', 1): 3})
    """

    __slots__ = ("topics", "partitions", "offsets", "_low", "_high")

    def __init__(self) -> None:
        self.topics: list[str] = []
        self.partitions: list[int] = []
        self.offsets: list[int] = []
        self._low: dict[tuple[str, int], int] = {}
        self._high: dict[tuple[str, int], int] = {}

    @classmethod
    def of(cls, positions: Iterable[Position]) -> Positions:
        out = cls()
        for p in positions:
            out.add(p.topic, p.partition, p.offset)
        return out

    def add(self, topic: str, partition: int, offset: int) -> None:
        self.topics.append(topic)
        self.partitions.append(partition)
        self.offsets.append(offset)
        key = (topic, partition)
        high = self._high.get(key)
        if high is None:
            self._low[key] = self._high[key] = offset
        elif offset > high:
            self._high[key] = offset
        elif offset < self._low[key]:
            self._low[key] = offset

    def __len__(self) -> int:
        return len(self.offsets)

    def lowest(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> its lowest offset in the batch."""
        return dict(self._low)

    def highest(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> its highest offset in the batch."""
        return dict(self._high)


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

    def write(self, table: Table, rows: Sequence[tuple],
              positions: Positions | Sequence[Position]) -> int:
        """Insert the rows not stored yet; return how many were inserted. Raises
        StoreError (and forgets its watermarks) when the store fails."""
        if not isinstance(positions, Positions):
            positions = Positions.of(positions)
        if len(rows) != len(positions):
            raise ValueError(f"{len(rows)} rows but {len(positions)} positions")
        with self._lock:
            return self._write(table, rows, positions)

    def _write(self, table: Table, rows: Sequence[tuple], positions: Positions) -> int:
        low = positions.lowest()
        try:
            for topic in {t for t, _ in low}:
                if (table.name, topic) not in self._loaded:
                    self._load_marks(table, topic)
                    self._loaded.add((table.name, topic))
            marks = {key: self._marks.get((table.name, *key), -1) for key in low}
            if all(low[key] > mark for key, mark in marks.items()):
                data = self._columns(table, rows, positions)  # the usual case: all new
            else:  # a retry or a replay: keep the rows above their partition's mark
                keep = [i for i, (t, p, o) in enumerate(zip(
                    positions.topics, positions.partitions, positions.offsets, strict=True))
                    if o > marks[(t, p)]]
                kept = Positions()
                for i in keep:
                    kept.add(positions.topics[i], positions.partitions[i], positions.offsets[i])
                data = self._columns(table, [rows[i] for i in keep], kept)
            fresh = len(data[-1])
            if fresh:
                self.store.insert_columns(table.name, table.columns, data)
        except StoreError:
            self.failures += 1
            self._forget(table)
            raise
        for key, high in positions.highest().items():
            self._marks[(table.name, *key)] = max(marks[key], high)
        self.rows_written += fresh
        self.rows_skipped += len(positions) - fresh
        return fresh

    @staticmethod
    def _columns(table: Table, rows: Sequence[tuple], positions: Positions) -> list[Sequence[Any]]:
        """Rows and their positions as the table's columns (one transpose, in C)."""
        data: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [
            () for _ in range(len(table.columns) - 3)]
        if len(data) != len(table.columns) - 3:
            raise ValueError(f"rows for {table.name} have {len(data)} values; its columns "
                             f"are {table.columns[:-3]}")
        return [*data, positions.topics, positions.partitions, positions.offsets]

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
