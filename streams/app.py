"""The Faust app: one worker runs any subset of the pipeline's agents (``AUTOSTEER_ROLES``).

Agents (each an ``async for`` loop over batches that calls :mod:`.pipeline`):

- ``router``   frames            -> frames.edge | frames.cloud  (offload policy decides)
- ``feedback`` detections        -> policy.learn                (with the router)
- ``edge``     frames.edge       -> detections, telemetry rows  (edge model)
- ``cloud``    frames.cloud      -> detections, telemetry rows  (cloud model)
- ``sink``     telemetry, telemetry.windows, telemetry.nodes -> ClickHouse (exactly once;
               a batched confluent-kafka consumer thread, not a Faust agent: see
               :mod:`autosteer.telemetry.loader`)
- ``ingest``   cameras           -> starts/stops RTSP readers that produce to frames

Every worker also closes its telemetry windows (each second) and sends a heartbeat.

Processing is at-least-once (tansu cannot run Faust's exactly-once). Results carry an
idempotent key ``camera:seq``. Sends are not awaited one by one: a detector holds a
reference on each message until its results are in the producer, and Faust flushes the
producer before it commits offsets. Malformed messages go to the dead-letter topic;
agents keep running.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import faust
from autosteer.errors import RecordError
from autosteer.offload.factory import make_link, make_policy
from autosteer.offload.policy import OffloadPolicy
from autosteer.processors.detector import Detector, load_detector
from autosteer.processors.ingest import CameraIngest
from autosteer.retrain.agreement import agreement
from autosteer.settings import Settings
from autosteer.streams.kafka import FrameSender
from autosteer.streams.pipeline import (
    Canary,
    DetectStage,
    Incoming,
    Prepared,
    Rejected,
    Result,
    copy_observation,
    observations,
    parse_valid,
    route,
)
from autosteer.streams.transport import App
from autosteer.telemetry.loader import TelemetryLoader
from autosteer.telemetry.resources import ResourceProbe
from autosteer.telemetry.sampling import Sampler
from autosteer.telemetry.schema import FRAMES, NODES, QUALITY, WINDOWS
from autosteer.telemetry.sink import Sink
from autosteer.telemetry.store import TelemetryStore, open_store
from autosteer.telemetry.window import WindowAggregator
from autosteer.topics import headers as H
from autosteer.topics.names import TopicNames
from autosteer.topics.records import (
    CameraCommand,
    Detection,
    NodeRecord,
    OffloadDecision,
    QualityRecord,
    ShadowResult,
    now_ms,
)

log = logging.getLogger(__name__)
ROLES = ("router", "edge", "cloud", "sink", "ingest", "anomaly", "retrain")


def _credentials(s: Settings) -> Any:
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


def _header(headers: Any, name: str) -> bytes | None:
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for k, v in items:
        if k == name:
            return v
    return None


def incoming(event: Any) -> Incoming:
    m = event.message
    routed = _header(m.headers, H.ROUTED_MS)
    produced = _header(m.headers, H.PRODUCED_MS)  # set by the router on tier topics
    return Incoming(
        value=m.value, key=m.key, topic=m.topic, partition=m.partition, offset=m.offset,
        produced_ms=int(produced) if produced and produced.isdigit()
        else int(m.timestamp * 1000) if m.timestamp else 0,
        routed_ms=int(routed) if routed and routed.isdigit() else 0,
        received_ms=now_ms() - int((time.monotonic() - m.time_in) * 1000) if m.time_in else 0,
        shadow=_header(m.headers, H.SHADOW) == b"1",
    )



@dataclass
class Counters:
    """Process-local counters, read by the web endpoints and the demo."""

    routed: dict[str, int] = field(default_factory=lambda: {"edge": 0, "cloud": 0})
    detected: dict[str, int] = field(default_factory=lambda: {"edge": 0, "cloud": 0})
    dead_letters: int = 0
    telemetry_rows: int = 0
    store_retries: int = 0
    send_failures: int = 0
    shed: int = 0
    topics_recreated: int = 0


class Pipeline:
    """Everything one worker holds: app, topics, policy, detectors, store, cameras."""

    def __init__(self, settings: Settings, *, policy: OffloadPolicy | None = None,
                 detectors: dict[str, Detector] | None = None,
                 store: TelemetryStore | None = None) -> None:
        self.settings = settings
        self.roles = settings.role_set()
        unknown = self.roles - set(ROLES)
        if unknown:
            raise ValueError(f"AUTOSTEER_ROLES has unknown role(s) {sorted(unknown)}; "
                             f"choose from {', '.join(ROLES)}")
        self.names = TopicNames(settings.topic_prefix)
        self.policy = policy or make_policy(settings)
        self.link = make_link(settings)
        self.decisions: deque[OffloadDecision] = deque(maxlen=600)
        self.quality: deque[QualityRecord] = deque(maxlen=1000)
        # UI feeds: dicts with kind (anomaly, root_cause, drift, model_swap,
        # retrain_request), ts_ms, title and optional sql, camera, tier
        self.events: deque[dict[str, Any]] = deque(maxlen=1000)
        self.fault_delay_ms = 0.0  # injected service time per detector batch (POST /fault)
        self.stages: dict[str, DetectStage] = {}
        self._models: dict[tuple[str, str], Detector] = {}  # loaded updates, by model@version
        self._pending_updates: dict[str, list[Any]] = {}  # updates seen before the stage
        self.watcher: Any = None
        self._admin: Any = None  # confluent AdminClient of the topic check, made on first use
        self._shadow_credit = 0.0
        self.shadow_boost: dict[str, float] = {}  # camera -> until (epoch s): teacher frames
        self._shadowed: dict[tuple[str, int], float] = {}  # shadow frames awaiting a pair
        self._copies: dict[tuple[str, int], float] = {}  # shadows the policy asked for
        self._pairs: dict[tuple[str, int], dict[str, Any]] = {}
        self._detectors = detectors or {}
        self._store = store
        self.counters = Counters()
        self.cameras: dict[str, CameraIngest] = {}
        self._frame_sender: FrameSender | None = None
        self.windows = WindowAggregator(settings.node, settings.window_s)
        self.sampler = Sampler(settings.telemetry_sample_rate)
        self._sink: Sink | None = None
        self.loader: TelemetryLoader | None = None
        self.nodes: dict[str, tuple[float, NodeRecord]] = {}  # node -> (seen at, heartbeat)
        self._halt = threading.Event()  # set at shutdown: stops sink retries
        self.app = self._make_app()
        self.topics = {
            name: self.app.topic(name, key_type=bytes, value_type=bytes,
                                 key_serializer="raw", value_serializer="raw")
            for name in (self.names.frames, self.names.frames_edge, self.names.frames_cloud,
                         self.names.detections, self.names.telemetry, self.names.deadletter,
                         self.names.cameras, self.names.telemetry_windows,
                         self.names.telemetry_nodes, self.names.offload_decisions,
                         self.names.shadow, self.names.quality, self.names.anomalies,
                         self.names.rootcauses, self.names.retrain_requests,
                         self.names.models_updates, self.names.control_actions)
        }
        self._register_agents()
        from autosteer.streams.web import register_pages

        self.drift: Any = None
        self.judge: Any = None
        if "router" in self.roles and settings.shadow_rate > 0:
            from autosteer.streams.loop import DriftWatch, RolloutJudge

            self.drift, self.judge = DriftWatch(self), RolloutJudge(self)
        self.retrain: Any = None
        if "retrain" in self.roles:
            from autosteer.streams.loop import RetrainAgent

            self.retrain = RetrainAgent(self)
        self.control = None
        if "anomaly" in self.roles:
            from autosteer.streams.control import ControlPlane

            self.control = ControlPlane(self)
        self.follower: Any = None
        if "router" in self.roles:
            from autosteer.streams.control import ActionFollower

            self.follower = ActionFollower(self)
        register_pages(self)

    # --- app -------------------------------------------------------------------------
    def _make_app(self) -> faust.App:
        s = self.settings
        broker = ";".join(f"kafka://{h.strip()}" for h in s.kafka_bootstrap.split(","))
        return App(
            f"{s.topic_prefix}-pipeline",
            broker=broker,
            broker_credentials=_credentials(s),
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

    @property
    def store(self) -> TelemetryStore:
        if self._store is None:
            self._store = open_store(self.settings)
            self._store.setup()
        return self._store

    def detector_threads(self) -> int:
        """ONNX Runtime threads per detector: the cores, shared by this worker's tiers."""
        tiers_here = max(1, len(self.roles & {"edge", "cloud"}))
        return self.settings.intra_op_threads or max(1, (os.cpu_count() or 1) // tiers_here)

    def detector(self, tier: str) -> Detector:
        if tier not in self._detectors:
            s = self.settings
            name = s.edge_model if tier == "edge" else s.cloud_model
            # detectors in one process share the cores instead of oversubscribing them
            threads = self.detector_threads()
            self._detectors[tier] = load_detector(
                s.model_dir, name, providers=s.providers, intra_op_threads=threads,
                score_threshold=s.score_threshold)
        return self._detectors[tier]

    async def dead_letter(self, rejected: Sequence[Rejected]) -> None:
        if not rejected:
            return
        topic = self.topics[self.names.deadletter]
        for r in rejected:
            log.warning("dead letter from %s[%d]@%d: %s", r.item.topic, r.item.partition,
                        r.item.offset, r.error)
            letter = r.dead_letter(self.settings.node, self.settings.max_message_bytes)
            self._watch(await topic.send(key=r.item.key, value=letter.dumps()))
        self.counters.dead_letters += len(rejected)

    def _watch(self, fut: Any) -> None:
        """Count and log a failed send. Sends are not awaited one by one: Faust flushes
        the producer before it commits offsets, so a frame whose results were not
        delivered is consumed again after a crash (at-least-once)."""
        fut.add_done_callback(self._on_sent)

    def _on_sent(self, fut: Any) -> None:
        exc = fut.exception() if not fut.cancelled() else None
        if exc is not None:
            self.counters.send_failures += 1
            log.error("send failed: %s", exc)

    # --- agents ----------------------------------------------------------------------
    def _register_agents(self) -> None:
        s = self.settings
        if "router" in self.roles:
            self.app.agent(self.topics[self.names.frames], name="router")(self._router)
            self.app.timer(1.0, name="offload-decisions")(self._decisions)
            self.app.agent(self.topics[self.names.shadow], name="shadows")(self._shadows)
            self.app.agent(self.topics[self.names.detections], name="feedback")(self._feedback)
        for tier in ("edge", "cloud"):
            if tier in self.roles:
                topic = self.topics[self.names.tier_topic(tier)]
                self.app.agent(topic, name=f"detect-{tier}")(self._make_detector_agent(tier))
        if "sink" in self.roles:
            @self.app.task
            async def _start_loader() -> None:
                loop = asyncio.get_running_loop()
                sink = await loop.run_in_executor(None, lambda: self.sink)
                self.loader = TelemetryLoader(
                    s, {self.names.telemetry: FRAMES, self.names.telemetry_windows: WINDOWS,
                        self.names.telemetry_nodes: NODES, self.names.quality: QUALITY}, sink,
                    self.names.deadletter)
                self.loader.start()
        if self.roles & {"edge", "cloud", "router"}:
            @self.app.task
            async def _watch_models() -> None:
                from autosteer.streams.models import ModelWatcher

                self.watcher = ModelWatcher(s, self.names.models_updates, self._on_update)
                self.watcher.start()

        # every worker follows the heartbeats (the UI's node health; also gives a worker
        # with no other agent, e.g. sink only, a topic for Faust's consumer)
        self.app.agent(self.topics[self.names.telemetry_nodes], name="nodes")(self._nodes)
        self._probe = ResourceProbe()
        self.app.timer(5.0, name="topics")(self._check_topics)
        self.app.timer(1.0, name="telemetry-windows")(self._emit_windows)
        self.app.timer(s.heartbeat_s, name="heartbeat")(self._heartbeat)

        @self.app.on_before_shutdown.connect
        async def _flush_telemetry(app: Any, **kw: Any) -> None:
            self._halt.set()
            if self.watcher is not None:
                self.watcher.stop()
            await self._emit_windows(force=True)
            if self.loader is not None:
                self.loader.stop()
                await asyncio.get_running_loop().run_in_executor(None, self.loader.join, 15)
        if "ingest" in self.roles:
            self.app.agent(self.topics[self.names.cameras], name="cameras")(self._cameras)

            @self.app.on_before_shutdown.connect
            async def _stop_cameras(app: Any, **kw: Any) -> None:
                self.stop_cameras()
        if "sink" in self.roles:  # (in embedded mode only the sink's worker opens chdb)
            @self.app.task
            async def _open_store() -> None:  # open early so /sql works at once
                await asyncio.get_running_loop().run_in_executor(None, lambda: self.store)

    async def _router(self, stream: Any) -> None:
        out = {t: self.topics[self.names.tier_topic(t)] for t in ("edge", "cloud")}
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(256, within=0.005):
            routed, rejected = route([incoming(e) for e in events], self.policy,
                                     self._shadow_due)
            now = now_ms()
            ts = str(now).encode()
            by_pos = {(e.message.partition, e.message.offset): e for e in events}
            for r in routed:
                e = by_pos[(r.item.partition, r.item.offset)]
                send = functools.partial(
                    out[r.tier].send, key=r.item.key or r.frame.camera.encode(),
                    value=r.value,
                    headers=[(H.ROUTED_MS, ts), (H.TIER, r.tier.encode()),
                             (H.PRODUCED_MS, str(r.item.produced_ms).encode())])
                self.counters.routed[r.tier] += 1
                if r.tier == "cloud" and self.link is not None:
                    # the emulated WAN: the frame reaches the cloud topic after its transit;
                    # the message is held (not committed) until then
                    e.message.incref()
                    delay = self.link.transit_s(len(r.value or b""), now / 1000)
                    loop.call_later(delay, lambda s=send, ev=e: asyncio.ensure_future(
                        self._send_then_ack(s, ev)))
                else:
                    self._watch(await send())
                if r.shadow:
                    # also to the cloud as captured, marked: its answer measures the edge's
                    # agreement, and for a copy the policy counts, the link and the cloud
                    key = (r.frame.camera, r.frame.seq)
                    self._shadowed[key] = time.time()
                    if r.copy:
                        self._copies[key] = time.time()
                    copy = functools.partial(
                        out["cloud"].send, key=r.item.key or r.frame.camera.encode(),
                        value=r.item.value,
                        headers=[(H.ROUTED_MS, ts), (H.TIER, b"cloud"), (H.SHADOW, b"1"),
                                 (H.PRODUCED_MS, str(r.item.produced_ms).encode())])
                    if self.link is not None:  # over the same emulated link, as a real
                        # network would carry it (counted or not by the policy)
                        delay = self.link.transit_s(len(r.item.value or b""), now / 1000)
                        loop.call_later(delay, lambda c=copy: asyncio.ensure_future(
                            self._send_then_ack(c)))
                    else:
                        self._watch(await copy())
            await self.dead_letter(rejected)

    def _shadow_due(self, camera: str) -> bool:
        """Every 1/shadow_rate-th edge frame (a deficit counter, not a coin flip); every
        1/retrain_shadow_rate-th of a camera whose retrain request collects teacher frames."""
        until = self.shadow_boost.get(camera)
        boosted = until is not None and time.time() < until
        if until is not None and not boosted:
            self.shadow_boost.pop(camera, None)
        self._shadow_credit += (self.settings.retrain_shadow_rate if boosted
                                else self.settings.shadow_rate)
        if self._shadow_credit >= 1.0:
            self._shadow_credit -= 1.0
            return True
        return False

    async def _send_then_ack(self, send: Any, event: Any = None) -> None:
        """Send (after the emulated link held it), then ack the message it came from (a
        copy has none to ack: its frame went to the edge)."""
        self._watch(await send())
        if event is not None:
            event.ack()

    async def _decisions(self) -> None:
        """Run the policy's control step (if it has one) and publish what it decided."""
        tick = getattr(self.policy, "tick", None)
        if tick is None:
            return
        d = tick()
        def num(v: float) -> float | None:
            return None if v is None or v != v else round(float(v), 3)
        rec = OffloadDecision(
            ts_ms=now_ms(), node=self.settings.node, policy=self.settings.offload_policy,
            offload_ratio=num(d.offload_ratio) or 0.0,
            offload={k: round(v, 4) for k, v in d.offload.items()},
            predicted_mean_ms=num(d.predicted_mean_ms), predicted_p95_ms=num(d.predicted_p95_ms),
            measured_mean_ms=num(d.measured_mean_ms), measured_p95_ms=num(d.measured_p95_ms),
            edge_util=num(d.edge_util), link_util=num(d.link_util), cloud_util=num(d.cloud_util),
            reason=d.reason, level=getattr(d, "level", "full"),
            predicted_accuracy=num(getattr(d, "predicted_accuracy", None)))
        self.decisions.append(rec)
        self._watch(await self.topics[self.names.offload_decisions].send(
            key=self.settings.node.encode(), value=rec.dumps()))

    # --- hot swap --------------------------------------------------------------------
    def _on_update(self, update: Any) -> None:
        """A model update (watcher thread): load it here, switch between batches."""
        if self.judge is not None:
            self.judge.on_update(update)
            if update.canary >= 1.0 and self.drift is not None:  # new outputs are expected
                self.drift.reset(update.cameras)
        if update.tier not in self.roles:
            return
        if update.canary > 0:
            key = (update.model, update.version)
            if key not in self._models:
                from autosteer.streams.models import load_update

                self._models[key] = load_update(update, self.settings, self.detector_threads())
        if update.tier not in self.stages:
            self._pending_updates.setdefault(update.tier, []).append(update)
            return
        self._apply_update(update)

    def _apply_update(self, update: Any) -> None:
        stage = self.stages[update.tier]
        det = self._models.get((update.model, update.version))
        if update.canary >= 1.0 and det is not None:
            stage.swap(det, update.thresholds)
            what = "serving"
        elif update.canary > 0 and det is not None:
            stage.try_out(Canary(det, update.canary, frozenset(update.cameras),
                                 dict(update.thresholds)))
            what = f"canary {update.canary:.0%}"
        else:
            if stage.candidate is not None and stage.candidate.detector.version == update.version:
                stage.try_out(None)
            what = "rolled back"
        log.warning("%s model %s@%s: %s", update.tier, update.model, update.version, what)
        self.events.append({"kind": "model_swap", "ts_ms": now_ms(), "tier": update.tier,
                            "title": f"{update.tier} {update.model}@{update.version}: {what}"})

    async def _feedback(self, stream: Any) -> None:
        """Detections -> ``policy.learn``: the offload policy sees what its choices did."""
        async for events in stream.take_events(256, within=0.05):
            detections = parse_valid((e.message.value for e in events), Detection)
            for obs in observations(detections):
                self.policy.learn(obs)
            if self._shadowed:
                for d in detections:
                    self._pair_edge(d)
            await self._publish_quality()

    def _pair_edge(self, d: Detection) -> None:
        if d.tier == "edge" and (d.camera, d.seq) in self._shadowed:
            self._pairs.setdefault((d.camera, d.seq), {})["edge"] = d

    async def _shadows(self, stream: Any) -> None:
        """Cloud answers on shadow frames -> paired with the edge's -> agreement."""
        async for events in stream.take_events(64, within=0.1):
            for sr in parse_valid((e.message.value for e in events), ShadowResult):
                self._pairs.setdefault((sr.camera, sr.seq), {})["cloud"] = sr
                self._shadowed.setdefault((sr.camera, sr.seq), time.time())
                if self._copies.pop((sr.camera, sr.seq), None) is not None:
                    obs = copy_observation(sr)
                    if obs is not None:
                        self.policy.learn(obs)
            await self._publish_quality()

    async def _publish_quality(self) -> None:
        topic = self.topics[self.names.quality]
        for key in [k for k, v in self._pairs.items() if len(v) == 2]:
            pair = self._pairs.pop(key)
            self._shadowed.pop(key, None)
            edge, cloud = pair["edge"], pair["cloud"]
            q = QualityRecord(
                ts_ms=now_ms(), node=self.settings.node, camera=edge.camera, seq=edge.seq,
                edge_model_id=edge.model_id, edge_model_version=edge.model_version,
                cloud_model_id=cloud.model_id, cloud_model_version=cloud.model_version,
                agreement=agreement(edge.boxes, cloud.boxes), edge_boxes=len(edge.boxes),
                cloud_boxes=len(cloud.boxes),
                edge_mean_score=_mean([b.score for b in edge.boxes]),
                cloud_mean_score=_mean([b.score for b in cloud.boxes]))
            self.quality.append(q)
            self._watch(await topic.send(key=q.camera.encode(), value=q.dumps()))
            if self.drift is not None:
                await self.drift.on_pair(edge, cloud, q)
            if self.judge is not None:
                await self.judge.on_pair(q)
        cutoff = time.time() - 120  # a pair that never completed (lost, shed) is dropped
        for key in [k for k, ts in self._shadowed.items() if ts < cutoff]:
            self._shadowed.pop(key, None)
            self._pairs.pop(key, None)
            self._copies.pop(key, None)

    def _make_detector_agent(self, tier: str) -> Any:
        decode_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"decode-{tier}")
        infer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{tier}")

        async def detect(stream: Any) -> None:
            """Decode batch k+1 while batch k is in the model (two batches in flight at
            most). take_events acks a batch when the next one is taken, so each message
            holds one extra reference until its results are handed to the producer."""
            loop = asyncio.get_running_loop()
            stage = DetectStage(await loop.run_in_executor(infer_pool, self.detector, tier),
                                tier, self.settings.node,  # type: ignore[arg-type]
                                max_age_ms=self.settings.max_frame_age_ms)
            self.stages[tier] = stage
            for update in self._pending_updates.pop(tier, []):
                self._apply_update(update)
            in_model: asyncio.Future | None = None
            async for events in stream.take_events(self.settings.batch_size,
                                                   within=self.settings.batch_wait_s):
                taken = now_ms()
                depth = len(events) + _buffered(stream)
                for e in events:
                    e.message.incref()
                prepared = await loop.run_in_executor(
                    decode_pool, stage.prepare, [incoming(e) for e in events])
                if in_model is not None:
                    await in_model
                in_model = asyncio.ensure_future(
                    self._infer_and_publish(stage, infer_pool, prepared, events, taken, depth))
            if in_model is not None:
                await in_model

        detect.__name__ = f"detect_{tier}"
        return detect

    async def _infer_and_publish(self, stage: DetectStage, pool: ThreadPoolExecutor,
                                 prepared: Prepared, events: Sequence[Any], taken: int,
                                 depth: int) -> None:
        loop = asyncio.get_running_loop()
        results, failed = await loop.run_in_executor(
            pool, functools.partial(stage.infer, prepared, taken, depth,
                                    extra_s=self.fault_delay_ms / 1000))
        if stage.tier == "cloud" and self.link is not None:
            # the emulated WAN's way back: results reach the edge side one delay later; the
            # next batch does not wait for it, the messages stay unacked until then
            back = self.link.delay_s + self.link.jitter()
            results = [r.returned(back * 1000) for r in results]
            loop.call_later(back, lambda: asyncio.ensure_future(
                self._publish(stage, prepared, results, failed, events)))
            return
        await self._publish(stage, prepared, results, failed, events)

    async def _publish(self, stage: DetectStage, prepared: Prepared, results: list[Result],
                       failed: list[Rejected], events: Sequence[Any]) -> None:
        det_topic = self.topics[self.names.detections]
        tel_topic = self.topics[self.names.telemetry]
        node_key = self.settings.node.encode()
        shadow_topic = self.topics[self.names.shadow]
        for r in results:
            if r.shadow_jpeg is not None:  # not a result for users: the edge answers it
                self._watch(await shadow_topic.send(key=r.key, value=r.shadow_result().dumps()))
                continue
            self._watch(await det_topic.send(key=r.key, value=r.detection.dumps()))
            self.windows.update(r.sample())
            if self.sampler.keep():
                row = r.telemetry.model_copy(update={"sample_weight": self.sampler.weight})
                self._watch(await tel_topic.send(key=node_key, value=row.dumps()))
        for shed in stage.shed_results(prepared):
            self._watch(await det_topic.send(key=f"{shed.camera}:{shed.seq}".encode(),
                                             value=shed.dumps()))
            self.counters.shed += 1
        await self.dead_letter(prepared.rejected + failed)
        self.counters.detected[stage.tier] += len(results)
        for e in events:  # now safe to commit: results are in the producer
            e.ack()

    @property
    def sink(self) -> Sink:
        if self._sink is None:
            self._sink = Sink(self.store)
        return self._sink

    async def _check_topics(self) -> None:
        """Re-create topics the broker lost (a restarted in-memory tansu loses them all;
        Faust does not re-create them). The data that was in them is gone: say so."""
        from autosteer.errors import InfraError
        from autosteer.topics.admin import ensure_topics
        from confluent_kafka.admin import AdminClient

        if self._admin is None:  # one client for every check, not one per check
            self._admin = AdminClient(self.settings.confluent_config())
        try:
            created = await asyncio.get_running_loop().run_in_executor(
                None, ensure_topics, self.settings, 3.0, self._admin)
        except InfraError as exc:
            log.warning("broker unreachable: %s", exc)
            return
        if created:
            self.counters.topics_recreated += len(created)
            log.error("the broker lost topics %s (restarted without durable storage?); "
                      "re-created them empty: messages that were in them are lost", created)

    async def _nodes(self, stream: Any) -> None:
        """Heartbeats -> ``self.nodes`` (latest NodeRecord and arrival time per node)."""
        async for events in stream.take_events(64, within=0.2):
            for rec in parse_valid((e.message.value for e in events), NodeRecord):
                self.nodes[rec.node] = (time.time(), rec)

    async def _emit_windows(self, force: bool = False) -> None:
        topic = self.topics[self.names.telemetry_windows]
        for w in self.windows.flush(now_ms(), force=force):
            self._watch(await topic.send(key=self.settings.node.encode(), value=w.dumps()))

    async def _heartbeat(self) -> None:
        c = self.counters
        if self.loader is not None:  # the loader thread keeps its own counts
            c.telemetry_rows = self.loader.rows
            c.store_retries = self.sink.failures
        cams = list(self.cameras.values())
        rec = NodeRecord(
            ts_ms=now_ms(), node=self.settings.node, roles=",".join(sorted(self.roles)),
            **self._probe.read(), routed_edge=c.routed["edge"], routed_cloud=c.routed["cloud"],
            detected_edge=c.detected["edge"], detected_cloud=c.detected["cloud"],
            dead_letters=c.dead_letters, send_failures=c.send_failures,
            frames_dropped=sum(x.stats.frames_dropped for x in cams),
            frames_skipped=sum(x.stats.frames_skipped for x in cams), frames_shed=c.shed,
            telemetry_rows=c.telemetry_rows, store_retries=c.store_retries)
        self._watch(await self.topics[self.names.telemetry_nodes].send(
            key=self.settings.node.encode(), value=rec.dumps()))

    async def _cameras(self, stream: Any) -> None:
        async for events in stream.take_events(16, within=0.1):
            rejected = []
            for e in events:
                it = incoming(e)
                try:
                    cmd = CameraCommand.parse(it.value)
                    self.apply_camera(cmd)
                except Exception as exc:  # RecordError or a bad command
                    rejected.append(Rejected(it, exc))
            await self.dead_letter(rejected)

    # --- cameras ---------------------------------------------------------------------
    def apply_camera(self, cmd: CameraCommand) -> None:

        old = self.cameras.pop(cmd.camera, None)
        if old is not None:
            old.stop()
        if cmd.action == "stop":
            log.info("camera %s stopped", cmd.camera)
            return
        if not cmd.url:
            raise RecordError(f"CameraCommand: start of {cmd.camera!r} needs a url")
        if self._frame_sender is None:
            self._frame_sender = FrameSender(self.settings, self.names.frames)
        s = self.settings
        ing = CameraIngest(cmd.camera, cmd.url, self._frame_sender.send,
                           max_fps=cmd.max_fps or s.ingest_max_fps, max_width=s.ingest_max_width,
                           jpeg_quality=s.jpeg_quality, loop_file=True)
        self.cameras[cmd.camera] = ing
        ing.start()
        log.info("camera %s started from %s", cmd.camera, cmd.url)

    def stop_cameras(self) -> None:
        for cam in self.cameras.values():
            cam.stop()
        for cam in self.cameras.values():
            cam.join(timeout=5)
        if self._frame_sender is not None:
            self._frame_sender.flush(5)


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _buffered(stream: Any) -> int:
    try:
        return int(stream.channel.queue.qsize())
    except Exception:
        return 0


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Create the topics, build the pipeline and run its Faust worker until stopped."""
    from autosteer.topics.admin import ensure_topics

    ensure_topics(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(settings)
    started = time.monotonic()
    log.info("worker %s starting roles %s", settings.node, sorted(pipeline.roles))
    worker = faust.Worker(pipeline.app, loglevel=loglevel, quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        pipeline.stop_cameras()
        log.info("worker ran %.0fs", time.monotonic() - started)
