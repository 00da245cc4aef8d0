"""``autosteer infra up|down|status``: the local broker, ClickHouse and RTSP camera."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from autosteer.infra.broker import LocalBroker
from autosteer.infra.clickhouse import LocalClickHouse
from autosteer.infra.rtsp import RtspTestServer
from autosteer.infra.sample import ensure_sample_video
from autosteer.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class LocalStack:
    broker: LocalBroker
    clickhouse: LocalClickHouse
    rtsp: RtspTestServer

    @classmethod
    def from_settings(cls, s: Settings) -> LocalStack:
        return cls(
            broker=LocalBroker(s.broker_port, s.state_dir),
            clickhouse=LocalClickHouse(s.clickhouse_tcp_port, s.clickhouse_http_port, s.state_dir),
            rtsp=RtspTestServer(s.sample_video, s.rtsp_port, s.state_dir),
        )

    def up(self, settings: Settings, *, clickhouse: bool = True, rtsp: bool = True) -> None:
        """Start what is not running (idempotent) and create the topics and tables."""
        from autosteer.telemetry.store import open_store
        from autosteer.topics.admin import ensure_topics

        self.broker.start()
        ensure_topics(settings)
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

    def status(self) -> list[tuple[str, str, str]]:
        def st(running: bool, pid: int | None) -> str:
            return f"running (pid {pid})" if running else "stopped"

        return [
            ("broker (tansu)", self.broker.bootstrap,
             st(self.broker.running(), self.broker.proc.pid())),
            ("clickhouse", self.clickhouse.url(),
             st(self.clickhouse.running(), self.clickhouse.proc.pid())),
            ("rtsp camera", self.rtsp.url, st(self.rtsp.running(), self.rtsp.proc.pid())),
        ]
