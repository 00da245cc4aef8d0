"""The bus: how roles publish records and dead letters, and count what failed.

Roles never hold Kafka clients or Faust topics. They get a :class:`Bus` and call
``publish`` (a record's bytes to a topic, not awaited for delivery: the worker's
producer is flushed before offsets are committed) and ``dead_letter``. Two
implementations: :class:`FaustBus` (the worker's Faust producer) and :class:`MemoryBus`
(a list, for unit tests with no broker).

>>> import asyncio
>>> bus = MemoryBus("n1")
>>> asyncio.run(bus.publish("lab.detections", b"cam:1", b"{}"))
>>> bus.sent
[('lab.detections', b'cam:1', b'{}', None)]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from autosteer.streams.pipeline import Rejected
from autosteer.topics.records import DeadLetter

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]] | None


@dataclass
class BusCounts:
    """What the bus saw go wrong (read by heartbeats and ``/metrics``)."""

    dead_letters: int = 0
    send_failures: int = 0


class Bus(Protocol):
    counts: BusCounts

    async def publish(self, topic: str, key: bytes | None, value: bytes,
                      headers: Headers = None) -> None:
        """Hand a message to the producer (delivery failures are counted, not raised)."""

    async def dead_letter(self, rejected: Sequence[Rejected]) -> None:
        """Send each rejected message to the dead-letter topic, with its reason."""


class FaustBus:
    """The bus of a worker: its Faust app's producer, one raw-bytes topic per name."""

    def __init__(self, app: Any, topics: Sequence[str], deadletter_topic: str, node: str,
                 max_message_bytes: int) -> None:
        self._topics = {name: app.topic(name, key_type=bytes, value_type=bytes,
                                        key_serializer="raw", value_serializer="raw")
                        for name in topics}
        self._deadletter = deadletter_topic
        self._node = node
        self._max_bytes = max_message_bytes
        self.counts = BusCounts()

    def topic(self, name: str) -> Any:
        """The Faust topic ``name`` (what an agent subscribes to)."""
        return self._topics[name]

    async def publish(self, topic: str, key: bytes | None, value: bytes,
                      headers: Headers = None) -> None:
        fut = await self._topics[topic].send(key=key, value=value, headers=headers)
        fut.add_done_callback(self._on_sent)

    def _on_sent(self, fut: Any) -> None:
        exc = fut.exception() if not fut.cancelled() else None
        if exc is not None:
            self.counts.send_failures += 1
            log.error("send failed: %s", exc)

    async def dead_letter(self, rejected: Sequence[Rejected]) -> None:
        for r in rejected:
            log.warning("dead letter from %s[%d]@%d: %s%s", r.item.topic, r.item.partition,
                        r.item.offset, f"{r.where}: " if r.where else "", r.error)
            letter = r.dead_letter(self._node, self._max_bytes)
            await self.publish(self._deadletter, r.item.key, letter.dumps())
        self.counts.dead_letters += len(rejected)


@dataclass
class MemoryBus:
    """A bus that keeps what it is given (unit tests)."""

    node: str = "test"
    sent: list[tuple[str, bytes | None, bytes, Headers]] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    counts: BusCounts = field(default_factory=BusCounts)

    async def publish(self, topic: str, key: bytes | None, value: bytes,
                      headers: Headers = None) -> None:
        self.sent.append((topic, key, value, headers))

    async def dead_letter(self, rejected: Sequence[Rejected]) -> None:
        self.letters += [r.dead_letter(self.node) for r in rejected]
        self.counts.dead_letters += len(rejected)

    def values(self, topic: str) -> list[bytes]:
        """The values published to ``topic``, in order."""
        return [v for t, _k, v, _h in self.sent if t == topic]
