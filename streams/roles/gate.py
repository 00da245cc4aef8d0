"""The router's motion gate (``AUTOSTEER_MOTION_GATE=on``): frames that changed nothing
are answered without a detector.

Before the offload policy sees a frame, :class:`Gate` asks the camera's
:class:`~autosteer.processors.motion.MotionGate` whether it differs from the camera's
last detected frame (the *reference*). A fresh frame goes on to the policy and a tier as
before, and becomes the reference. A still frame goes nowhere: it is answered on
``<prefix>.detections`` with the reference's detection carried forward
(``status: "reused"``, ``reused_from`` = the reference's seq, the tier and model that
detected it), so every frame still gets one result. Still frames never reach the policy
(``decide``/``learn``) nor the router's routed counts: the offload ratio stays the cloud
share of the frames routed.

The reference's detection comes back through the router's feedback agent; a still frame
that arrives before it is held (its message too, so its offset is not committed) and
answered when it comes. When the reference was shed or its result never comes within
``PENDING_TIMEOUT_S``, the held frames are answered ``status: "shed"`` (nothing to carry)
and the camera's next frame is detected fresh.

The accuracy cost is measured on a share (``AUTOSTEER_GATE_CHECK_RATE``) of the reused
frames: each is also sent to its source's tier as a shadow frame, and the fresh answer is
compared with the reused one (:meth:`~.shadows.ShadowPairing.expect_check`,
``gate_agreement``). Those checks cost an inference each; they are counted in ``checked``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autosteer.errors import RecordError
from autosteer.processors.decode import DecodeLimits
from autosteer.processors.motion import GateConfig, MotionGate
from autosteer.streams.events import incoming
from autosteer.streams.pipeline import Incoming
from autosteer.streams.roles.shadows import ShadowPairing, ShadowSampler
from autosteer.streams.runtime import Runtime
from autosteer.telemetry.window import Sample, WindowAggregator
from autosteer.topics import headers as H
from autosteer.topics.records import Detection, FrameRecord, Latency, now_ms

log = logging.getLogger(__name__)

PENDING_TIMEOUT_S = 30.0  # a held frame whose source result never came is answered shed


@dataclass
class Held:
    """A still frame waiting for (or given) its source's detection."""

    item: Incoming
    frame: FrameRecord
    source_seq: int
    gate_ms: float  # what the gate's decode and difference took
    event: Any  # its message holds one reference until it is answered
    check: bool = False  # also detect it fresh (accuracy check)
    held_s: float = 0.0


def gate_config(s: Any) -> GateConfig:
    """The gate's thresholds from settings."""
    return GateConfig(changed_fraction=s.gate_changed_fraction,
                      pixel_threshold=s.gate_pixel_threshold,
                      refresh_frames=s.gate_refresh_frames, refresh_s=s.gate_refresh_s,
                      limits=DecodeLimits(s.max_image_pixels, s.decode_budget_mb * 2**20))


def reused_detection(source: Detection, h: Held, node: str, done_ms: int) -> Detection:
    """``source``'s boxes as the answer to the still frame ``h``."""
    f = h.frame
    produced = h.item.produced_ms or f.ts_ms
    total = float(max(0, done_ms - f.ts_ms))
    lat = Latency(ingest_ms=max(0.0, produced - f.ts_ms), route_ms=max(0.0, done_ms - produced),
                  queue_ms=0.0, decode_ms=round(h.gate_ms, 3), infer_ms=0.0, total_ms=total)
    return source.model_copy(update={
        "seq": f.seq, "ts_ms": f.ts_ms, "node": node, "latency": lat, "status": "reused",
        "reused_from": source.seq, "width": f.width or source.width,
        "height": f.height or source.height})


class Gate:
    """The router's gate state: references, held frames, carried detections, counts."""

    def __init__(self, rt: Runtime, pairing: ShadowPairing,
                 windows: WindowAggregator | None = None,
                 motion: MotionGate | None = None) -> None:
        s = rt.settings
        self.rt = rt
        self.pairing = pairing
        self.windows = windows  # the worker's telemetry windows (reused frames counted)
        self.motion = motion or MotionGate(gate_config(s))
        self.checks = ShadowSampler(s.gate_check_rate, s.gate_check_rate)
        self.fresh = 0  # frames passed on to the policy
        self.reused = 0  # frames answered with a carried-forward detection
        self.checked = 0  # reused frames also sent to be detected fresh
        self.unanswerable = 0  # held frames answered shed: their source had no detection
        self.gate_ms = 0.0  # time spent deciding, in all
        self._refs: dict[str, int] = {}  # camera -> seq of its reference (last fresh frame)
        self._last: dict[str, Detection] = {}  # camera -> the reference's detection
        self._held: dict[tuple[str, int], list[Held]] = {}  # (camera, source seq) -> frames
        rt.timer(1.0, "gate-expire", self.expire)

    @property
    def held(self) -> int:
        """Still frames waiting for their source's detection."""
        return sum(len(v) for v in self._held.values())

    def counts(self) -> dict[str, int]:
        return {"frames_reused": self.reused, "gate_fresh": self.fresh,
                "gate_checked": self.checked, "gate_unanswerable": self.unanswerable}

    def admit(self, events: Sequence[Any]) -> tuple[list[Incoming], list[Held]]:
        """Split a batch: the items to route (fresh, and whatever does not parse: the
        router dead-letters it), and the still frames, held for :meth:`answer`."""
        route, still = [], []
        for e in events:
            it = incoming(e)
            try:
                frame = FrameRecord.parse(it.value)
            except RecordError:
                route.append(it)
                continue
            if it.key is not None and it.key != frame.camera.encode():
                route.append(it)  # the router rejects it
                continue
            t0 = time.perf_counter()
            d = self.motion.decide(frame.camera, frame.seq, frame.ts_ms, frame.jpeg)
            ms = (time.perf_counter() - t0) * 1000
            self.gate_ms += ms
            if d.fresh or d.source_seq is None:
                self.fresh += 1
                self._refs[frame.camera] = frame.seq
                self._last.pop(frame.camera, None)
                route.append(it)
                continue
            e.message.incref()  # acked once answered
            still.append(Held(it, frame, d.source_seq, ms, e, self.checks.due(frame.camera),
                              time.time()))
        return route, still

    async def answer(self, still: Sequence[Held]) -> None:
        """Answer the still frames whose source detection is here; hold the others."""
        for h in still:
            source = self._last.get(h.frame.camera)
            if source is not None and source.seq == h.source_seq:
                await self._reuse(source, [h])
            else:
                self._held.setdefault((h.frame.camera, h.source_seq), []).append(h)

    async def on_detections(self, detections: Sequence[Detection]) -> None:
        """Results from the feedback agent: a reference's detection is kept and answers
        the frames held for it; a shed reference answers them shed."""
        for d in detections:
            if d.status == "reused":
                continue
            key = (d.camera, d.seq)
            if d.status != "ok":
                if self._refs.get(d.camera) == d.seq:
                    self.motion.forget(d.camera)  # nothing to carry: detect the next one
                await self._unanswerable(self._held.pop(key, []), f"its source frame "
                                         f"{d.seq} was {d.status}")
                continue
            if self._refs.get(d.camera) == d.seq:
                self._last[d.camera] = d
            held = self._held.pop(key, None)
            if held:
                await self._reuse(d, held)

    async def expire(self, now_s: float | None = None) -> None:
        """Answer (shed) the frames held longer than ``PENDING_TIMEOUT_S`` at ``now_s``
        (epoch s; default now)."""
        cutoff = (time.time() if now_s is None else now_s) - PENDING_TIMEOUT_S
        for key in [k for k, v in self._held.items() if v[0].held_s < cutoff]:
            camera, seq = key
            if self._refs.get(camera) == seq:
                self.motion.forget(camera)
            await self._unanswerable(self._held.pop(key), f"no result for its source frame "
                                     f"{seq} within {PENDING_TIMEOUT_S:.0f}s")

    async def _reuse(self, source: Detection, still: Sequence[Held]) -> None:
        bus, names, node = self.rt.bus, self.rt.names, self.rt.settings.node
        for h in still:
            try:
                det = reused_detection(source, h, node, now_ms())
                await bus.publish(names.detections, f"{det.camera}:{det.seq}".encode(),
                                  det.dumps())
                self.reused += 1
                if self.windows is not None:
                    self.windows.update(Sample(
                        ts_ms=now_ms(), camera=det.camera, seq=det.seq, tier=det.tier,
                        model_id=det.model_id, model_version=det.model_version,
                        total_ms=det.latency.total_ms, infer_ms=0.0, queue_ms=0.0,
                        queue_depth=0, reused=True))
                if h.check:
                    await self._check(source, h, det)
            finally:
                h.event.ack()

    async def _check(self, source: Detection, h: Held, det: Detection) -> None:
        """Send the still frame to its source's tier as a shadow: its fresh answer comes
        back on the shadow topic and is compared with ``det``."""
        now = str(now_ms()).encode()
        headers = [(H.ROUTED_MS, now), (H.TIER, source.tier.encode()),
                   (H.PRODUCED_MS, str(h.item.produced_ms).encode()), (H.SHADOW, b"1")]
        self.pairing.expect_check(det.camera, det.seq, det.boxes)
        await self.rt.bus.publish(self.rt.names.tier_topic(source.tier),
                                  h.frame.camera.encode(), h.item.value or b"", headers)
        self.checked += 1

    async def _unanswerable(self, still: Sequence[Held], why: str) -> None:
        bus, names, node = self.rt.bus, self.rt.names, self.rt.settings.node
        for h in still:
            f = h.frame
            try:
                age = float(max(0, now_ms() - f.ts_ms))
                det = Detection(camera=f.camera, seq=f.seq, ts_ms=f.ts_ms, tier="edge",
                                node=node, model_id="", model_version="",
                                width=f.width or 0, height=f.height or 0, boxes=[],
                                status="shed", reason=f"motion gate: {why}",
                                latency=Latency(ingest_ms=0, route_ms=age, queue_ms=0,
                                                decode_ms=round(h.gate_ms, 3), infer_ms=0,
                                                total_ms=age))
                await bus.publish(names.detections, f"{f.camera}:{f.seq}".encode(),
                                  det.dumps())
                self.unanswerable += 1
            finally:
                h.event.ack()
        if still:
            log.warning("motion gate: %d frame(s) of %s answered shed: %s", len(still),
                        still[0].frame.camera, why)
