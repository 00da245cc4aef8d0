"""Drift watch (with the router): on every shadow pair, features of the frame
(brightness, contrast, blur), of the edge's answer (detections, confidence) and the
pair's agreement go to a :class:`~autosteer.anomaly.drift.DriftMonitor`; a drift asks
for retraining on ``<prefix>.retrain.requests`` (once per camera per cool-down). The
request learns from the change on: its window starts at the latest change point the
drifts report (at most ``retrain_window_s`` back), and until it ends the router shadows
``retrain_shadow_rate`` of the camera's edge frames (teacher frames, fast).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque

from autosteer.anomaly.drift import DriftMonitor, frame_features
from autosteer.errors import AutosteerError
from autosteer.processors.decode import decode_jpeg
from autosteer.retrain.records import RetrainRequest
from autosteer.streams.roles.shadows import ShadowSampler
from autosteer.streams.runtime import Runtime
from autosteer.topics.records import Detection, QualityRecord, ShadowResult, now_ms

log = logging.getLogger(__name__)


CLOCK = 4  # ADWIN checks for a cut every 4 pairs: shadow pairs come at ~1/s, not 1/ms


class DriftWatch:
    """Drift on shadow pairs -> retrain requests."""

    def __init__(self, rt: Runtime, sampler: ShadowSampler, cooldown_s: float = 120.0) -> None:
        self.rt = rt
        self.sampler = sampler
        self.cooldown_s = cooldown_s
        self.monitor = DriftMonitor(warmup=rt.settings.drift_warmup, clock=CLOCK)
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
            self.rt.events.append({"kind": "drift", "ts_ms": now_ms(), "camera": d.camera,
                                  "title": f"{d.feature} on {d.camera}: {d.kind}"})
        now = time.time()
        if now - self._asked.get(edge.camera, 0.0) < self.cooldown_s:
            return
        self._asked[edge.camera] = now
        s = self.rt.settings
        start = now_ms() - int(s.retrain_window_s * 1000)
        seen = self._seen[edge.camera]
        latest = min((d.n_after for d in drifts if d.n_after > 0), default=0)
        if 0 < latest <= len(seen):  # the frames since the change, not the old light
            start = max(start, seen[-latest])
        end = now_ms() + int(s.retrain_collect_s * 1000)
        self.sampler.boost(edge.camera, end / 1000)
        req = RetrainRequest(
            camera=edge.camera, model=edge.model_id, model_version=edge.model_version,
            tier="edge", teacher=cloud.model_id, drifts=drifts,
            reason="; ".join(f"{d.feature} {d.kind} drift ({d.before:.3g} -> {d.after:.3g})"
                             for d in drifts),
            window_start_ms=start, window_end_ms=end)
        log.warning("retrain requested for %s: %s", req.camera, req.reason)
        self.rt.events.append({"kind": "retrain_request", "ts_ms": now_ms(),
                              "camera": req.camera, "title": req.reason})
        await self.rt.bus.publish(self.rt.names.retrain_requests, req.camera.encode(),
                                  req.dumps())

    def reset(self, cameras: list[str]) -> None:
        """Forget what normal looked like (after a model swap): ``cameras``, or all."""
        if not cameras:
            self.monitor = DriftMonitor(warmup=self.rt.settings.drift_warmup, clock=CLOCK)
            return
        for camera in cameras:
            self.monitor.reset(camera)
