"""Live numbers: a Faust sensor that watches what this worker's agents consume and publish."""

from __future__ import annotations

import logging
import math
import re
import time
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autosteer.streams.web.prometheus import TIERS, Histogram
from autosteer.topics.names import TopicNames
from autosteer.topics.records import Detection, now_ms
from faust.sensors import Sensor

log = logging.getLogger(__name__)


class CounterRates:
    """Per-second rates of growing counters, from snapshots taken about every second.

    >>> m = CounterRates(span_s=5)
    >>> m.sample(0.0, {"a": 0})
    >>> m.sample(2.0, {"a": 10})
    >>> m.rate("a"), m.rate("b")
    (5.0, None)
    """

    def __init__(self, span_s: float = 5.0, keep: int = 32) -> None:
        self.span_s = span_s
        self._snaps: deque[tuple[float, dict[str, float]]] = deque(maxlen=keep)

    def sample(self, t: float, counts: Mapping[str, float]) -> None:
        self._snaps.append((t, dict(counts)))

    def rate(self, key: str) -> float | None:
        if len(self._snaps) < 2 or key not in self._snaps[-1][1]:
            return None
        t1, last = self._snaps[-1]
        t0, first = next(((t, c) for t, c in self._snaps if t >= t1 - self.span_s - 0.5),
                         self._snaps[0])
        if t1 <= t0:
            t0, first = self._snaps[-2]
        return max(0.0, last[key] - first.get(key, 0.0)) / (t1 - t0)


@dataclass
class CameraLive:
    """What this worker saw of one camera."""

    routed_in: int = 0  # frames its router took
    detect_in: int = 0  # frames its detectors took
    detected: int = 0  # detections it published
    shed: int = 0  # results it published for frames shed for their age (no boxes)
    latencies: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=1024))
    seen: float = field(default_factory=time.monotonic)  # last frame or detection
    last: Detection | None = None
    shown: tuple[bytes, Detection] | None = None  # raw FrameRecord and its detection
    thumb: tuple[int, bytes] | None = None  # (seq, rendered JPEG) of ``shown``


_SEQ = re.compile(rb'"seq"\s*:\s*(\d+)')


class LiveView(Sensor):
    """A Faust sensor: frames this worker's agents take, detections they publish.

    Kept small: counters, latency histograms, the recent latencies per camera and, per
    camera, the last detected frame (for the thumbnail). Never raises into Faust.
    """

    def __init__(self, names: TopicNames, *, pending_per_camera: int = 64) -> None:
        super().__init__()
        self.frames_topic = names.frames
        self.tier_topics = {names.frames_edge: "edge", names.frames_cloud: "cloud"}
        self.detections_topic = names.detections
        self.pending_per_camera = pending_per_camera
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.cameras: dict[str, CameraLive] = {}
        self.models: dict[str, tuple[str, str, int]] = {}  # tier -> (model, version, last ms)
        self.errors = 0
        self._pending: dict[tuple[str, str], OrderedDict[int, bytes]] = {}

    # Faust calls these on the event loop for every message; keep them cheap.
    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        try:
            self.frame_in(tp.topic, message.key, message.value)
        except Exception:
            self._failed()

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int,
                          valsize: int) -> Any:
        if topic == self.detections_topic:
            try:
                self.detection_out(message.value)
            except Exception:
                self._failed()
        return None

    def _failed(self) -> None:
        self.errors += 1
        if self.errors in (1, 10, 100) or self.errors % 1000 == 0:
            log.warning("ui sensor failed %d time(s)", self.errors, exc_info=True)

    def camera(self, name: str) -> CameraLive:
        cam = self.cameras.get(name)
        if cam is None:
            cam = self.cameras[name] = CameraLive()
        return cam

    def frame_in(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if not key or not value:
            return
        if topic == self.frames_topic:
            cam = self.camera(key.decode(errors="replace"))
            cam.routed_in += 1
            cam.seen = time.monotonic()
            return
        tier = self.tier_topics.get(topic)
        if tier is None:
            return
        camera = key.decode(errors="replace")
        cam = self.camera(camera)
        cam.detect_in += 1
        cam.seen = time.monotonic()
        m = _SEQ.search(value)
        if m is None:
            return
        pending = self._pending.setdefault((tier, camera), OrderedDict())
        pending[int(m.group(1))] = value
        while len(pending) > self.pending_per_camera:
            pending.popitem(last=False)

    def detection_out(self, value: bytes) -> None:
        d = Detection.parse(value)
        cam = self.camera(d.camera)
        cam.seen = time.monotonic()
        self.models[d.tier] = (d.model_id, d.model_version, now_ms())
        frame = self._done(d)
        if getattr(d, "status", "ok") != "ok":  # shed: too old to detect, no boxes
            cam.shed += 1
            return
        lat = d.latency
        for stage, ms in (("total", lat.total_ms), ("infer", lat.infer_ms),
                          ("queue", lat.queue_ms)):
            h = self.latency.get((d.tier, stage))
            if h is None:
                h = self.latency[(d.tier, stage)] = Histogram()
            h.observe(ms / 1000.0)
        cam.detected += 1
        cam.latencies.append((cam.seen, lat.total_ms))
        cam.last = d
        if frame is not None:
            cam.shown = (frame, d)

    def _done(self, d: Detection) -> bytes | None:
        """Forget the pending frames of ``d``'s tier and camera up to ``d``; return its own."""
        pending = self._pending.get((d.tier, d.camera))
        frame = None
        while pending:
            seq = next(iter(pending))
            if seq > d.seq:
                break
            raw = pending.pop(seq)
            frame = raw if seq == d.seq else frame
        return frame

    def expire(self, max_idle_s: float = 600.0) -> None:
        """Forget cameras this worker has not seen for ``max_idle_s``."""
        cutoff = time.monotonic() - max_idle_s
        for name in [n for n, c in self.cameras.items() if c.seen < cutoff]:
            del self.cameras[name]
            for tier in TIERS:
                self._pending.pop((tier, name), None)

    def counts(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, cam in self.cameras.items():
            out[f"cam_routed:{name}"] = cam.routed_in
            out[f"cam_detect_in:{name}"] = cam.detect_in
            out[f"cam_out:{name}"] = cam.detected
        return out


def quantiles(values: Sequence[float], qs: Sequence[float] = (0.5, 0.95)) -> list[float | None]:
    """Nearest-rank quantiles of ``values`` (None when empty).

    >>> quantiles([5.0, 1.0, 3.0, 2.0, 4.0])
    [3.0, 5.0]
    """
    if not values:
        return [None for _ in qs]
    s = sorted(values)
    return [s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))] for q in qs]
