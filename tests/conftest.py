"""Fixtures that start the real parts (tansu, a 3-node Apache Kafka cluster, ClickHouse
18.16 server, chdb, RTSP camera) through ``autosteer.infra``, once per session, on free
ports; every test gets its own topic prefix and ClickHouse database so tests never see
each other's data.

The tests of the modules in ``BOTH_BROKERS`` run twice, ``[tansu]`` and ``[kafka]``: their
``broker`` fixture is parametrized here. Every other test runs on tansu.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from autosteer.errors import InfraError
from autosteer.infra.broker import Broker, LocalBroker
from autosteer.infra.clickhouse import LocalClickHouse
from autosteer.infra.kafka import LocalKafkaCluster, kafka_libs
from autosteer.infra.process import free_port
from autosteer.infra.rtsp import RtspTestServer
from autosteer.infra.sample import ensure_sample_video
from autosteer.processors.prepare import prepare_models, video_frames
from autosteer.settings import Settings
from autosteer.telemetry.store import EmbeddedStore, ServerStore, TelemetryStore
from autosteer.topics.admin import ensure_topics
from helpers import Worker, unique

DEFAULTS = Settings()

# Pipeline, delivery, fault and hot-swap tests: each runs on tansu and on Kafka.
BOTH_BROKERS = {"test_pipeline", "test_faults", "test_hot_swap"}
# Tests about tansu itself, by name: their Kafka leg is skipped with this reason. A test
# can say the same with @pytest.mark.tansu_only("reason").
TANSU_ONLY = {
    "test_broker_restart_the_worker_recovers_by_itself_and_reports_the_loss":
        "tansu-specific: its memory storage loses every topic on restart; a Kafka node's "
        "restart keeps them (tests/test_kafka_cluster.py kills and restarts nodes)",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "tansu_only(reason): a test about tansu itself; its Kafka leg is skipped")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the tests of ``BOTH_BROKERS`` modules once per broker."""
    if "broker" not in metafunc.fixturenames:
        return
    if metafunc.module.__name__.rsplit(".", 1)[-1] not in BOTH_BROKERS:
        return
    reason = TANSU_ONLY.get(metafunc.function.__name__)
    marker = metafunc.definition.get_closest_marker("tansu_only")
    if marker is not None:
        reason = marker.args[0] if marker.args else "tansu-specific"
    kafka = pytest.param("kafka", marks=pytest.mark.skip(reason=reason)) if reason else "kafka"
    metafunc.parametrize("broker", ["tansu", kafka], indirect=True)


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="session")
def sample_video() -> Path:
    return ensure_sample_video(DEFAULTS.sample_video)


@pytest.fixture(scope="session")
def model_dir(sample_video: Path) -> Path:
    """The real prepared models (converted and quantized once, then cached)."""
    prepare_models(DEFAULTS.model_dir, sample_video)
    return DEFAULTS.model_dir


@pytest.fixture(scope="session")
def tansu(state_dir: Path) -> Iterator[LocalBroker]:
    b = LocalBroker(free_port(), state_dir)
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def kafka_cluster(state_dir: Path) -> Iterator[LocalKafkaCluster]:
    """Three Apache Kafka 4 nodes (KRaft), started when the first test needs them. Without
    Java (or without Maven and no cached jars) the Kafka leg fails: `make test` installs
    both, so a missing one is a broken set-up, not a reason to skip."""
    if shutil.which("java") is None:
        pytest.fail("no java: apt-get install openjdk-17-jre-headless maven (make test does)")
    if shutil.which("mvn") is None:
        try:
            kafka_libs()
        except InfraError as exc:
            pytest.fail(str(exc))
    cluster = LocalKafkaCluster(state_dir)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> Broker:
    """tansu, or the Kafka cluster in a ``[kafka]`` test of a ``BOTH_BROKERS`` module."""
    kind = getattr(request, "param", "tansu")
    return request.getfixturevalue("kafka_cluster" if kind == "kafka" else "tansu")


@pytest.fixture(scope="session")
def clickhouse(state_dir: Path) -> Iterator[LocalClickHouse]:
    ch = LocalClickHouse(free_port(), free_port(), state_dir)
    ch.start()
    yield ch
    ch.stop()


@pytest.fixture(scope="session")
def rtsp(state_dir: Path, sample_video: Path) -> Iterator[RtspTestServer]:
    srv = RtspTestServer(sample_video, free_port(), state_dir)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def frames(sample_video: Path) -> list[np.ndarray]:
    """16 real BGR frames spread over vtest.avi."""
    out = video_frames(sample_video, 16, start=13, step=47)
    assert len(out) == 16
    return out


@pytest.fixture(params=["server", "embedded"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TelemetryStore]:
    """A fresh telemetry database, set up, on each backend: the ClickHouse 18.16 server
    and chdb's current engine (tests that take it run on both)."""
    if request.param == "server":
        ch: LocalClickHouse = request.getfixturevalue("clickhouse")
        st: TelemetryStore = ServerStore(ch.url(unique("db")))
    else:
        st = EmbeddedStore(tmp_path / "chdb", database=unique("db"))
    st.setup()
    yield st
    st.close()


@pytest.fixture
def make_settings(broker: Broker, state_dir: Path, model_dir: Path,
                  tmp_path: Path) -> Iterator[Callable[..., Settings]]:
    """Settings for one test: its own topic prefix, node, web port and chdb directory, on
    the test's broker. On Kafka (no topic auto-creation) the topics are created here,
    replicated 3 times, and deleted after the test, so the cluster stays small."""
    made: list[Settings] = []

    def make(**kw: Any) -> Settings:
        base: dict[str, Any] = dict(
            broker=broker.kind, replication_factor=broker.replicas,
            kafka_bootstrap=broker.bootstrap, topic_prefix=unique("t"), node=unique("node"),
            partitions=2, state_dir=state_dir, model_dir=model_dir, web_port=free_port(),
            chdb_path=tmp_path / "chdb", store="embedded", batch_size=4, sink_flush_s=0.5,
            sample_video=DEFAULTS.sample_video, telemetry_sample_rate=1.0, max_frame_age_ms=0,
            offload_policy="fixed",
        )
        base.update(kw)
        made.append(Settings(**base))
        if broker.kind == "kafka":  # no auto-creation there: a test may produce first
            ensure_topics(made[-1])
        return made[-1]

    yield make
    if broker.kind == "kafka":
        delete_topics(broker.bootstrap, {s.topic_prefix for s in made})


def delete_topics(bootstrap: str, prefixes: set[str]) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        names = [t for t in admin.list_topics(timeout=10).topics
                 if any(t.startswith(p + ".") or t.startswith(p + "-") for p in prefixes)]
        if names:
            for fut in admin.delete_topics(names, operation_timeout=30).values():
                fut.result(30)
    except Exception as exc:  # noqa: BLE001 - cleanup only; the test's result stands
        import logging

        logging.getLogger(__name__).warning("could not delete topics %s: %s", prefixes, exc)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[Settings], Worker]]:
    workers: list[Worker] = []

    def start(s: Settings) -> Worker:
        w = Worker(s, tmp_path / f"worker-{len(workers)}.log").start(60)
        workers.append(w)
        return w

    yield start
    for w in workers:
        w.stop()


class _Suffixed(MutableMapping[str, Any]):
    """The measurements of a test's Kafka leg: every key stored as ``<key>@kafka``."""

    def __init__(self, found: dict[str, Any], suffix: str) -> None:
        self.found, self.suffix = found, suffix

    def __getitem__(self, key: str) -> Any:
        return self.found[key + self.suffix]

    def __setitem__(self, key: str, value: Any) -> None:
        self.found[key + self.suffix] = value

    def __delitem__(self, key: str) -> None:
        del self.found[key + self.suffix]

    def __iter__(self) -> Iterator[str]:
        return (k[: -len(self.suffix)] for k in self.found if k.endswith(self.suffix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


@pytest.fixture
def measurements(request: pytest.FixtureRequest,
                 all_measurements: dict[str, Any]) -> MutableMapping[str, Any]:
    """Where a test records what it measured. On a ``[kafka]`` leg, the keys get
    ``@kafka`` appended, so both brokers' numbers sit side by side."""
    callspec = getattr(request.node, "callspec", None)
    kind = callspec.params.get("broker", "tansu") if callspec else "tansu"
    return all_measurements if kind == "tansu" else _Suffixed(all_measurements, f"@{kind}")


@pytest.fixture(scope="session")
def all_measurements() -> Iterator[dict[str, dict[str, Any]]]:
    """Numbers the fault tests measured; written to bench/results/reliability.json
    (docs/reliability.md quotes them)."""
    import json

    found: dict[str, dict[str, Any]] = {}
    yield found
    if found:
        out = Path(__file__).resolve().parent.parent / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        path = out / "reliability.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        old.update(found)
        path.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
