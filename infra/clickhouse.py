"""A private ClickHouse server (Debian's ``clickhouse-server``) with its own ports and data.

The server gets a generated minimal config in ``<state_dir>/clickhouse-<port>/``, so it
never touches ``/var/lib/clickhouse`` and several instances can run side by side (tests
do). Where the binary is missing it is installed with apt when we are root; otherwise
the error says what to run, or to use the embedded chdb store instead.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from autosteer.errors import InfraError
from autosteer.infra.process import (
    ManagedProcess,
    bindable,
    free_port,
    port_open,
    wait_port,
    wait_port_free,
)

log = logging.getLogger(__name__)

SERVER_CANDIDATES = ("/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server", "/usr/bin/clickhouse")

CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{root}/log/server.log</log>
        <errorlog>{root}/log/server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp_port}</tcp_port>
    <http_port>{http_port}</http_port>
    <interserver_http_port>{interserver_port}</interserver_http_port>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>64</max_concurrent_queries>
    <mark_cache_size>268435456</mark_cache_size>
    <path>{root}/data/</path>
    <tmp_path>{root}/tmp/</tmp_path>
    <user_files_path>{root}/user_files/</user_files_path>
    <format_schema_path>{root}/format_schemas/</format_schema_path>
    <users_config>{root}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mlock_executable>false</mlock_executable>
</yandex>
"""

USERS = """<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
        <readonly>
            <readonly>1</readonly>
        </readonly>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""


def server_binary(install: bool = True) -> Path:
    """Path of clickhouse-server; apt-installs it when root and missing."""
    for cand in SERVER_CANDIDATES:
        if Path(cand).exists():
            return Path(cand)
    found = shutil.which("clickhouse-server")
    if found:
        return Path(found)
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        log.warning("clickhouse-server not found; installing it with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        res = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "clickhouse-server", "clickhouse-client"],
            env=env, capture_output=True, text=True,
        )
        if res.returncode == 0:
            return server_binary(install=False)
        log.error("apt-get failed: %s", res.stderr[-2000:])
    raise InfraError(
        "clickhouse-server is not installed. Run `sudo apt-get install clickhouse-server` "
        "(Debian/Ubuntu), or point AUTOSTEER_CLICKHOUSE_URL at a running server, or use the "
        "embedded store with AUTOSTEER_STORE=embedded (chdb, no server needed)."
    )


class LocalClickHouse:
    """Start, stop and check a private ClickHouse server on ``127.0.0.1:tcp_port``."""

    def __init__(self, tcp_port: int, http_port: int, state_dir: Path) -> None:
        self.tcp_port = tcp_port
        self.http_port = http_port
        self.interserver_port = http_port + 1
        self.root = state_dir / f"clickhouse-{tcp_port}"
        self.proc = ManagedProcess(f"clickhouse-{tcp_port}", state_dir)

    def url(self, database: str = "autosteer") -> str:
        return f"clickhouse://default:@127.0.0.1:{self.tcp_port}/{database}"

    def running(self) -> bool:
        return self.proc.running() and port_open(self.tcp_port)

    def write_config(self) -> Path:
        for sub in ("log", "data", "tmp", "user_files", "format_schemas"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        cfg = self.root / "config.xml"
        # clients only use the tcp port; the other two may move if something took them
        # (an outgoing connection's ephemeral port, between a stop and a start)
        if not bindable(self.http_port):
            self.http_port = free_port()
        if not bindable(self.interserver_port):
            self.interserver_port = free_port()
        cfg.write_text(CONFIG.format(
            root=self.root, tcp_port=self.tcp_port, http_port=self.http_port,
            interserver_port=self.interserver_port,
        ))
        (self.root / "users.xml").write_text(USERS)
        return cfg

    def start(self, timeout_s: float = 60) -> None:
        if self.running():
            return
        if port_open(self.tcp_port):
            raise InfraError(
                f"port {self.tcp_port} is taken by another program; set "
                "AUTOSTEER_CLICKHOUSE_TCP_PORT, or point AUTOSTEER_CLICKHOUSE_URL at that server"
            )
        binary = server_binary()
        cfg = self.write_config()
        argv = [str(binary)]
        if binary.name == "clickhouse":
            argv.append("server")
        popen = self.proc.start([*argv, f"--config-file={cfg}"], cwd=self.root)
        wait_port(self.tcp_port, timeout_s, what="ClickHouse server", proc=popen,
                  log_file=self.root / "log" / "server.err.log")

    def stop(self) -> None:
        self.proc.stop(timeout_s=30)
        wait_port_free(self.tcp_port, 10)
