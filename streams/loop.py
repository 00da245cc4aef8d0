"""The closed loop inside the workers: drift -> retrain request -> new version -> canary
-> promote or roll back.

- :class:`DriftWatch` (with the router, on every shadow pair): features of the frame
  (brightness, contrast, blur), of the edge's answer (detections, confidence) and the
  pair's agreement go to a :class:`~autosteer.anomaly.drift.DriftMonitor`; a drift asks
  for retraining on ``<prefix>.retrain.requests`` (once per camera per cool-down). The
  request learns from the change on: its window starts at the latest change point the
  drifts report (at most ``retrain_window_s`` back), and until it ends the router
  shadows ``retrain_shadow_rate`` of the camera's edge frames (teacher frames, fast).
- :class:`RolloutJudge` (with the router): while a version is a canary, compares its
  agreement with the serving version's on the same camera's shadow pairs (shadowing
  ``retrain_shadow_rate`` of that camera's edge frames meanwhile) and publishes
  the verdict on ``<prefix>.models.updates``: canary 1.0 (promote) or 0.0 (roll back).
- :class:`RetrainAgent` (role ``retrain``): keeps recent teacher frames (the shadow
  topic, through its own consumer so it sees them all), runs the
  :class:`~autosteer.retrain.Retrainer` on each request in a process of its own (its
  Python work does not hold the worker's event loop), publishes what it accepts.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import time
import uuid
from collections import defaultdict, deque
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

from autosteer.anomaly.drift import DriftMonitor, frame_features
from autosteer.errors import AutosteerError, RecordError
from autosteer.processors.decode import decode_jpeg
from autosteer.retrain.records import ModelUpdate, RetrainRequest
from autosteer.streams.pipeline import parse_valid
from autosteer.topics.records import Detection, QualityRecord, ShadowResult, now_ms
from confluent_kafka import Consumer

if TYPE_CHECKING:
    from autosteer.streams.app import Pipeline

log = logging.getLogger(__name__)


CLOCK = 4  # ADWIN checks for a cut every 4 pairs: shadow pairs come at ~1/s, not 1/ms


class DriftWatch:
    """Drift on shadow pairs -> retrain requests."""

    def __init__(self, pipeline: Pipeline, cooldown_s: float = 120.0) -> None:
        self.p = pipeline
        self.cooldown_s = cooldown_s
        self.monitor = DriftMonitor(warmup=pipeline.settings.drift_warmup, clock=CLOCK)
        self._asked: dict[str, float] = {}
        self._seen: dict[str, deque[int]] = defaultdict(lambda: deque(maxlen=4096))  # ts_ms

    async def on_pair(self, edge: Detection, cloud: ShadowResult, q: QualityRecord) -> None:
        try:
            image = decode_jpeg(cloud.jpeg)
        except AutosteerError:
            return
        features = frame_features(image, edge.boxes)
        features["agreement"] = q.agreement
        self._seen[edge.camera].append(edge.ts_ms)
        drifts = self.monitor.update(edge.camera, edge.model_id, features, ts_ms=edge.ts_ms)
        if not drifts:
            return
        for d in drifts:
            self.p.events.append({"kind": "drift", "ts_ms": now_ms(), "camera": d.camera,
                                  "title": f"{d.feature} on {d.camera}: {d.kind}"})
        now = time.time()
        if now - self._asked.get(edge.camera, 0.0) < self.cooldown_s:
            return
        self._asked[edge.camera] = now
        s = self.p.settings
        start = now_ms() - int(s.retrain_window_s * 1000)
        seen = self._seen[edge.camera]
        latest = min((d.n_after for d in drifts if d.n_after > 0), default=0)
        if 0 < latest <= len(seen):  # the frames since the change, not the old light
            start = max(start, seen[-latest])
        end = now_ms() + int(s.retrain_collect_s * 1000)
        self.p.shadow_boost[edge.camera] = end / 1000
        req = RetrainRequest(
            camera=edge.camera, model=edge.model_id, model_version=edge.model_version,
            tier="edge", teacher=cloud.model_id, drifts=drifts,
            reason="; ".join(f"{d.feature} {d.kind} drift ({d.before:.3g} -> {d.after:.3g})"
                             for d in drifts),
            window_start_ms=start, window_end_ms=end)
        log.warning("retrain requested for %s: %s", req.camera, req.reason)
        self.p.events.append({"kind": "retrain_request", "ts_ms": now_ms(),
                              "camera": req.camera, "title": req.reason})
        self.p._watch(await self.p.topics[self.p.names.retrain_requests].send(
            key=req.camera.encode(), value=req.dumps()))

    def reset(self, cameras: list[str]) -> None:
        """Forget what normal looked like (after a model swap): ``cameras``, or all."""
        if not cameras:
            self.monitor = DriftMonitor(warmup=self.p.settings.drift_warmup, clock=CLOCK)
            return
        for camera in cameras:
            self.monitor.reset(camera)


class RolloutJudge:
    """Promote a canary that agrees with the cloud at least as well as the serving
    version, roll back one that agrees worse (after ``min_pairs`` of its own pairs)."""

    def __init__(self, pipeline: Pipeline, min_pairs: int = 6, tolerance: float = 0.02,
                 max_trial_s: float = 60.0) -> None:
        self.p = pipeline
        self.min_pairs = min_pairs
        self.tolerance = tolerance
        self.max_trial_s = max_trial_s
        self.canaries: dict[str, ModelUpdate] = {}  # version -> update under trial
        self._scores: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=50))

    def on_update(self, update: ModelUpdate) -> None:
        if update.tier != "edge":
            return
        if 0.0 < update.canary < 1.0:
            self.canaries[update.version] = update
            until = time.time() + self.max_trial_s
            for camera in update.cameras:  # pairs come faster: a verdict sooner
                self.p.shadow_boost[camera] = max(self.p.shadow_boost.get(camera, 0.0), until)
        else:
            self.canaries.pop(update.version, None)
            self._unboost(update)

    def _unboost(self, update: ModelUpdate) -> None:
        for camera in update.cameras:
            self.p.shadow_boost.pop(camera, None)

    async def on_pair(self, q: QualityRecord) -> None:
        self._scores[q.edge_model_version].append(q.agreement)
        for version, update in list(self.canaries.items()):
            trial = self._scores[version]
            if len(trial) < self.min_pairs:
                continue
            serving = [a for v, s in self._scores.items() if v != version
                       and v not in self.canaries for a in list(s)[-len(trial):]]
            if not serving:
                continue
            ours, theirs = sum(trial) / len(trial), sum(serving) / len(serving)
            promote = ours >= theirs - self.tolerance
            verdict = update.model_copy(update={"canary": 1.0 if promote else 0.0,
                                                "created_at_ms": now_ms()})
            self.canaries.pop(version)
            self._unboost(update)
            log.warning("canary %s@%s: agreement %.3f vs serving %.3f: %s", update.model,
                        version, ours, theirs, "promoted" if promote else "rolled back")
            self.p._watch(await self.p.topics[self.p.names.models_updates].send(
                key=update.model.encode(), value=verdict.dumps()))


class TeacherBuffer(threading.Thread):
    """The last ``size`` shadow results per camera, from a consumer of its own."""

    def __init__(self, pipeline: Pipeline, size: int = 400) -> None:
        super().__init__(name="teacher-buffer", daemon=True)
        self.p = pipeline
        self.frames: dict[str, deque[ShadowResult]] = defaultdict(lambda: deque(maxlen=size))
        self.halt = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        s = self.p.settings
        c = Consumer(s.consumer_config(f"{s.topic_prefix}-teacher-{uuid.uuid4().hex[:6]}"))
        c.subscribe([self.p.names.shadow])
        try:
            while not self.halt.is_set():
                m = c.poll(0.5)
                if m is None or m.error():
                    continue
                try:
                    sr = ShadowResult.parse(m.value())
                except RecordError:
                    continue
                with self.lock:
                    self.frames[sr.camera].append(sr)
        finally:
            c.close()

    def take(self, camera: str, start_ms: int, end_ms: int, limit: int) -> list[ShadowResult]:
        with self.lock:
            got = [f for f in self.frames[camera] if start_ms <= f.ts_ms < end_ms]
        return got[-limit:]


def _ready() -> None:
    """Import what a retrain needs, once, when the retrain process starts."""
    import autosteer.processors.prepare  # noqa: F401
    import autosteer.retrain.retrainer  # noqa: F401
    import onnxruntime.quantization  # noqa: F401


class RetrainAgent:
    """Role ``retrain``: answer retrain requests with new, validated versions."""

    def __init__(self, pipeline: Pipeline) -> None:
        from autosteer.retrain.registry import ModelRegistry
        from autosteer.retrain.retrainer import Retrainer

        s = pipeline.settings
        self.p = pipeline
        self.retrainer = Retrainer(ModelRegistry(s.registry_dir), s.model_dir, edge=s.edge_model,
                                   fp32=s.cloud_model, default_threshold=s.score_threshold,
                                   requantize=s.retrain_requantize, canary=s.canary_share,
                                   fp32_head=s.retrain_fp32_head)
        self.teacher = TeacherBuffer(pipeline)
        # spawn, not fork: the worker has threads (Kafka clients, ONNX Runtime)
        self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        pipeline.app.agent(pipeline.topics[pipeline.names.retrain_requests],
                           name="retrain")(self._requests)

        @pipeline.app.task
        async def _start() -> None:
            self.teacher.start()
            await asyncio.get_running_loop().run_in_executor(self.pool, _ready)

        @pipeline.app.on_before_shutdown.connect
        async def _stop(app: Any, **kw: Any) -> None:
            self.teacher.halt.set()
            self.pool.shutdown(wait=False, cancel_futures=True)

    async def _requests(self, stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(4, within=1.0):
            for req in parse_valid((e.message.value for e in events), RetrainRequest):
                await asyncio.sleep(self.p.settings.retrain_collect_s)  # teacher frames
                shadows = self.teacher.take(req.camera, req.window_start_ms,
                                            max(req.window_end_ms, now_ms()), req.max_frames)
                frames = [(sr.jpeg, sr.boxes) for sr in shadows]
                result = await loop.run_in_executor(self.pool, self.retrainer.run, req, frames)
                log.warning("retrain %s (%d teacher frames): %s", req.camera, len(frames),
                            "published " + result.update.version if result.update
                            else result.reason)
                self.p.events.append({"kind": "retrain_request", "ts_ms": now_ms(),
                                      "camera": req.camera,
                                      "title": (f"published {result.update.version}"
                                                if result.update else result.reason)[:200]})
                if result.published and result.update is not None:
                    self.p._watch(await self.p.topics[self.p.names.models_updates].send(
                        key=result.update.model.encode(), value=result.update.dumps()))
