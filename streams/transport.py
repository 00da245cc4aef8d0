"""Faust's aiokafka transport with a configurable fetch wait.

Faust hard-codes ``fetch_max_wait_ms=1500`` for worker consumers. A broker that answers
an empty fetch only when that wait expires (tansu does) then adds up to 1.5 s per hop,
and the pipeline has two hops (router, detector). :class:`App` passes
``AUTOSTEER_FETCH_WAIT_MS`` instead; on a broker that answers as soon as data arrives
(Kafka) a short wait only costs a few more empty fetches on an idle topic.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # read by aiokafka's Fetcher when the consumer starts
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_wait_ms", 1500)
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class App(faust.App):
    """``faust.App`` whose consumers wait at most ``fetch_wait_ms`` on an empty fetch."""

    def __init__(self, *args: Any, fetch_wait_ms: int = 25, **kwargs: Any) -> None:
        self.fetch_wait_ms = fetch_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
