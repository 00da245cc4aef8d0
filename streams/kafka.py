"""Plain confluent-kafka clients built from :class:`~autosteer.settings.Settings`: the
camera ingest's frame sender, the broker probe that decides the delivery guarantee, and
the detectors' transactional input and output when the broker can do exactly-once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from autosteer.settings import Settings
from autosteer.streams.bus import BusCounts, Headers
from autosteer.streams.pipeline import Rejected
from autosteer.streams.supervise import SupervisedThread
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, OffsetSpec

log = logging.getLogger(__name__)


class FrameSender:
    """A thread-safe, non-blocking producer for one topic (used by camera ingest).

    ``send`` raises BufferError when librdkafka's local queue is full: the caller counts
    that frame as dropped instead of blocking the camera.
    """

    def __init__(self, settings: Settings, topic: str) -> None:
        conf = settings.producer_config()
        conf.update({"queue.buffering.max.kbytes": 262144, "queue.buffering.max.messages": 10000})
        self.topic = topic
        self._producer = Producer(conf)
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0

    def _on_delivery(self, err, _msg) -> None:
        if err is not None:
            self.failed += 1
            log.warning("frame delivery to %s failed: %s", self.topic, err)
        else:
            self.delivered += 1

    def send(self, key: bytes, value: bytes) -> None:
        with self._lock:
            self._producer.produce(self.topic, value=value, key=key, on_delivery=self._on_delivery)
            self._producer.poll(0)

    def flush(self, timeout_s: float = 10.0) -> int:
        with self._lock:
            return self._producer.flush(timeout_s)


# --- what the broker can do ---------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """The delivery guarantee of the detectors' results, and why (``/status``, the UI)."""

    guarantee: str  # "exactly-once" | "at-least-once"
    reason: str

    @property
    def exactly_once(self) -> bool:
        return self.guarantee == "exactly-once"

    def as_dict(self) -> dict[str, str]:
        return {"guarantee": self.guarantee, "reason": self.reason}


NOT_PROBED = Delivery("at-least-once", "the broker was not probed (an in-process worker); "
                      "results carry the idempotent key camera:seq")
TXN_CONFIG = "transaction.state.log.replication.factor"


def probe_delivery(settings: Settings, timeout_s: float = 10.0) -> Delivery:
    """Exactly-once when the broker runs a transaction coordinator and a transactional
    producer can register with it; at-least-once (with the reason) otherwise.

    tansu accepts transactional requests but describes no broker configs (so no
    transaction coordinator) and its read_committed fetches returned nothing in a probe,
    so it stays at-least-once."""
    admin = AdminClient(settings.confluent_config())
    try:
        brokers = admin.list_topics(timeout=timeout_s).brokers
        res = admin.describe_configs([ConfigResource("broker", str(min(brokers)))])
        configs = next(iter(res.values())).result(timeout_s)
    except Exception as exc:  # noqa: BLE001 - any failure means: no proof of transactions
        return Delivery("at-least-once", f"could not describe the broker's configs ({exc}); "
                        "results carry the idempotent key camera:seq")
    if TXN_CONFIG not in configs:
        return Delivery("at-least-once", "the broker runs no transaction coordinator (it "
                        f"describes no {TXN_CONFIG}; tansu does not): results carry the "
                        "idempotent key camera:seq")
    producer = Producer({**settings.confluent_config(),
                         "transactional.id": f"{settings.topic_prefix}.{settings.node}.probe"})
    try:
        producer.init_transactions(timeout_s)
    except KafkaException as exc:
        return Delivery("at-least-once", f"the broker refused a transactional producer "
                        f"({exc}); results carry the idempotent key camera:seq")
    return Delivery("exactly-once", "the broker runs transactions: each detector batch's "
                    "results and its input offsets are committed in one transaction; "
                    "read them with isolation.level=read_committed")


# --- exactly-once detector input and output ---------------------------------------------


@dataclass(frozen=True)
class ConsumedMessage:
    """A confluent-kafka message in the shape of a Faust event's message (what
    :func:`~autosteer.streams.events.incoming` reads)."""

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int
    headers: list[tuple[str, bytes]] | None
    timestamp: float | None  # seconds, as Faust gives it
    time_in: float  # monotonic, when it was fetched


class ConsumedEvent:
    """A consumed message as the detector's steps take it; its offset is committed by the
    batch's transaction, so there is nothing to ack."""

    def __init__(self, m: Any, time_in: float) -> None:
        kind, ts = m.timestamp()
        self.message = ConsumedMessage(m.value(), m.key(), m.topic(), m.partition(),
                                       m.offset(), m.headers(),
                                       ts / 1000 if kind and ts > 0 else None, time_in)
        self.value = self.message.value

    def ack(self) -> None:
        pass

    def incref(self) -> None:  # the Faust event's reference count: nothing to hold here
        pass


class TransactionalBus:
    """A bus that keeps one batch's messages until :class:`TransactionalStream` commits
    them in a transaction (the detector's output when exactly-once is in force)."""

    def __init__(self, deadletter_topic: str, node: str, max_message_bytes: int) -> None:
        self._deadletter = deadletter_topic
        self._node = node
        self._max_bytes = max_message_bytes
        self._pending: list[tuple[str, bytes | None, bytes, Headers]] = []
        self.counts = BusCounts()

    async def publish(self, topic: str, key: bytes | None, value: bytes,
                      headers: Headers = None) -> None:
        self._pending.append((topic, key, value, headers))

    async def dead_letter(self, rejected: Sequence[Rejected]) -> None:
        for r in rejected:
            log.warning("dead letter from %s[%d]@%d: %s", r.item.topic, r.item.partition,
                        r.item.offset, r.error)
            letter = r.dead_letter(self._node, self._max_bytes)
            self._pending.append((self._deadletter, r.item.key, letter.dumps(), None))
        self.counts.dead_letters += len(rejected)

    def take(self) -> list[tuple[str, bytes | None, bytes, Headers]]:
        """The messages of the batch so far (and forget them)."""
        out, self._pending = self._pending, []
        return out


class TransactionalStream:
    """One detector's input and output on a broker with transactions.

    Its own consumer (group ``<prefix>-pipeline.<agent>``, no auto-commit) reads the tier
    topic; its transactional producer (``transactional.id`` ``<prefix>.<node>.<agent>``,
    stable across restarts of the worker) sends a batch's results and the batch's next
    offsets in one transaction. Every client call runs in one thread of its own, so the
    loop never blocks on the broker. If a transaction fails, both clients are closed and
    opened again: the new producer's ``init_transactions`` aborts whatever the old one
    left open, and the new consumer starts from the last committed offsets, so the batch
    is detected again and its first results are never seen by read_committed readers.
    """

    def __init__(self, settings: Settings, topic: str, agent: str,
                 timeout_s: float = 30.0) -> None:
        self.settings = settings
        self.topic = topic
        self.group = f"{settings.topic_prefix}-pipeline.{agent}"
        self.transactional_id = f"{settings.topic_prefix}.{settings.node}.{agent}"
        self.timeout_s = timeout_s
        self.bus = TransactionalBus(f"{settings.topic_prefix}.deadletter", settings.node,
                                    settings.max_message_bytes)
        self.committed = 0  # transactions committed
        self.aborted = 0  # transactions that failed (their batch is detected again)
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"txn-{agent}")
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self.closed = threading.Event()  # set by close(): nothing is opened again

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def _open(self) -> None:
        conf = self.settings.consumer_config(self.group)
        conf.update({"enable.auto.commit": False, "isolation.level": "read_committed"})
        producer = Producer({**self.settings.producer_config(),
                             "transactional.id": self.transactional_id,
                             "transaction.timeout.ms": 10_000, "linger.ms": 1})
        producer.init_transactions(self.timeout_s)  # fences and aborts a previous one
        consumer = Consumer(conf)
        consumer.subscribe([self.topic])
        self._producer, self._consumer = producer, consumer
        log.info("exactly-once: %s reads %s as group %s, writes as %s", self.transactional_id,
                 self.topic, self.group, self.transactional_id)

    def _close(self) -> None:
        consumer, producer, self._consumer, self._producer = (self._consumer, self._producer,
                                                              None, None)
        if producer is not None:
            with contextlib.suppress(KafkaException):
                producer.abort_transaction(5)
        if consumer is not None:
            with contextlib.suppress(KafkaException, RuntimeError):
                consumer.close()

    def _consume(self, size: int, within_s: float) -> list[ConsumedEvent]:
        if self.closed.is_set():
            return []
        if self._consumer is None:
            self._open()
        assert self._consumer is not None
        msgs = self._consumer.consume(size, max(within_s, 0.05))
        now = time.monotonic()
        for m in msgs:
            if m.error() is not None:
                log.warning("%s: consumer error %s", self.group, m.error())
        return [ConsumedEvent(m, now) for m in msgs if m.error() is None]

    async def batch(self, size: int, within_s: float) -> list[ConsumedEvent]:
        """Up to ``size`` messages, waiting at most ``within_s`` (opens the clients first)."""
        return await self._run(self._consume, size, within_s)

    def _transact(self, messages: list[tuple[str, bytes | None, bytes, Headers]],
                  offsets: list[TopicPartition]) -> None:
        producer, consumer = self._producer, self._consumer
        if producer is None or consumer is None:
            raise KafkaException(f"{self.transactional_id}: the clients were closed")
        producer.begin_transaction()
        for topic, key, value, headers in messages:
            while True:
                try:
                    producer.produce(topic, value=value, key=key, headers=headers)
                    break
                except BufferError:  # the local queue is full: let it drain
                    producer.poll(0.1)
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(),
                                             self.timeout_s)
        for attempt in range(3):
            try:
                producer.commit_transaction(self.timeout_s)
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or attempt == 2:
                    raise

    async def commit(self, events: Sequence[ConsumedEvent]) -> bool:
        """Send the batch's messages (from :attr:`bus`) and its offsets in one transaction.
        False if it failed: the clients are reopened and the batch comes again."""
        messages = self.bus.take()
        if self.closed.is_set():  # stopping: the batch comes again after the restart
            return False
        nxt: dict[tuple[str, int], int] = {}
        for e in events:
            m = e.message
            nxt[(m.topic, m.partition)] = max(nxt.get((m.topic, m.partition), 0), m.offset + 1)
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(nxt.items())]
        try:
            await self._run(self._transact, messages, offsets)
        except (KafkaException, BufferError) as exc:
            self.aborted += 1
            log.error("exactly-once: the transaction of %d result(s) failed (%s); reopening "
                      "%s, the batch is detected again", len(messages), exc,
                      self.transactional_id)
            await self.reopen()
            return False
        self.committed += 1
        return True

    async def reopen(self) -> None:
        """Close both clients (the open transaction is aborted); the next :meth:`batch`
        opens them again from the last committed offsets, so what was taken since comes
        again."""
        await self._run(self._close)

    async def close(self) -> None:
        self.closed.set()
        await self._run(self._close)
        self._io.shutdown(wait=False)


# --- consumer lag from the broker ---------------------------------------------------------


class BrokerLag(SupervisedThread):
    """Every ``interval_s``: for each consumer group of this deployment (its name starts
    with the topic prefix) and each topic it committed offsets of, the sum over partitions
    of high watermark minus committed offset, from the broker (confluent-kafka's
    AdminClient: ``list_consumer_group_offsets`` and ``list_offsets``). A thread of its
    own; the loop only reads :meth:`snapshot`. Used on Kafka: tansu's watermarks are wrong.
    """

    def __init__(self, settings: Settings, health: Any = None, interval_s: float = 5.0) -> None:
        super().__init__("broker-lag", health)
        self.settings = settings
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._lag: dict[tuple[str, str], int] = {}

    def snapshot(self) -> dict[tuple[str, str], int]:
        """(topic, group) -> messages behind the end, as last measured."""
        with self._lock:
            return dict(self._lag)

    def measure(self, admin: AdminClient, timeout_s: float = 10.0) -> dict[tuple[str, str], int]:
        prefix = self.settings.topic_prefix
        groups = [g.group_id for g in admin.list_consumer_groups(
            request_timeout=timeout_s).result(timeout_s).valid
            if g.group_id.startswith(prefix)]
        committed: dict[str, list[TopicPartition]] = {}
        for g in groups:
            res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)],
                                                    request_timeout=timeout_s)
            for fut in res.values():
                committed[g] = [tp for tp in fut.result(timeout_s).topic_partitions
                                if tp.offset >= 0 and tp.topic.startswith(prefix + ".")]
        wanted = {TopicPartition(tp.topic, tp.partition) for tps in committed.values()
                  for tp in tps}
        if not wanted:
            return {}
        ends = {(tp.topic, tp.partition): fut.result(timeout_s).offset
                for tp, fut in admin.list_offsets(
                    {tp: OffsetSpec.latest() for tp in wanted},
                    isolation_level=IsolationLevel.READ_COMMITTED,
                    request_timeout=timeout_s).items()}
        out: dict[tuple[str, str], int] = {}
        for g, tps in committed.items():
            for tp in tps:
                end = ends.get((tp.topic, tp.partition))
                if end is not None:
                    out[(tp.topic, g)] = out.get((tp.topic, g), 0) + max(0, end - tp.offset)
        return out

    def work(self) -> None:
        admin = AdminClient(self.settings.confluent_config())
        while not self.halt.is_set():
            lag = self.measure(admin)
            with self._lock:
                self._lag = lag
            self.progress()
            self.halt.wait(self.interval_s)
