"""The sink's Kafka side: a plain confluent-kafka consumer in a thread, in batches.

A Faust agent hands over one event at a time (about 3.4k telemetry messages/s measured
here, even with ``take_events``); the loader takes up to ``sink_batch_rows`` messages
from librdkafka, ``CHUNK`` per ``consume`` call, turns each chunk into rows for their
table as it arrives (parsing overlaps the fetch), stores the batch with
:class:`~autosteer.telemetry.sink.Sink` (exactly once) and only then commits their
offsets. While ClickHouse is down it retries the same batch and stops consuming; Kafka
keeps the rest (the consumer stays in its group for up to an hour without polling). Malformed messages go to the dead-letter topic with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from autosteer.errors import StoreError
from autosteer.settings import Settings
from autosteer.streams.supervise import Health, SupervisedThread
from autosteer.telemetry.schema import Table
from autosteer.telemetry.sink import Positions, Sink
from autosteer.topics.records import DeadLetter
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

log = logging.getLogger(__name__)

CHUNK = 1000  # messages per consume call: parsed while librdkafka fetches the next


class TelemetryLoader(SupervisedThread):
    """Consume ``tables`` (topic -> Table) and store them through ``sink`` until stopped.
    A crash restarts it with backoff; it commits only stored batches, so Kafka
    redelivers what it held."""

    def __init__(self, settings: Settings, tables: dict[str, Table], sink: Sink,
                 deadletter_topic: str, *, group: str | None = None,
                 health: Health | None = None) -> None:
        super().__init__("telemetry-loader", health, settings.agent_backoff_s)
        self.settings = settings
        self.tables = tables
        self.sink = sink
        self.deadletter_topic = deadletter_topic
        self.group = group or f"{settings.topic_prefix}-sink"
        self.rows = 0
        self.dead_letters = 0
        self.batches = 0
        self._writer_error: BaseException | None = None

    def _on_assign(self, consumer: Any, partitions: Any) -> None:
        # a partition that moved here may hold rows its last owner stored since our sink
        # read its watermarks: read them again before the next insert
        self.sink.forget()

    def work(self) -> None:
        conf = self.settings.consumer_config(self.group)
        conf.update({"enable.auto.commit": False,
                     # a fetch the broker holds while the topics are idle returns after
                     # this long at most: the wait before the first rows of a burst
                     "fetch.wait.max.ms": 25,
                     "queued.max.messages.kbytes": 65536,
                     # the loader does not poll while it retries a batch during a
                     # ClickHouse outage: stay in the group for an hour of that
                     "max.poll.interval.ms": 3_600_000})
        consumer = Consumer(conf)
        producer = Producer(self.settings.producer_config())
        consumer.subscribe(list(self.tables), on_assign=self._on_assign)
        # one batch is parsed while the one before it is inserted (queue of one)
        handoff: queue.Queue[tuple[dict[tuple[str, int], int], dict] | None] = queue.Queue(
            maxsize=1)
        writer = threading.Thread(target=self._write_loop, args=(handoff, consumer),
                                  name="telemetry-writer", daemon=True)
        writer.start()
        try:
            while not self.halt.is_set() and writer.is_alive():
                self.progress()
                batch = self._take(consumer, producer)
                if batch is None:
                    continue
                while not self.halt.is_set():
                    try:
                        handoff.put(batch, timeout=0.5)
                        break
                    except queue.Full:
                        continue
            if not self.halt.is_set():  # the writer died: restart both (nothing committed)
                raise RuntimeError(f"telemetry writer stopped: {self._writer_error!r}")
        finally:
            with contextlib.suppress(queue.Full):
                handoff.put(None, timeout=1)
            writer.join(30)
            producer.flush(10)
            consumer.close()

    def _write_loop(self, handoff: queue.Queue, consumer: Consumer) -> None:
        """Insert batches in order; commit each batch's offsets after its insert."""
        while True:
            batch = handoff.get()
            if batch is None:
                return
            offsets, by_table = batch
            try:
                self._insert(by_table)
            except StoreError:  # only when stopping during an outage: do not commit
                return
            except BaseException as exc:  # noqa: BLE001 - the loader restarts both threads
                self._writer_error = exc
                log.exception("telemetry writer stopped")
                return
            try:
                consumer.commit(offsets=[TopicPartition(tp, p, o + 1)
                                         for (tp, p), o in offsets.items()],
                                asynchronous=False)
            except KafkaException as exc:
                # e.g. the partitions moved during a very long outage; the rows are
                # stored, and the next owner skips them by their offsets
                log.warning("telemetry offsets not committed: %s", exc)
            self.batches += 1

    def _take(self, consumer: Consumer, producer: Producer) -> tuple[
            dict[tuple[str, int], int], dict] | None:
        """Up to ``sink_batch_rows`` messages, parsed ``CHUNK`` at a time as they arrive
        (parsing overlaps the fetch): stop early when the topics are drained (the cached
        high watermarks say so, or a short poll brings nothing) or ``sink_flush_s`` after
        the first message. None when nothing came."""
        limit = self.settings.sink_batch_rows
        msgs = consumer.consume(min(limit, CHUNK), timeout=min(1.0, self.settings.sink_flush_s))
        if not msgs:
            return None
        deadline = time.monotonic() + self.settings.sink_flush_s
        parsed = parse_batch(msgs, self.tables)
        n = len(msgs)
        while n < limit and time.monotonic() < deadline and not drained(consumer):
            more = consumer.consume(min(limit - n, CHUNK), timeout=0.05)
            if not more:
                break
            parse_batch(more, self.tables, into=parsed)
            n += len(more)
        return self._offsets(parsed, producer)

    def _offsets(self, parsed: tuple[dict, list], producer: Producer) -> tuple[
            dict[tuple[str, int], int], dict]:
        """Dead-letter the malformed messages; the rows and positions per table, and the
        highest offset of each partition to commit (dead letters included)."""
        by_table, failed = parsed
        offsets: dict[tuple[str, int], int] = {}
        for _, positions in by_table.values():
            for key, high in positions.highest().items():
                offsets[key] = max(offsets.get(key, -1), high)
        for m, exc in failed:
            self._dead_letter(producer, m, exc)
            key = (m.topic(), m.partition())
            offsets[key] = max(offsets.get(key, -1), m.offset())
        return offsets, by_table

    def _insert(self, by_table: dict) -> None:
        for table in {t.name: t for t in self.tables.values()}.values():
            if table.name in by_table:
                rows, positions = by_table[table.name]
                self.rows += self.sink.write_until_done(
                    table, rows, positions, sleep=self.halt.wait, give_up=self.halt.is_set)

    def _dead_letter(self, producer: Producer, m: Any, exc: Exception) -> None:
        letter = DeadLetter.of(self.settings.node, m.topic(), m.partition(), m.offset(),
                               m.key(), m.value(), exc, self.settings.max_message_bytes)
        producer.produce(self.deadletter_topic, key=m.key(), value=letter.dumps())
        producer.poll(0)
        self.dead_letters += 1


Parsed = tuple[dict[str, tuple[list[tuple], Positions]], list[tuple[Any, Exception]]]


def parse_batch(msgs: Sequence[Any], tables: dict[str, Table], *,
                into: Parsed | None = None) -> Parsed:
    """Consumed messages (confluent-kafka ``Message``s) -> rows and source positions per
    table, and the messages that failed with why (whatever parsing one raised); added
    to ``into`` (an earlier result of the same batch) when given."""
    by_table, failed = into if into is not None else ({}, [])
    # per topic, looked up once per batch: how to parse, where rows and positions go
    targets: dict[str, tuple[Any, Any, Any, list[tuple], Positions]] = {}
    for m in msgs:
        err = m.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("telemetry consumer: %s", err)
            continue
        topic = m.topic()
        target = targets.get(topic)
        if target is None:
            table = tables[topic]
            rows, positions = by_table.setdefault(table.name, ([], Positions()))
            # the model's validator itself: Record.parse's wrapper costs a fifth of the
            # validation; a message it rejects goes through Record.parse for the reason
            target = targets[topic] = (table.record.__pydantic_validator__.validate_json,
                                       table.record.parse, table.to_row, rows, positions)
        validate, parse, to_row, rows, positions = target
        try:
            row = to_row(validate(m.value()))
        except Exception as exc:  # noqa: BLE001 - this message only: a dead letter
            failed.append((m, _reason(parse, m.value(), exc)))
            continue
        rows.append(row)
        positions.add(topic, m.partition(), m.offset())
    return by_table, failed


def drained(consumer: Consumer) -> bool:
    """Whether every assigned partition has been read up to its high watermark, as the
    consumer last heard it from the broker (no request); False when it does not know."""
    assigned = consumer.assignment()
    if not assigned:
        return False
    for tp in consumer.position(assigned):
        _, high = consumer.get_watermark_offsets(tp, cached=True)
        if tp.offset < 0 or high < 0 or tp.offset < high:
            return False
    return True


def _reason(parse: Any, value: Any, exc: Exception) -> Exception:
    """Why ``value`` failed: the RecordError that ``parse`` raises for it (which fields
    were wrong), else ``exc`` itself (e.g. a record that ``to_row`` could not take)."""
    try:
        parse(value)
    except Exception as why:  # noqa: BLE001 - whatever it is, it is the reason
        return why
    return exc
