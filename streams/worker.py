"""The worker: one Faust app, one bus, and the roles ``AUTOSTEER_ROLES`` names.

:class:`Worker` builds the app (:mod:`.faust_app`), the bus (:mod:`.bus`) and the
runtime the roles register on (:mod:`.runtime`), then builds each role with explicit
dependencies (:mod:`.roles`). It holds no pipeline state itself; the web layer sees it
through a read-only :class:`WorkerView`.

Delivery (:func:`~.kafka.probe_delivery`, at start): on a broker with transactions
(Kafka) each detector reads its tier topic with its own consumer and commits every
batch's results together with its input offsets in one transaction (exactly-once for
read_committed readers of detections). Elsewhere (tansu) processing is at-least-once and
results carry an idempotent key ``camera:seq``: a detector holds a reference on each
message until its results are in the producer, and Faust flushes the producer before it
commits offsets. Malformed messages go to the dead-letter topic, and nothing escapes an
agent (:mod:`.supervise`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import faust
from autosteer.offload.factory import make_link, make_policy
from autosteer.offload.policy import OffloadPolicy
from autosteer.processors.detector import Detector, load_detector
from autosteer.processors.ingest import CameraIngest
from autosteer.settings import Settings
from autosteer.streams.bus import FaustBus
from autosteer.streams.faust_app import make_app
from autosteer.streams.kafka import (
    NOT_PROBED,
    BrokerLag,
    Delivery,
    TransactionalStream,
    probe_delivery,
)
from autosteer.streams.roles import ROLES
from autosteer.streams.roles.control import ActionFollower, ControlPlane
from autosteer.streams.roles.detector import DetectorRole, Faults
from autosteer.streams.roles.drift import DriftWatch
from autosteer.streams.roles.ingest import Ingest
from autosteer.streams.roles.retrain import RetrainRole
from autosteer.streams.roles.rollout import ModelRollout, RolloutJudge
from autosteer.streams.roles.router import Router
from autosteer.streams.roles.telemetry import StoreHandle, Telemetry
from autosteer.streams.runtime import FaustRuntime
from autosteer.streams.supervise import Health, Supervisor
from autosteer.telemetry.store import TelemetryStore
from autosteer.topics.names import TopicNames
from autosteer.topics.records import NodeRecord

log = logging.getLogger(__name__)
TIERS = ("edge", "cloud")


@dataclass(frozen=True)
class WorkerView:
    """What the web layer may see of a worker (and the two fault knobs it may turn)."""

    settings: Settings
    roles: frozenset[str]
    names: TopicNames
    health: Health
    supervisor: Supervisor
    faults: Faults
    events: deque[dict[str, Any]]
    policy: str  # the policy's repr
    counts: Callable[[], dict[str, int]]  # the heartbeat's counters
    cameras: Callable[[], Mapping[str, CameraIngest]]
    nodes: Callable[[], Mapping[str, tuple[float, NodeRecord]]]
    store: Callable[[], TelemetryStore]
    delivery: Delivery  # the guarantee in force, and why
    broker_lag: Callable[[], Mapping[tuple[str, str], int]]  # (topic, group) -> lag; {} on tansu
    offload_ratio: Callable[[], float]  # the router's cloud share since start (NaN: none)


class Worker:
    """A thin worker (see the module)."""

    def __init__(self, settings: Settings, *, policy: OffloadPolicy | None = None,
                 detectors: dict[str, Detector] | None = None,
                 store: TelemetryStore | None = None, delivery: Delivery = NOT_PROBED) -> None:
        self.settings = s = settings
        kafka = delivery.exactly_once  # a broker with transactions and real watermarks
        self.roles = frozenset(settings.role_set())
        unknown = self.roles - set(ROLES)
        if unknown:
            raise ValueError(f"AUTOSTEER_ROLES has unknown role(s) {sorted(unknown)}; "
                             f"choose from {', '.join(ROLES)}")
        if kafka and not self.roles & set(TIERS):
            delivery = Delivery("at-least-once", "no detector here: the router's hop is a "
                                "Faust agent, at-least-once (detectors on this broker commit "
                                "their results in transactions)")
        self.delivery = delivery
        names = TopicNames(s.topic_prefix)
        self.app = make_app(s)
        self.bus = FaustBus(self.app, names.all(), names.deadletter, s.node, s.max_message_bytes)
        self.rt = rt = FaustRuntime(s, self.app, self.bus, Health(s.agent_stall_s))
        self.faults = Faults()
        self._detectors = dict(detectors or {})
        self.store = StoreHandle(rt, store)
        self.telemetry = Telemetry(rt, self.roles, self.store, self.counts)
        self.policy = policy or make_policy(s)
        link = make_link(s)
        self.router = (Router(rt, self.policy, link, windows=self.telemetry.windows)
                       if "router" in self.roles else None)
        drift = judge = None
        if self.router is not None:
            if s.shadow_rate > 0:
                drift = DriftWatch(rt, self.router.sampler)
                judge = RolloutJudge(rt, self.router.sampler)
                self.router.pairing.listeners += [drift, judge]
            ActionFollower(rt, self.policy)
        self.detectors = {
            tier: DetectorRole(rt, tier, lambda t=tier: self.detector(t), self.telemetry.tap,  # type: ignore[misc]
                               self.faults, link, self._stream(tier))
            for tier in TIERS if tier in self.roles}
        # on Kafka the lag comes from the broker (tansu's high watermarks are wrong)
        self.lag = BrokerLag(s, rt.health) if kafka else None
        if self.lag is not None:
            rt.on_start(self._start_lag)
        if self.roles & {"edge", "cloud", "router"}:
            ModelRollout(rt, self.roles, self.detectors, self.detector_threads(), judge, drift)
        self.ingest = Ingest(rt) if "ingest" in self.roles else None
        if "anomaly" in self.roles:
            ControlPlane(rt, self.store, self.telemetry.windows, lambda: self.telemetry.nodes)
        if "retrain" in self.roles:
            RetrainRole(rt)
        from autosteer.streams.web import register_pages

        self.web = register_pages(self.app, self.view())

    def _stream(self, tier: str) -> TransactionalStream | None:
        if not self.delivery.exactly_once:
            return None
        return TransactionalStream(self.settings, self.rt.names.tier_topic(tier),
                                   f"detect-{tier}")

    async def _start_lag(self) -> None:
        assert self.lag is not None
        self.lag.start()
        self.rt.on_stop(self._stop_lag)

    async def _stop_lag(self) -> None:
        if self.lag is not None:
            self.lag.stop()

    def view(self) -> WorkerView:
        return WorkerView(
            settings=self.settings, roles=self.roles, names=self.rt.names,
            health=self.rt.health, supervisor=self.rt.supervisor, faults=self.faults,
            events=self.rt.events, policy=repr(self.policy), counts=self.counts,
            cameras=lambda: dict(self.ingest.cameras) if self.ingest else {},
            nodes=lambda: self.telemetry.nodes, store=self.store.get,
            delivery=self.delivery,
            broker_lag=lambda: self.lag.snapshot() if self.lag is not None else {},
            offload_ratio=lambda: self.router.offload_ratio if self.router else math.nan)

    def counts(self) -> dict[str, int]:
        """This worker's counters, as its heartbeat carries them."""
        router = self.router
        routed = router.routed if router else {"edge": 0, "cloud": 0}
        det = self.detectors
        return {"routed_edge": routed["edge"], "routed_cloud": routed["cloud"],
                "detected_edge": det["edge"].detected if "edge" in det else 0,
                "detected_cloud": det["cloud"].detected if "cloud" in det else 0,
                "frames_shed": sum(d.shed for d in det.values()) + (router.shed if router else 0),
                "frames_reused": router.gate.reused if router and router.gate else 0,
                "dead_letters": self.bus.counts.dead_letters,
                "send_failures": self.bus.counts.send_failures,
                **dict(zip(("telemetry_rows", "store_retries"), self.telemetry.stored(),
                           strict=True)),
                **(self.ingest.counts() if self.ingest else
                   {"frames_dropped": 0, "frames_skipped": 0})}

    def detector_threads(self) -> int:
        """ONNX Runtime threads per detector: the cores, shared by this worker's tiers."""
        tiers_here = max(1, len(self.roles & {"edge", "cloud"}))
        return self.settings.intra_op_threads or max(1, (os.cpu_count() or 1) // tiers_here)

    def detector(self, tier: str) -> Detector:
        """The tier's model (loaded on first use, in the detector's inference thread)."""
        if tier not in self._detectors:
            s = self.settings
            name = s.edge_model if tier == "edge" else s.cloud_model
            self._detectors[tier] = load_detector(
                s.model_dir, name, providers=s.providers,
                intra_op_threads=self.detector_threads(), score_threshold=s.score_threshold)
        return self._detectors[tier]


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Create the topics, build the worker and run its Faust app until stopped."""
    from autosteer.topics.admin import ensure_topics

    ensure_topics(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    delivery = probe_delivery(settings)
    worker = Worker(settings, delivery=delivery)
    started = time.monotonic()
    log.info("worker %s starting roles %s; delivery %s: %s", settings.node,
             sorted(worker.roles), delivery.guarantee, delivery.reason)
    try:
        faust.Worker(worker.app, loglevel=loglevel, quiet=True).execute_from_commandline()
    finally:
        if worker.ingest is not None:
            worker.ingest.stop()
        log.info("worker ran %.0fs", time.monotonic() - started)
