"""Plain confluent-kafka clients built from :class:`~autosteer.settings.Settings`."""

from __future__ import annotations

import logging
import threading

from autosteer.settings import Settings
from confluent_kafka import Producer

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
