"""``autosteer infra up|down|status``: the local broker, ClickHouse and RTSP camera.

The broker is tansu (``AUTOSTEER_BROKER=tansu``, the default) or a 3-node Apache Kafka
cluster (``kafka``) whose nodes listen on ``AUTOSTEER_BROKER_PORT`` and the next two
ports, so the default ``AUTOSTEER_KAFKA_BOOTSTRAP`` (``127.0.0.1:19092``) reaches both.
``down`` and ``status`` cover both kinds, whichever was started.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from autosteer.infra.broker import Broker, LocalBroker
from autosteer.infra.clickhouse import LocalClickHouse
from autosteer.infra.kafka import LocalKafkaCluster
from autosteer.infra.rtsp import RtspTestServer
from autosteer.infra.sample import ensure_sample_video
from autosteer.settings import Settings

log = logging.getLogger(__name__)


def local_broker(s: Settings, kind: str | None = None) -> Broker:
    """The local broker of kind ``kind`` (default ``s.broker``) on ``s.broker_port``."""
    kind = kind or s.broker
    if kind == "kafka":
        p = s.broker_port
        return LocalKafkaCluster(s.state_dir, ports=[p, p + 1, p + 2])
    return LocalBroker(s.broker_port, s.state_dir)


@dataclass
class LocalStack:
    broker: Broker
    clickhouse: LocalClickHouse
    rtsp: RtspTestServer
    other_brokers: list[Broker] = field(default_factory=list)  # for `down` and `status`

    @classmethod
    def from_settings(cls, s: Settings, broker: str | None = None) -> LocalStack:
        chosen = local_broker(s, broker)
        return cls(
            broker=chosen,
            clickhouse=LocalClickHouse(s.clickhouse_tcp_port, s.clickhouse_http_port, s.state_dir),
            rtsp=RtspTestServer(s.sample_video, s.rtsp_port, s.state_dir),
            other_brokers=[local_broker(s, k) for k in ("tansu", "kafka") if k != chosen.kind],
        )

    def topic_settings(self, settings: Settings) -> Settings:
        """``settings`` pointed at this stack's broker. The replication factor stays what
        it was: unset, topics get the broker's default (3 on the Kafka cluster, whose
        ``min.insync.replicas`` is 2); a factor set below the stack's is raised to it,
        since fewer replicas than the minimum in sync refuse ``acks=all`` writes."""
        rf = settings.replication_factor
        return settings.model_copy(update={
            "broker": self.broker.kind, "kafka_bootstrap": self.broker.bootstrap,
            "replication_factor": None if rf is None else max(rf, self.broker.replicas)})

    def exports(self, settings: Settings) -> dict[str, str]:
        """The ``AUTOSTEER_*`` variables other processes need to use this stack's broker."""
        s = self.topic_settings(settings)
        out = {"AUTOSTEER_BROKER": s.broker, "AUTOSTEER_KAFKA_BOOTSTRAP": s.kafka_bootstrap}
        if s.replication_factor != settings.replication_factor:
            out["AUTOSTEER_REPLICATION_FACTOR"] = str(s.replication_factor)
        return out

    def up(self, settings: Settings, *, clickhouse: bool = True, rtsp: bool = True) -> None:
        """Start what is not running (idempotent) and create the topics and tables."""
        from autosteer.telemetry.store import open_store
        from autosteer.topics.admin import ensure_topics

        self.broker.start()
        ensure_topics(self.topic_settings(settings))
        if clickhouse and settings.store == "server":
            self.clickhouse.start()
        store = open_store(settings)
        try:
            store.setup()
        finally:
            store.close()
        if rtsp:
            ensure_sample_video(settings.sample_video)
            self.rtsp.start()

    def down(self) -> None:
        self.rtsp.stop()
        self.clickhouse.stop()
        self.broker.stop()
        for other in self.other_brokers:
            other.stop()

    def status(self) -> list[tuple[str, str, str]]:
        def st(running: bool, pid: int | None) -> str:
            return f"running (pid {pid})" if running else "stopped"

        rows = list(self.broker.status())
        for other in self.other_brokers:
            rows += [r for r in other.status() if r[2] != "stopped"]
        return rows + [
            ("clickhouse", self.clickhouse.url(),
             st(self.clickhouse.running(), self.clickhouse.proc.pid())),
            ("rtsp camera", self.rtsp.url, st(self.rtsp.running(), self.rtsp.proc.pid())),
        ]
