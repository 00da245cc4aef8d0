"""Role ``retrain``: answer retrain requests with new, validated versions.

:class:`TeacherBuffer` keeps recent teacher frames (the shadow topic, through a consumer
of its own so it sees them all); :class:`RetrainRole` runs the
:class:`~autosteer.retrain.Retrainer` on each request in a process of its own (its
Python work does not hold the worker's event loop) and publishes what it accepts on
``<prefix>.models.updates``.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import uuid
from collections import defaultdict, deque
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from autosteer.errors import RecordError
from autosteer.retrain.records import RetrainRequest
from autosteer.streams.pipeline import parse_valid
from autosteer.streams.runtime import Runtime
from autosteer.streams.supervise import SupervisedThread
from autosteer.topics.records import ShadowResult, now_ms
from confluent_kafka import Consumer

log = logging.getLogger(__name__)


class TeacherBuffer(SupervisedThread):
    """The last ``size`` shadow results per camera, from a consumer of its own."""

    def __init__(self, rt: Runtime, size: int = 400) -> None:
        super().__init__("teacher-buffer", rt.health, rt.settings.agent_backoff_s)
        self.rt = rt
        self.frames: dict[str, deque[ShadowResult]] = defaultdict(lambda: deque(maxlen=size))
        self.lock = threading.Lock()

    def work(self) -> None:
        s = self.rt.settings
        c = Consumer(s.consumer_config(f"{s.topic_prefix}-teacher-{uuid.uuid4().hex[:6]}"))
        c.subscribe([self.rt.names.shadow])
        self.consume(c, self._keep)

    def _keep(self, m: Any) -> None:
        try:
            sr = ShadowResult.parse(m.value())
        except RecordError:  # the detectors' own topic: the router pairs it
            return
        with self.lock:
            self.frames[sr.camera].append(sr)

    def take(self, camera: str, start_ms: int, end_ms: int, limit: int) -> list[ShadowResult]:
        with self.lock:
            got = [f for f in self.frames[camera] if start_ms <= f.ts_ms < end_ms]
        return got[-limit:]


def _ready() -> None:
    """Import what a retrain needs, once, when the retrain process starts."""
    import autosteer.processors.prepare  # noqa: F401
    import autosteer.retrain.retrainer  # noqa: F401
    import onnxruntime.quantization  # noqa: F401


class RetrainRole:
    """Role ``retrain``: answer retrain requests with new, validated versions."""

    def __init__(self, rt: Runtime) -> None:
        from autosteer.retrain.registry import ModelRegistry
        from autosteer.retrain.retrainer import Retrainer

        s = rt.settings
        self.rt = rt
        self.retrainer = Retrainer(ModelRegistry(s.registry_dir), s.model_dir, edge=s.edge_model,
                                   fp32=s.cloud_model, default_threshold=s.score_threshold,
                                   requantize=s.retrain_requantize, canary=s.canary_share,
                                   fp32_head=s.retrain_fp32_head)
        self.teacher = TeacherBuffer(rt)
        # spawn, not fork: the worker has threads (Kafka clients, ONNX Runtime)
        self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        # a request waits for teacher frames, then retrains: minutes, by design
        rt.agent(rt.names.retrain_requests, "retrain", self.on_requests, size=4, within=1.0,
                 stall_s=max(600.0, s.agent_stall_s))
        rt.on_start(self.start)
        rt.on_stop(self.stop)

    async def start(self) -> None:
        self.teacher.start()
        await asyncio.get_running_loop().run_in_executor(self.pool, _ready)

    async def stop(self) -> None:
        self.teacher.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def on_requests(self, events: Sequence[Any]) -> None:
        loop = asyncio.get_running_loop()
        for req in parse_valid((e.message.value for e in events), RetrainRequest):
            await asyncio.sleep(self.rt.settings.retrain_collect_s)  # teacher frames
            shadows = self.teacher.take(req.camera, req.window_start_ms,
                                        max(req.window_end_ms, now_ms()), req.max_frames)
            frames = [(sr.jpeg, sr.boxes) for sr in shadows]
            result = await loop.run_in_executor(self.pool, self.retrainer.run, req, frames)
            log.warning("retrain %s (%d teacher frames): %s", req.camera, len(frames),
                        "published " + result.update.version if result.update
                        else result.reason)
            self.rt.events.append({"kind": "retrain_request", "ts_ms": now_ms(),
                                  "camera": req.camera,
                                  "title": (f"published {result.update.version}"
                                            if result.update else result.reason)[:200]})
            if result.published and result.update is not None:
                await self.rt.bus.publish(self.rt.names.models_updates,
                                          result.update.model.encode(), result.update.dumps())
