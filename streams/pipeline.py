"""The pipeline's steps as plain synchronous functions; the Faust agents only call these.

Each step takes raw message values (bytes) and returns what to publish, and a list of
:class:`Rejected` items for the dead-letter topic. No step raises for one message:
whatever handling a message raises (a contract error, a decoder's or a model's own
exception) becomes that message's :class:`Rejected`, with the error's type.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from autosteer.errors import AutosteerError, DecodeError, RecordError
from autosteer.offload.policy import FrameMeta, Observation, OffloadPolicy, Tier, count_copy
from autosteer.processors.decode import DEFAULT_LIMITS, DecodeLimits, decode_jpeg
from autosteer.processors.detector import Detector
from autosteer.processors.reencode import reencode
from autosteer.telemetry.window import Sample
from autosteer.topics.records import (
    Box,
    DeadLetter,
    Detection,
    FrameRecord,
    Latency,
    Record,
    ShadowResult,
    TelemetryRecord,
    now_ms,
)


@dataclass(frozen=True)
class Incoming:
    """One consumed message, as the steps see it."""

    value: bytes | None
    key: bytes | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1
    produced_ms: int = 0  # Kafka message timestamp
    routed_ms: int = 0  # from the router's header, on tier topics
    received_ms: int = 0  # wall clock when this worker's consumer fetched it
    shadow: bool = False  # an edge frame the router also sent to the cloud (agreement)


@dataclass(frozen=True)
class Rejected:
    item: Incoming
    error: Exception
    where: str = ""  # what was being done when it failed (empty: the record's contract)

    def dead_letter(self, node: str, max_message_bytes: int = 1 << 42) -> DeadLetter:
        """The dead letter for this item, cut to fit ``max_message_bytes``."""
        it = self.item
        return DeadLetter.of(node, it.topic, it.partition, it.offset, it.key, it.value,
                             self.error, max_message_bytes, where=self.where)


@dataclass(frozen=True)
class Routed:
    item: Incoming
    tier: Tier
    frame: FrameRecord
    payload: bytes | None = None  # the record re-encoded at the policy's quality level
    copy: bool = False  # an edge frame also on the cloud that the policy counts (and learns from)
    shadow: bool = False  # an edge frame also sent to the cloud, as captured (copy or agreement)
    shed_reason: str | None = None  # answered status "shed" instead (sent nowhere): why

    @property
    def value(self) -> bytes | None:
        """The bytes to produce to the tier topic (re-encoded for the cloud, or as read)."""
        return self.item.value if self.payload is None else self.payload

    def shed_detection(self, node: str, now: int) -> Detection:
        """The router's ``status: "shed"`` result for this shed frame (no boxes, no model;
        ``tier``: where it would have gone; latency: its age)."""
        if self.shed_reason is None:
            raise ValueError(f"Routed.shed_detection: {self.frame.camera}:{self.frame.seq} "
                             f"was routed to {self.tier}, not shed")
        f, produced = self.frame, self.item.produced_ms or self.frame.ts_ms
        lat = Latency(ingest_ms=max(0, produced - f.ts_ms), route_ms=max(0, now - produced),
                      queue_ms=0, decode_ms=0, infer_ms=0, total_ms=max(0, now - f.ts_ms))
        return Detection(camera=f.camera, seq=f.seq, ts_ms=f.ts_ms, tier=self.tier, node=node,
                         model_id="", model_version="", width=f.width or 0,
                         height=f.height or 0, boxes=[], status="shed",
                         reason=self.shed_reason, latency=lat)


def route(items: Sequence[Incoming], policy: OffloadPolicy,
          shadow_due: Callable[[str], bool] | None = None) -> tuple[list[Routed], list[Rejected]]:
    """Validate each frame and let ``policy`` decide its route (one ``decide`` per frame):
    a cloud frame is re-encoded at the route's level; a shed one goes nowhere. An edge
    frame is also shadowed to the cloud for a copy the route asks for, or when
    ``shadow_due(camera)`` says an agreement sample is due (the policy is told at once,
    :func:`~autosteer.offload.policy.count_copy`, before it decides the next frame)."""
    routed, rejected = [], []
    for it in items:
        try:
            frame = FrameRecord.parse(it.value)
            if it.key is not None and it.key != frame.camera.encode():
                raise RecordError(f"FrameRecord: key {it.key[:64]!r} differs from camera "
                                  f"{frame.camera!r}; the key must be the camera id")
        except RecordError as exc:
            rejected.append(Rejected(it, exc))
            continue
        try:
            routed.append(_route_one(it, frame, policy, shadow_due))
        except Exception as exc:  # noqa: BLE001 - a policy's or encoder's own error
            rejected.append(Rejected(it, exc, "routing the frame"))
    return routed, rejected


def _route_one(it: Incoming, frame: FrameRecord, policy: OffloadPolicy,
               shadow_due: Callable[[str], bool] | None) -> Routed:
    meta = FrameMeta(frame.camera, frame.seq, frame.ts_ms, len(it.value or b""))
    r = policy.decide(meta)
    if r.shed_reason is not None:
        return Routed(it, r.tier, frame, shed_reason=r.shed_reason)
    copy = shadow = False
    if r.tier == "edge":
        copy = r.copy
        due = shadow_due is not None and shadow_due(frame.camera)
        shadow = copy or due
        if due and not copy:
            copy = count_copy(policy, meta)
    payload = None
    if r.tier == "cloud" and not r.level.is_full:
        level = r.level
        try:
            jpeg = reencode(frame.jpeg, scale=level.scale, quality=level.jpeg_quality)
            size = {k: round(v * level.scale) for k, v in
                    (("width", frame.width), ("height", frame.height)) if v}
            frame = frame.model_copy(update={"jpeg": jpeg, **size})
            payload = frame.dumps()
        except DecodeError:
            pass  # not an image: the cloud detector rejects it to the dead letters
    return Routed(it, r.tier, frame, payload, copy=copy, shadow=shadow)


@dataclass(frozen=True)
class Result:
    detection: Detection
    telemetry: TelemetryRecord
    shadow_jpeg: bytes | None = None  # set for shadow frames: they go to the shadow topic
    source: Incoming | None = None  # the message it answers (dead-lettered if publishing fails)

    def shadow_result(self) -> ShadowResult:
        d = self.detection
        return ShadowResult(camera=d.camera, seq=d.seq, ts_ms=d.ts_ms, node=d.node,
                            model_id=d.model_id, model_version=d.model_version,
                            boxes=d.boxes, jpeg=self.shadow_jpeg or b"", latency=d.latency)

    @property
    def key(self) -> bytes:
        """Idempotent result key: the same frame always gets the same key."""
        return f"{self.detection.camera}:{self.detection.seq}".encode()

    def returned(self, ms: float) -> Result:
        """This result after ``ms`` on the way back to the edge (the emulated link's
        return leg): ``latency.return_ms`` set, and added to both ``total_ms``."""
        d, t = self.detection, self.telemetry
        lat = d.latency.model_copy(update={"return_ms": round(ms, 3),
                                           "total_ms": d.latency.total_ms + ms})
        return dataclasses.replace(
            self, detection=d.model_copy(update={"latency": lat}),
            telemetry=t.model_copy(update={"total_ms": t.total_ms + ms}))

    def sample(self) -> Sample:
        """What the telemetry window aggregator keeps of this frame."""
        d, t = self.detection, self.telemetry
        return Sample(ts_ms=t.ts_ms, camera=d.camera, seq=d.seq, tier=d.tier,
                      model_id=d.model_id, model_version=d.model_version,
                      total_ms=t.total_ms, infer_ms=t.infer_ms, queue_ms=t.queue_ms,
                      queue_depth=t.queue_depth, labels=[b.label for b in d.boxes],
                      scores=[b.score for b in d.boxes])


@dataclass(frozen=True)
class Prepared:
    """A batch after parse and decode: (item, frame, image, decode ms) and rejects."""

    good: list[tuple[Incoming, FrameRecord, np.ndarray, float]]
    rejected: list[Rejected]
    shed: list[tuple[Incoming, FrameRecord]] = field(default_factory=list)


@dataclass(frozen=True)
class Canary:
    """A candidate model served to ``share`` of the frames of ``cameras`` (empty: all)."""

    detector: Detector
    share: float
    cameras: frozenset[str] = frozenset()
    thresholds: dict[str, float] = field(default_factory=dict)


class DetectStage:
    """Parse, decode and detect a batch of frames for one tier."""

    def __init__(self, detector: Detector, tier: Tier, node: str,
                 max_age_ms: int = 0, limits: DecodeLimits = DEFAULT_LIMITS) -> None:
        self.detector = detector
        self.tier = tier
        self.node = node
        self.max_age_ms = max_age_ms
        self.limits = limits
        self.thresholds: dict[str, float] = {}  # per camera, for the current model
        self.candidate: Canary | None = None

    def swap(self, detector: Detector, thresholds: dict[str, float] | None = None) -> None:
        """Serve ``detector`` to every frame from the next batch on (one attribute store
        each; a batch in flight finishes on the model it started with)."""
        self.thresholds = dict(thresholds or {})
        self.detector = detector
        self.candidate = None

    def try_out(self, canary: Canary | None) -> None:
        """Serve ``canary.detector`` to its share of its cameras' frames (None: stop)."""
        self.candidate = canary

    def _serving(self, frame: FrameRecord) -> tuple[Detector, dict[str, float]]:
        c = self.candidate
        # Knuth's multiplicative hash of seq: a spread-out, repeatable share of the frames
        if c is not None and (not c.cameras or frame.camera in c.cameras) \
                and (frame.seq * 2654435761) % 2**32 < c.share * 2**32:
            return c.detector, c.thresholds
        return self.detector, self.thresholds

    def prepare(self, items: Sequence[Incoming], now: int | None = None) -> Prepared:
        """Parse and decode (CPU work that can overlap the previous batch's inference).
        Frames older than ``max_age_ms`` are shed, not decoded: when the detector falls
        behind, the oldest frames go first and the queue stays bounded in time."""
        rejected: list[Rejected] = []
        good: list[tuple[Incoming, FrameRecord, np.ndarray, float]] = []
        shed: list[tuple[Incoming, FrameRecord]] = []
        now = now_ms() if now is None else now
        for it in items:
            t0 = time.perf_counter()
            try:
                frame = FrameRecord.parse(it.value)
                if self.max_age_ms and now - frame.ts_ms > self.max_age_ms:
                    shed.append((it, frame))
                    continue
                image = decode_jpeg(frame.jpeg, self.limits)
            except AutosteerError as exc:
                rejected.append(Rejected(it, exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a decoder's own error
                rejected.append(Rejected(it, exc, "decoding the frame"))
                continue
            good.append((it, frame, image, (time.perf_counter() - t0) * 1000))
        return Prepared(good, rejected, shed)

    def shed_results(self, prepared: Prepared) -> list[Detection]:
        """One ``status='shed'`` result per shed frame (no boxes): nothing goes missing."""
        detector = self.detector
        done = now_ms()
        out = []
        for _it, frame in prepared.shed:
            age = float(max(0, done - frame.ts_ms))
            out.append(Detection(
                camera=frame.camera, seq=frame.seq, ts_ms=frame.ts_ms, tier=self.tier,
                node=self.node, model_id=detector.model_id, model_version=detector.version,
                width=frame.width or 0, height=frame.height or 0, boxes=[], status="shed",
                reason=f"waited {age:.0f} ms > AUTOSTEER_MAX_FRAME_AGE_MS {self.max_age_ms}",
                latency=Latency(ingest_ms=0, route_ms=0, queue_ms=age, decode_ms=0,
                                infer_ms=0, total_ms=age)))
        return out

    def infer(self, prepared: Prepared, taken_ms: int, queue_depth: int = 0,
              extra_s: float = 0.0) -> tuple[list[Result], list[Rejected]]:
        """Detect on the prepared frames; returns results and frames the model failed on."""
        good = prepared.good
        if not good:
            return [], []
        # each frame's model is fixed here, for the whole batch, even if swapped meanwhile
        serving = [self._serving(g[1]) for g in good]
        groups: dict[int, list[int]] = {}
        for i, (det, _) in enumerate(serving):
            groups.setdefault(id(det), []).append(i)
        all_boxes: list[list[Box] | None] = [None] * len(good)
        failed: dict[int, Exception] = {}
        t0 = time.perf_counter()
        for idx in groups.values():
            det = serving[idx[0]][0]
            try:
                for i, boxes in zip(idx, det.detect([good[i][2] for i in idx]), strict=True):
                    all_boxes[i] = boxes
            except Exception:  # noqa: BLE001 - the batch failed: each frame once more, alone
                for i in idx:
                    try:
                        all_boxes[i] = det.detect([good[i][2]])[0]
                    except Exception as exc:  # noqa: BLE001 - this frame fails alone too
                        failed[i] = exc
        if extra_s > 0:  # injected fault: a slower node (tests, benchmarks)
            time.sleep(extra_s * len(good))
        infer_ms = (time.perf_counter() - t0) * 1000 / len(good)
        rejected = [Rejected(good[i][0], exc, "running the model on the frame")
                    for i, exc in failed.items()]
        results = []
        for n, boxes in enumerate(all_boxes):
            if boxes is None:
                continue
            try:
                results.append(self._result(good[n], boxes, serving[n], taken_ms,
                                            queue_depth, len(good), infer_ms))
            except Exception as exc:  # noqa: BLE001 - e.g. a model's out-of-range output
                rejected.append(Rejected(good[n][0], exc, "building the frame's result"))
        return results, rejected

    def _result(self, prepared: tuple[Incoming, FrameRecord, np.ndarray, float],
                boxes: list[Box], serving: tuple[Detector, dict[str, float]], taken_ms: int,
                queue_depth: int, batch_size: int, infer_ms: float) -> Result:
        it, frame, image, decode_ms = prepared
        done = now_ms()
        detector, thresholds = serving
        if frame.camera in thresholds:  # a per-camera threshold from retraining
            boxes = [b for b in boxes if b.score >= thresholds[frame.camera]]
        produced = it.produced_ms or frame.ts_ms
        routed = it.routed_ms or produced
        received = max(routed, min(it.received_ms or routed, taken_ms))
        lat = Latency(
            ingest_ms=max(0.0, produced - frame.ts_ms), route_ms=max(0.0, routed - produced),
            link_ms=float(received - routed), queue_ms=float(taken_ms - received),
            decode_ms=round(decode_ms, 3), infer_ms=round(infer_ms, 3),
            total_ms=max(0.0, done - frame.ts_ms),
        )
        det = Detection(
            camera=frame.camera, seq=frame.seq, ts_ms=frame.ts_ms, tier=self.tier,
            node=self.node, model_id=detector.model_id, model_version=detector.version,
            width=image.shape[1], height=image.shape[0], boxes=boxes, latency=lat,
        )
        scores = [b.score for b in boxes]
        tel = TelemetryRecord(
            ts_ms=done, node=self.node, camera=frame.camera, seq=frame.seq, tier=self.tier,
            model_id=detector.model_id, model_version=detector.version,
            batch_size=batch_size, queue_depth=queue_depth,
            ingest_ms=lat.ingest_ms, route_ms=lat.route_ms, link_ms=lat.link_ms,
            queue_ms=lat.queue_ms, decode_ms=lat.decode_ms, infer_ms=lat.infer_ms,
            total_ms=lat.total_ms, n_detections=len(boxes), max_score=max(scores, default=0.0),
            mean_score=float(np.mean(scores)) if scores else 0.0,
        )
        return Result(det, tel, frame.jpeg if it.shadow else None, source=it)


R = TypeVar("R", bound=Record)


def parse_valid(values: Iterable[bytes | None], record: type[R]) -> list[R]:
    """The values that parse as ``record``; the others are skipped. For the workers' own
    topics, where a bad message is no user's to fix (user-facing topics dead-letter)."""
    out = []
    for v in values:
        try:
            out.append(record.parse(v))
        except RecordError:
            continue
    return out


def observations(detections: Iterable[Detection],
                 received_ms: Iterable[int] | None = None) -> list[Observation]:
    """Detections -> what the offload policy learns from (shed frames say nothing).

    ``received_ms``: when the router read each back (0: unknown); the way back from the
    detector is then in ``total_ms`` and, with any emulated return, in ``back_ms``."""
    out = []
    got = itertools.repeat(0) if received_ms is None else received_ms
    for d, received in zip(detections, got, strict=False):  # got may be endless
        if d.status != "ok":  # a shed frame says nothing about service times
            continue
        obs = _observation(d, d.tier, d.latency)
        if received > 0:
            hop = float(max(0, received - (d.ts_ms + round(d.latency.total_ms))))
            obs = dataclasses.replace(obs, total_ms=obs.total_ms + hop,
                                      back_ms=d.latency.return_ms + hop)
        out.append(obs)
    return out


def copy_observation(sr: ShadowResult) -> Observation | None:
    """The cloud's answer on a copy of an edge frame -> an ``Observation`` with
    ``copy=True`` (None for a shadow result without timings, from an older worker)."""
    return None if sr.latency is None else _observation(sr, "cloud", sr.latency, copy=True)


def _observation(d: Detection | ShadowResult, tier: Tier, lat: Latency,
                 copy: bool = False) -> Observation:
    return Observation(
        camera=d.camera, tier=tier, total_ms=lat.total_ms, infer_ms=lat.infer_ms,
        queue_ms=lat.queue_ms, seq=d.seq, ts_ms=d.ts_ms, ingest_ms=lat.ingest_ms,
        route_ms=lat.route_ms, decode_ms=lat.decode_ms, node=d.node, model_id=d.model_id,
        n_boxes=len(d.boxes), link_ms=lat.link_ms, copy=copy)
