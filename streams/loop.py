"""The closed loop inside the workers: drift -> retrain request -> new version -> canary
-> promote or roll back.

- :class:`DriftWatch` (with the router, on every shadow pair): features of the frame
  (brightness, contrast, blur), of the edge's answer (detections, confidence) and the
  pair's agreement go to a :class:`~autosteer.anomaly.drift.DriftMonitor`; a drift asks
  for retraining on ``<prefix>.retrain.requests`` (once per camera per cool-down).
- :class:`RolloutJudge` (with the router): while a version is a canary, compares its
  agreement with the serving version's on the same camera's shadow pairs and publishes
  the verdict on ``<prefix>.models.updates``: canary 1.0 (promote) or 0.0 (roll back).
- :class:`RetrainAgent` (role ``retrain``): keeps recent teacher frames (the shadow
  topic, through its own consumer so it sees them all), runs the
  :class:`~autosteer.retrain.Retrainer` on each request, publishes what it accepts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import defaultdict, deque
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


class DriftWatch:
    """Drift on shadow pairs -> retrain requests."""

    def __init__(self, pipeline: Pipeline, cooldown_s: float = 120.0) -> None:
        self.p = pipeline
        self.cooldown_s = cooldown_s
        self.monitor = DriftMonitor(warmup=pipeline.settings.drift_warmup)
        self._asked: dict[str, float] = {}

    async def on_pair(self, edge: Detection, cloud: ShadowResult, q: QualityRecord) -> None:
        try:
            image = decode_jpeg(cloud.jpeg)
        except AutosteerError:
            return
        features = frame_features(image, edge.boxes)
        features["agreement"] = q.agreement
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
        window = int(self.p.settings.retrain_window_s * 1000)
        req = RetrainRequest(
            camera=edge.camera, model=edge.model_id, model_version=edge.model_version,
            tier="edge", teacher=cloud.model_id, drifts=drifts,
            reason="; ".join(f"{d.feature} {d.kind} drift ({d.before:.3g} -> {d.after:.3g})"
                             for d in drifts),
            window_start_ms=now_ms() - window,
            window_end_ms=now_ms() + int(self.p.settings.retrain_collect_s * 1000))
        log.warning("retrain requested for %s: %s", req.camera, req.reason)
        self.p.events.append({"kind": "retrain_request", "ts_ms": now_ms(),
                              "camera": req.camera, "title": req.reason})
        self.p._watch(await self.p.topics[self.p.names.retrain_requests].send(
            key=req.camera.encode(), value=req.dumps()))

    def reset(self, cameras: list[str]) -> None:
        """Forget what normal looked like (after a model swap): ``cameras``, or all."""
        if not cameras:
            self.monitor = DriftMonitor(warmup=self.p.settings.drift_warmup)
            return
        for camera in cameras:
            self.monitor.reset(camera)


class RolloutJudge:
    """Promote a canary that agrees with the cloud at least as well as the serving
    version, roll back one that agrees worse (after ``min_pairs`` of its own pairs)."""

    def __init__(self, pipeline: Pipeline, min_pairs: int = 6, tolerance: float = 0.02) -> None:
        self.p = pipeline
        self.min_pairs = min_pairs
        self.tolerance = tolerance
        self.canaries: dict[str, ModelUpdate] = {}  # version -> update under trial
        self._scores: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=50))

    def on_update(self, update: ModelUpdate) -> None:
        if update.tier != "edge":
            return
        if 0.0 < update.canary < 1.0:
            self.canaries[update.version] = update
        else:
            self.canaries.pop(update.version, None)

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


class RetrainAgent:
    """Role ``retrain``: answer retrain requests with new, validated versions."""

    def __init__(self, pipeline: Pipeline) -> None:
        from autosteer.retrain.registry import ModelRegistry
        from autosteer.retrain.retrainer import Retrainer

        s = pipeline.settings
        self.p = pipeline
        self.retrainer = Retrainer(ModelRegistry(s.registry_dir), s.model_dir, edge=s.edge_model,
                                   fp32=s.cloud_model, default_threshold=s.score_threshold,
                                   requantize=s.retrain_requantize, canary=s.canary_share)
        self.teacher = TeacherBuffer(pipeline)
        pipeline.app.agent(pipeline.topics[pipeline.names.retrain_requests],
                           name="retrain")(self._requests)

        @pipeline.app.task
        async def _start() -> None:
            self.teacher.start()

    async def _requests(self, stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(4, within=1.0):
            for req in parse_valid((e.message.value for e in events), RetrainRequest):
                await asyncio.sleep(self.p.settings.retrain_collect_s)  # teacher frames
                shadows = self.teacher.take(req.camera, req.window_start_ms,
                                            max(req.window_end_ms, now_ms()), req.max_frames)
                frames = [(sr.jpeg, sr.boxes) for sr in shadows]
                result = await loop.run_in_executor(None, self.retrainer.run, req, frames)
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
