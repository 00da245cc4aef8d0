"""What every worker runs for telemetry, whatever its roles:

- ``telemetry-windows`` (each second): closed windows of the frames this worker
  detected (counters and sketches, :class:`~autosteer.telemetry.window.WindowAggregator`)
  -> ``<prefix>.telemetry.windows``; a sample of per-frame rows -> ``<prefix>.telemetry``
  (:class:`Tap`, fed by the detectors);
- ``heartbeat``: resources and counters -> ``<prefix>.telemetry.nodes``;
- ``nodes`` agent: the heartbeats of every worker (the UI's node health);
- ``topics`` (every 5 s): re-create topics the broker lost (a restarted in-memory tansu
  loses them all; Faust does not re-create them), and say that their data is gone;
- with role ``sink``: the loader thread that stores the telemetry topics in ClickHouse
  (:class:`~autosteer.telemetry.loader.TelemetryLoader`, exactly once).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from autosteer.errors import InfraError
from autosteer.streams.pipeline import Result, parse_valid
from autosteer.streams.runtime import Runtime
from autosteer.telemetry.loader import TelemetryLoader
from autosteer.telemetry.resources import ResourceProbe
from autosteer.telemetry.sampling import Sampler
from autosteer.telemetry.schema import FRAMES, NODES, QUALITY, WINDOWS
from autosteer.telemetry.sink import Sink
from autosteer.telemetry.store import TelemetryStore, open_store
from autosteer.telemetry.window import WindowAggregator
from autosteer.topics.records import NodeRecord, now_ms

log = logging.getLogger(__name__)


class Tap:
    """Where detectors hand each published result: the windows, and a sample of rows."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.windows = WindowAggregator(rt.settings.node, rt.settings.window_s)
        self.sampler = Sampler(rt.settings.telemetry_sample_rate)

    async def frame(self, r: Result) -> None:
        self.windows.update(r.sample())
        if self.sampler.keep():
            row = r.telemetry.model_copy(update={"sample_weight": self.sampler.weight})
            await self.rt.bus.publish(self.rt.names.telemetry, self.rt.settings.node.encode(),
                                      row.dumps())


class StoreHandle:
    """The telemetry store, opened (and set up) on first use, from any thread."""

    def __init__(self, rt: Runtime, store: TelemetryStore | None = None) -> None:
        self._settings = rt.settings
        self._store = store
        self._lock = threading.Lock()

    def get(self) -> TelemetryStore:
        with self._lock:
            if self._store is None:
                store = open_store(self._settings)
                store.setup()
                self._store = store
            return self._store


class Telemetry:
    """Windows, heartbeats, the nodes' heartbeats, the topic check and (role ``sink``)
    the loader; ``counts()`` gives the heartbeat the other roles' counters."""

    def __init__(self, rt: Runtime, roles: frozenset[str], store: StoreHandle,
                 counts: Callable[[], Mapping[str, int]]) -> None:
        s = rt.settings
        self.rt = rt
        self.roles = roles
        self.store = store
        self.tap = Tap(rt)
        self.counts = counts
        self.nodes: dict[str, tuple[float, NodeRecord]] = {}  # node -> (seen at, heartbeat)
        self.topics_recreated = 0
        self.loader: TelemetryLoader | None = None
        self._sink: Sink | None = None
        self._probe = ResourceProbe()
        self._admin: Any = None  # the topic check's AdminClient, made on first use
        rt.agent(rt.names.telemetry_nodes, "nodes", self.on_heartbeats, size=64, within=0.2)
        rt.timer(1.0, "telemetry-windows", self.emit_windows)
        rt.timer(s.heartbeat_s, "heartbeat", self.heartbeat)
        rt.timer(5.0, "topics", self.check_topics)
        if "sink" in roles:
            rt.on_start(self.start_loader)
            rt.on_start(self.open_store)  # early, so /sql works at once
        rt.on_stop(self.stop)

    @property
    def windows(self) -> WindowAggregator:
        return self.tap.windows

    @property
    def sink(self) -> Sink:
        if self._sink is None:
            self._sink = Sink(self.store.get())
        return self._sink

    async def open_store(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.store.get)

    async def start_loader(self) -> None:
        names = self.rt.names
        sink = await asyncio.get_running_loop().run_in_executor(None, lambda: self.sink)
        self.loader = TelemetryLoader(
            self.rt.settings, {names.telemetry: FRAMES, names.telemetry_windows: WINDOWS,
                               names.telemetry_nodes: NODES, names.quality: QUALITY},
            sink, names.deadletter, health=self.rt.health)
        self.loader.start()

    async def stop(self) -> None:
        await self.emit_windows(force=True)
        if self.loader is not None:
            self.loader.stop()
            await asyncio.get_running_loop().run_in_executor(None, self.loader.join, 15)

    async def on_heartbeats(self, events: Sequence[Any]) -> None:
        for rec in parse_valid((e.message.value for e in events), NodeRecord):
            self.nodes[rec.node] = (time.time(), rec)

    async def emit_windows(self, force: bool = False) -> None:
        for w in self.windows.flush(now_ms(), force=force):
            await self.rt.bus.publish(self.rt.names.telemetry_windows,
                                      self.rt.settings.node.encode(), w.dumps())

    def stored(self) -> tuple[int, int]:
        """Telemetry rows stored and failed store writes (the loader's, when here)."""
        if self.loader is None:
            return 0, 0
        return self.loader.rows, self.sink.failures

    async def heartbeat(self) -> None:
        rec = NodeRecord(ts_ms=now_ms(), node=self.rt.settings.node,
                         roles=",".join(sorted(self.roles)), **self._probe.read(),
                         **self.counts())
        await self.rt.bus.publish(self.rt.names.telemetry_nodes, self.rt.settings.node.encode(),
                                  rec.dumps())

    async def check_topics(self) -> None:
        """Re-create topics the broker lost; the data that was in them is gone: say so."""
        from autosteer.topics.admin import ensure_topics
        from confluent_kafka.admin import AdminClient

        if self._admin is None:  # one client for every check, not one per check
            self._admin = AdminClient(self.rt.settings.confluent_config())
        try:
            created = await asyncio.get_running_loop().run_in_executor(
                None, ensure_topics, self.rt.settings, 3.0, self._admin)
        except InfraError as exc:
            log.warning("broker unreachable: %s", exc)
            return
        if created:
            self.topics_recreated += len(created)
            log.error("the broker lost topics %s (restarted without durable storage?); "
                      "re-created them empty: messages that were in them are lost", created)
