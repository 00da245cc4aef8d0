"""The worker's Faust app, built from settings.

Faust hard-codes ``fetch_max_wait_ms=1500`` for worker consumers. A broker that answers
an empty fetch only when that wait expires (tansu does) then adds up to 1.5 s per hop,
and the pipeline has two hops (router, detector). :class:`App` passes
``AUTOSTEER_FETCH_WAIT_MS`` instead; on a broker that answers as soon as data arrives
(Kafka) a short wait only costs a few more empty fetches on an idle topic.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust
from autosteer.settings import Settings
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


def credentials(s: Settings) -> Any:
    """Faust credentials for ``AUTOSTEER_KAFKA_SECURITY_PROTOCOL`` (None for plaintext)."""
    if s.kafka_security_protocol == "PLAINTEXT":
        return None
    ctx = ssl.create_default_context(cafile=str(s.kafka_ssl_cafile) if s.kafka_ssl_cafile else None)
    if s.kafka_security_protocol == "SSL":
        return faust.SSLCredentials(ctx)
    password = s.kafka_sasl_password.get_secret_value() if s.kafka_sasl_password else None
    return faust.SASLCredentials(
        username=s.kafka_sasl_username, password=password,
        mechanism=s.kafka_sasl_mechanism or "PLAIN",
        ssl_context=ctx if s.kafka_security_protocol == "SASL_SSL" else None,
    )


def make_app(s: Settings) -> App:
    broker = ";".join(f"kafka://{h.strip()}" for h in s.kafka_bootstrap.split(","))
    return App(
        f"{s.topic_prefix}-pipeline",
        broker=broker,
        broker_credentials=credentials(s),
        processing_guarantee="at_least_once",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=10.0,
        broker_max_poll_interval=30.0,
        broker_commit_interval=1.0,
        producer_max_request_size=s.max_message_bytes,
        producer_acks=-1,
        consumer_max_fetch_size=s.max_message_bytes,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        topic_allow_declare=False,
        topic_partitions=s.partitions,
        stream_buffer_maxsize=max(64, s.batch_size * 8),
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=True,
        web_port=s.web_port,
        web_bind=s.web_host,
        web_host=s.web_host,
        datadir=str(s.state_dir / f"faust-{s.topic_prefix}-{s.node}"),
        autodiscover=False,
        fetch_wait_ms=s.fetch_wait_ms,
    )
