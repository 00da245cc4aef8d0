"""A local Apache Kafka 4.x cluster: three combined broker+controller KRaft nodes.

The broker jars come from Maven Central once (a generated pom, then
``mvn dependency:copy-dependencies``) into ``~/.cache/autosteer/kafka-<version>/libs``;
later runs start offline from that cache. Each node has its own data directory under
``<state_dir>/kafka-<first port>/``, is formatted once with Kafka's storage tool and runs
as ``java -cp '<libs>/*' kafka.Kafka server.properties``. The JVMs log to
``<state_dir>/kafka-<port>.log`` (warnings, plus start and stop lines).

Topics default to replication factor 3 and ``min.insync.replicas=2``: a producer with
``acks=all`` loses nothing when one node of three dies.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from autosteer.errors import InfraError
from autosteer.infra.process import ManagedProcess, bindable, port_open, wait_port_free

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"  # the log4j2 Kafka 4.1 ships with; its slf4j 1.7 binding
DEBIAN_PACKAGES = "openjdk-17-jre-headless maven"
NODES = 3
CONTROLLER_PORT_OFFSET = 100  # node i's controller listens on its client port + 100
MESSAGE_MAX_BYTES = 64 * 1024 * 1024  # above any AUTOSTEER_MAX_MESSAGE_BYTES in use
JVM_OPTIONS = (
    "-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k",
    "-XX:MaxDirectMemorySize=128m", "-Djava.awt.headless=true",
)

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>autosteer</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

# Warnings and errors, plus the lines that say a node started or shut down.
LOG4J2 = """status = warn
shutdownHook = disable
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = info
logger.fetcher.name = kafka.server.ReplicaFetcherThread
logger.fetcher.level = error
logger.netclient.name = org.apache.kafka.clients.NetworkClient
logger.netclient.level = error
"""


def require_tools() -> tuple[str, str | None]:
    """Paths of ``java`` (17 or newer) and ``mvn`` (None when absent: the cache may do)."""
    java = shutil.which("java")
    if java is None:
        raise InfraError(f"the local Kafka cluster needs Java 17+ and Maven; "
                         f"install them: apt-get install {DEBIAN_PACKAGES}")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    match = re.search(r'version "(\d+)', out.stderr + out.stdout)
    if match is None or int(match.group(1)) < 17:
        raise InfraError(f"Kafka 4 needs Java 17 or newer; {java} says "
                         f"{(out.stderr or out.stdout).splitlines()[:1]}. "
                         f"Install it: apt-get install {DEBIAN_PACKAGES}")
    return java, shutil.which("mvn")


def kafka_libs(version: str = KAFKA_VERSION, cache_dir: Path | None = None) -> Path:
    """The folder of Kafka ``version``'s broker jars, fetched with Maven the first time."""
    home = cache_dir or Path.home() / ".cache" / "autosteer"
    root = home / f"kafka-{version}"
    libs = root / "libs"
    done = root / ".complete"
    if done.exists():
        return libs
    _, mvn = require_tools()
    if mvn is None:
        raise InfraError(f"Kafka {version}'s jars are not cached in {libs} and Maven is missing "
                         f"to fetch them; install it: apt-get install {DEBIAN_PACKAGES}")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching the same jars
        if done.exists():
            return libs
        (root / "pom.xml").write_text(POM.format(version=version, log4j=LOG4J_VERSION))
        partial = root / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        log.warning("fetching Apache Kafka %s jars with Maven into %s (once)", version, libs)
        try:
            out = subprocess.run(
                [mvn, "-q", "-B", "-f", str(root / "pom.xml"), "dependency:copy-dependencies",
                 f"-DoutputDirectory={partial}"],
                capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired as exc:
            raise InfraError(f"Maven did not fetch Kafka {version} within 15 min") from exc
        if out.returncode != 0 or not any(partial.glob("kafka_2.13-*.jar")):
            tail = "\n  ".join((out.stdout + out.stderr).splitlines()[-15:])
            raise InfraError(f"Maven could not fetch org.apache.kafka:kafka_2.13:{version} "
                             f"(is Maven Central reachable?):\n  {tail}")
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
        done.write_text(version + "\n")
    return libs


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):  # Kafka avoids ids a command line would take as a flag
            return cid


@dataclass
class KafkaNode:
    """One combined broker+controller node."""

    node_id: int
    port: int
    controller_port: int
    dir: Path
    proc: ManagedProcess

    @property
    def config_file(self) -> Path:
        return self.dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self.proc.running() and port_open(self.port)


class LocalKafkaCluster:
    """Start, stop, kill and check a 3-node Apache Kafka cluster on loopback.

    ``ports`` are the client ports (default: free ones); each node's controller port is
    its client port + 100 unless ``controller_ports`` are given. ``kill``/``restart``
    take a node number, 1 to 3.
    """

    kind = "kafka"

    def __init__(self, state_dir: Path, ports: Sequence[int] | None = None,
                 controller_ports: Sequence[int] | None = None, *,
                 version: str = KAFKA_VERSION, cache_dir: Path | None = None) -> None:
        from autosteer.infra.process import free_port

        ports = list(ports) if ports else [free_port() for _ in range(NODES)]
        controller_ports = (list(controller_ports) if controller_ports
                            else [p + CONTROLLER_PORT_OFFSET for p in ports])
        if len(ports) != NODES or len(controller_ports) != NODES:
            raise InfraError(f"a local Kafka cluster has {NODES} nodes; got ports {ports} "
                             f"and controller ports {controller_ports}")
        self.version = version
        self.cache_dir = cache_dir
        self.state_dir = state_dir
        self.dir = state_dir / f"kafka-{ports[0]}"
        self.nodes = [
            KafkaNode(i + 1, ports[i], controller_ports[i], self.dir / f"node-{i + 1}",
                      ManagedProcess(f"kafka-{ports[i]}", state_dir))
            for i in range(NODES)
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(n.address for n in self.nodes)

    @property
    def replicas(self) -> int:
        """The replication factor topics on this cluster should have."""
        return len(self.nodes)

    def node(self, number: int) -> KafkaNode:
        if not 1 <= number <= len(self.nodes):
            raise InfraError(f"no Kafka node {number}; the nodes are 1 to {len(self.nodes)}")
        return self.nodes[number - 1]

    def running(self) -> bool:
        return all(n.running() for n in self.nodes)

    # --- set-up ------------------------------------------------------------------------
    def _properties(self, node: KafkaNode) -> str:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        props = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},"
                         f"CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": node.data_dir,
            # autosteer creates its topics itself (topics/admin.py); a typo stays an error
            "auto.create.topics.enable": "false",
            "num.partitions": 4,
            "default.replication.factor": 3,
            "min.insync.replicas": 2,
            "offsets.topic.replication.factor": 3,
            "offsets.topic.num.partitions": 12,
            "transaction.state.log.replication.factor": 3,
            "transaction.state.log.min.isr": 2,
            "transaction.state.log.num.partitions": 12,
            "share.coordinator.state.topic.replication.factor": 3,
            "share.coordinator.state.topic.min.isr": 2,
            "group.initial.rebalance.delay.ms": 0,
            "unclean.leader.election.enable": "false",
            "message.max.bytes": MESSAGE_MAX_BYTES,
            "replica.fetch.max.bytes": MESSAGE_MAX_BYTES,
            "replica.fetch.response.max.bytes": MESSAGE_MAX_BYTES,
            # a killed node leaves the ISR within ~6 s, so acks=all produce resumes
            "broker.heartbeat.interval.ms": 1000,
            "broker.session.timeout.ms": 6000,
            "replica.lag.time.max.ms": 10000,
            "num.network.threads": 2,
            "num.io.threads": 4,
            "num.recovery.threads.per.data.dir": 1,
            "background.threads": 4,
            "log.retention.hours": 24,
            "log.segment.bytes": 64 * 1024 * 1024,
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _java(self, libs: Path, java: str, main: str, *args: str) -> list[str]:
        return [java, *JVM_OPTIONS, f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                "-cp", f"{libs}/*", main, *args]

    def _prepare(self, java: str, libs: Path) -> None:
        """Write each node's config and format the nodes not formatted yet (once)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "log4j2.properties").write_text(LOG4J2)
        id_file = self.dir / "cluster.id"
        if not id_file.exists():
            id_file.write_text(new_cluster_id() + "\n")
        cluster_id = id_file.read_text().strip()
        todo = []
        for n in self.nodes:
            n.dir.mkdir(parents=True, exist_ok=True)
            n.config_file.write_text(self._properties(n))
            if not (n.data_dir / "meta.properties").exists():
                todo.append(n)

        def fmt(n: KafkaNode) -> None:
            argv = self._java(libs, java, "kafka.tools.StorageTool", "format",
                              "--cluster-id", cluster_id, "--config", str(n.config_file),
                              "--ignore-formatted")
            out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            if out.returncode != 0:
                raise InfraError(f"cannot format Kafka node {n.node_id} in {n.data_dir}: "
                                 f"{(out.stdout + out.stderr).strip()[-1500:]}")

        with ThreadPoolExecutor(len(todo) or 1) as pool:
            list(pool.map(fmt, todo))

    # --- lifecycle ---------------------------------------------------------------------
    def start(self, timeout_s: float = 90.0) -> None:
        """Start the nodes that are not running and wait until all three serve."""
        if self.running():
            return
        java, _ = require_tools()
        libs = kafka_libs(self.version, self.cache_dir)
        for n in self.nodes:
            if not n.proc.running():
                for port in (n.port, n.controller_port):
                    if not bindable(port):
                        raise InfraError(
                            f"port {port} (Kafka node {n.node_id}) is taken by another "
                            "program; stop it (`autosteer infra down`), set "
                            "AUTOSTEER_BROKER_PORT, or point AUTOSTEER_KAFKA_BOOTSTRAP at "
                            "that cluster")
        self._prepare(java, libs)
        started = time.monotonic()
        for n in self.nodes:
            if not n.proc.running():
                self._launch(n, java, libs)
        self.wait_serving(timeout_s - (time.monotonic() - started))
        log.info("Kafka %s cluster serving at %s after %.1fs", self.version, self.bootstrap,
                 time.monotonic() - started)

    def _launch(self, n: KafkaNode, java: str | None = None, libs: Path | None = None) -> None:
        java = java or require_tools()[0]
        libs = libs or kafka_libs(self.version, self.cache_dir)
        n.proc.start(self._java(libs, java, "kafka.Kafka", str(n.config_file)))

    def wait_serving(self, timeout_s: float = 90.0) -> None:
        """Wait until every node listens and the metadata lists all three brokers."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout_s
        admin = None
        brokers: set[int] = set()
        while time.monotonic() < deadline:
            dead = [n.node_id for n in self.nodes if not n.proc.running()]
            if dead:
                raise InfraError(f"Kafka node(s) {dead} exited while starting."
                                 f"{self._log_tails()}")
            if all(port_open(n.port) for n in self.nodes):
                admin = admin or AdminClient({"bootstrap.servers": self.bootstrap,
                                              "log_level": 0})
                with contextlib.suppress(Exception):
                    brokers = set(admin.list_topics(timeout=2).brokers)
                    if len(brokers) == len(self.nodes):
                        return
            time.sleep(0.3)
        raise InfraError(f"the Kafka cluster at {self.bootstrap} did not list "
                         f"{len(self.nodes)} brokers within {timeout_s:.0f}s (it lists "
                         f"{sorted(brokers)}).{self._log_tails()}")

    def wait_in_sync(self, timeout_s: float = 60.0) -> None:
        """Wait until every partition of every topic has all its replicas in sync."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        deadline = time.monotonic() + timeout_s
        lagging: list[str] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                md = admin.list_topics(timeout=5)
                lagging = [f"{t.topic}[{p.id}]" for t in md.topics.values()
                           for p in t.partitions.values() if set(p.isrs) != set(p.replicas)]
                if not lagging and len(md.brokers) == len(self.nodes):
                    return
            time.sleep(0.3)
        raise InfraError(f"Kafka partitions still under-replicated after {timeout_s:.0f}s: "
                         f"{lagging[:10]}")

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop every node: SIGTERM to all at once, SIGKILL after ``timeout_s``.

        The last node up cannot finish a controlled shutdown (no controller quorum is
        left to acknowledge it), so it may take the SIGKILL; its log is recovered at the
        next start. Nothing acknowledged is lost: the data is in the page cache."""
        running = [n for n in self.nodes if n.proc.pid() is not None]
        with ThreadPoolExecutor(len(running) or 1) as pool:
            list(pool.map(lambda n: n.proc.stop(timeout_s=timeout_s), running))
        for n in self.nodes:
            wait_port_free(n.port, 10)

    def kill(self, number: int) -> None:
        """SIGKILL node ``number`` (1-3): no controlled shutdown, as in a crash."""
        n = self.node(number)
        pid = n.proc.pid()
        if pid is None:
            raise InfraError(f"Kafka node {number} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        log.info("killed Kafka node %d (pid %d)", number, pid)

    def restart(self, number: int, timeout_s: float = 90.0, *, graceful: bool = True) -> None:
        """Stop node ``number`` (SIGTERM; nothing if it is already dead), start it again,
        and wait until it serves and every partition is back in sync."""
        n = self.node(number)
        if graceful:
            n.proc.stop(timeout_s=30)
        wait_port_free(n.port, 10)
        self._launch(n)
        self.wait_serving(timeout_s)
        self.wait_in_sync(timeout_s)

    def status(self) -> list[tuple[str, str, str]]:
        """(name, address, state) of each node."""
        rows = []
        for n in self.nodes:
            pid = n.proc.pid()
            state = f"running (pid {pid})" if pid is not None and port_open(n.port) else (
                f"starting (pid {pid})" if pid is not None else "stopped")
            rows.append((f"kafka node {n.node_id}", n.address, state))
        return rows

    def _log_tails(self) -> str:
        parts = []
        for n in self.nodes:
            if n.proc.log_file.exists():
                lines = n.proc.log_file.read_text(errors="replace").splitlines()[-8:]
                parts.append(f"\n node {n.node_id} ({n.proc.log_file}):\n  " + "\n  ".join(lines))
        return "".join(parts)
