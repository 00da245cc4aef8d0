"""Fixtures that start the real parts (tansu, ClickHouse 18.16 server, chdb, RTSP camera)
through ``autosteer.infra``, once per session, on free ports; every test gets its own
topic prefix and ClickHouse database so tests never see each other's data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from autosteer.infra.broker import LocalBroker
from autosteer.infra.clickhouse import LocalClickHouse
from autosteer.infra.process import free_port
from autosteer.infra.rtsp import RtspTestServer
from autosteer.infra.sample import ensure_sample_video
from autosteer.processors.prepare import prepare_models, video_frames
from autosteer.settings import Settings
from autosteer.telemetry.store import EmbeddedStore, ServerStore, TelemetryStore
from helpers import Worker, unique

DEFAULTS = Settings()


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
def broker(state_dir: Path) -> Iterator[LocalBroker]:
    b = LocalBroker(free_port(), state_dir)
    b.start()
    yield b
    b.stop()


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
def make_settings(broker: LocalBroker, state_dir: Path, model_dir: Path,
                  tmp_path: Path) -> Callable[..., Settings]:
    """Settings for one test: its own topic prefix, node, web port and chdb directory."""

    def make(**kw: Any) -> Settings:
        base: dict[str, Any] = dict(
            kafka_bootstrap=broker.bootstrap, topic_prefix=unique("t"), node=unique("node"),
            partitions=2, state_dir=state_dir, model_dir=model_dir, web_port=free_port(),
            chdb_path=tmp_path / "chdb", store="embedded", batch_size=4, sink_flush_s=0.5,
            sample_video=DEFAULTS.sample_video, telemetry_sample_rate=1.0, max_frame_age_ms=0,
            offload_policy="fixed",
        )
        base.update(kw)
        return Settings(**base)

    return make


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


@pytest.fixture(scope="session")
def measurements() -> Iterator[dict[str, dict[str, Any]]]:
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
