"""Roles ``edge`` and ``cloud``: one detector agent per tier, ``frames.<tier>`` ->
``<prefix>.detections`` (and telemetry rows, and shadow results for shadowed frames).

The agent decodes batch k+1 while batch k is in the model (two batches in flight at
most). Each message holds one extra reference until its results are handed to the
producer (``take_events`` acks a batch when the next one is taken), so its offset is
committed only then. What a batch raises is the agent's crash: after a restart its
frames are detected one by one (:mod:`..supervise`). A frame too old to be worth
detecting is shed with a ``status: "shed"`` result; a bad one is dead-lettered.

For the cloud tier behind an emulated link, results go back over it: they are published
one delay later, the next batch does not wait for them.

Exactly-once (a :class:`~autosteer.streams.kafka.TransactionalStream` is given, on a
broker with transactions): the role registers no Faust agent. Its own consumer reads the
tier topic, one batch at a time, and each batch's results, shed results and dead letters
go out in one transaction with the batch's next input offsets. Faust never commits these
offsets, so there is one committer. Telemetry rows stay at-least-once (keyed by node).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from autosteer.offload.link import EmulatedLink
from autosteer.offload.policy import Tier
from autosteer.processors.decode import DecodeLimits
from autosteer.processors.detector import Detector
from autosteer.retrain.records import ModelUpdate
from autosteer.streams.bus import Bus
from autosteer.streams.events import incoming
from autosteer.streams.kafka import TransactionalStream
from autosteer.streams.pipeline import Canary, DetectStage, Prepared, Rejected, Result
from autosteer.streams.roles.telemetry import Tap
from autosteer.streams.runtime import Runtime
from autosteer.topics.records import now_ms

log = logging.getLogger(__name__)


@dataclass
class Faults:
    """Injected faults of this worker (``POST /fault``; tests and benchmarks)."""

    delay_ms: float = 0.0  # extra service time per frame of every detector batch


class DetectorRole:
    """The ``detect-<tier>`` agent, its stage (model, canary, thresholds) and counts."""

    def __init__(self, rt: Runtime, tier: Tier, load: Callable[[], Detector], tap: Tap,
                 faults: Faults, link: EmulatedLink | None = None,
                 stream: TransactionalStream | None = None) -> None:
        s = rt.settings
        self.rt = rt
        self.tier = tier
        self.name = f"detect-{tier}"
        self.tap = tap
        self.faults = faults
        self.link = link if tier == "cloud" else None
        self.detected = 0
        self.shed = 0
        self.stage: DetectStage | None = None
        self._load = load
        self._limits = DecodeLimits(s.max_image_pixels, s.decode_budget_mb * 2**20)
        self._pending: list[tuple[ModelUpdate, Detector | None]] = []  # before the stage
        self._decode = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"decode-{tier}")
        self._infer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{tier}")
        self._in_model: list[asyncio.Future] = []  # the batch in the model (at most one)
        self._legs: set[asyncio.Future] = set()  # results on their way back over the link
        self.stream = stream
        self.out: Bus = stream.bus if stream is not None else rt.bus  # where results go
        if stream is None:
            rt.agent(rt.names.tier_topic(tier), self.name, self.on_frames, size=s.batch_size,
                     within=s.batch_wait_s, retry=self.retry, drain=self.settle)
        else:
            rt.health.register(self.name, "agent")
            rt.on_start(self.run_transactional)
            rt.on_stop(stream.close)

    async def ready_stage(self) -> DetectStage:
        """The stage, loading the model on first use (in the inference thread)."""
        if self.stage is None:
            s = self.rt.settings
            detector = await asyncio.get_running_loop().run_in_executor(self._infer, self._load)
            self.stage = DetectStage(detector, self.tier, s.node,
                                     max_age_ms=s.max_frame_age_ms, limits=self._limits)
            for update, det in self._pending:
                self.apply(update, det)
            self._pending.clear()
        return self.stage

    def apply(self, update: ModelUpdate, detector: Detector | None) -> str:
        """A model update, between batches: serve it (canary 1), try it on a share
        (0 < canary < 1), or drop the candidate of that version (canary 0)."""
        stage = self.stage
        if stage is None:
            self._pending.append((update, detector))
            return "pending"
        if update.canary >= 1.0 and detector is not None:
            stage.swap(detector, update.thresholds)
            what = "serving"
        elif update.canary > 0 and detector is not None:
            stage.try_out(Canary(detector, update.canary, frozenset(update.cameras),
                                 dict(update.thresholds)))
            what = f"canary {update.canary:.0%}"
        else:
            if stage.candidate is not None and stage.candidate.detector.version == update.version:
                stage.try_out(None)
            what = "rolled back"
        log.warning("%s model %s@%s: %s", update.tier, update.model, update.version, what)
        self.rt.events.append({"kind": "model_swap", "ts_ms": now_ms(), "tier": update.tier,
                               "title": f"{update.tier} {update.model}@{update.version}: {what}"})
        return what

    async def settle(self) -> None:
        """Wait for the batch in the model to be published."""
        while self._in_model:
            await self._in_model.pop()

    async def on_frames(self, events: Sequence[Any]) -> None:
        stage = await self.ready_stage()
        taken, depth = now_ms(), len(events) + self.rt.health.waiting(self.name)
        prepared = await asyncio.get_running_loop().run_in_executor(
            self._decode, stage.prepare, [incoming(e) for e in events])
        await self.settle()
        for e in events:
            e.message.incref()
        self._in_model.append(asyncio.ensure_future(
            self._infer_and_publish(stage, prepared, events, taken, depth)))

    async def retry(self, events: Sequence[Any]) -> None:
        """After a crash: what was in the model first, then these frames at once."""
        await self.settle()
        await self.detect_now(events)

    async def detect_now(self, events: Sequence[Any]) -> None:
        stage = await self.ready_stage()
        prepared = stage.prepare([incoming(e) for e in events])
        results, failed = await asyncio.get_running_loop().run_in_executor(
            self._infer, stage.infer, prepared, now_ms(), len(events))
        await self.publish(stage, prepared, results, failed)

    async def _infer_and_publish(self, stage: DetectStage, prepared: Prepared,
                                 events: Sequence[Any], taken: int, depth: int) -> None:
        try:
            results, failed = await asyncio.get_running_loop().run_in_executor(
                self._infer, functools.partial(stage.infer, prepared, taken, depth,
                                               extra_s=self.faults.delay_ms / 1000))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - nothing escapes an agent
            await self._recover_and_ack(events, exc)
            return
        if self.link is None:
            await self._publish_and_ack(stage, prepared, results, failed, events)
            return
        back = self.link.delay_s + self.link.jitter()
        leg = asyncio.ensure_future(self._publish_and_ack(
            stage, prepared, [r.returned(back * 1000) for r in results], failed, events,
            after_s=back))
        self._legs.add(leg)
        leg.add_done_callback(self._legs.discard)

    async def _publish_and_ack(self, stage: DetectStage, prepared: Prepared,
                               results: list[Result], failed: list[Rejected],
                               events: Sequence[Any], after_s: float = 0.0) -> None:
        """Publish a batch's results (``after_s`` later: the leg back over the link), then
        ack its messages; if publishing raises, the batch is recovered first."""
        if after_s:
            await asyncio.sleep(after_s)
        try:
            await self.publish(stage, prepared, results, failed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - nothing escapes an agent
            await self._recover_and_ack(events, exc)
            return
        for e in events:  # now safe to commit: results are in the producer
            e.ack()

    async def _recover_and_ack(self, events: Sequence[Any], exc: Exception) -> None:
        await self.rt.supervisor.recover(self.name, events, exc, self.detect_now)
        for e in events:
            e.ack()

    # --- exactly-once: own consumer, one transaction per batch ---------------------------
    async def detect_batch(self, events: Sequence[Any]) -> None:
        """Detect and publish one batch to :attr:`out` (the transactional path)."""
        stage = await self.ready_stage()
        taken, loop = now_ms(), asyncio.get_running_loop()
        prepared = await loop.run_in_executor(self._decode, stage.prepare,
                                              [incoming(e) for e in events])
        results, failed = await loop.run_in_executor(
            self._infer, functools.partial(stage.infer, prepared, taken, len(events),
                                           extra_s=self.faults.delay_ms / 1000))
        if self.link is not None:
            back = self.link.delay_s + self.link.jitter()
            await asyncio.sleep(back)
            results = [r.returned(back * 1000) for r in results]
        await self.publish(stage, prepared, results, failed)

    async def run_transactional(self) -> None:
        """Batches from the stream, each detected under the supervisor's guard and
        committed with its offsets in one transaction; a failed transaction's batch is
        read again (the stream reopens from the committed offsets)."""
        stream, s = self.stream, self.rt.settings
        assert stream is not None
        while not stream.closed.is_set():
            try:
                events = await stream.batch(s.batch_size, s.batch_wait_s)
                if not events:
                    self.rt.health.progress(self.name)
                    continue
                await self.rt.supervisor.guard(self.name, events, self.detect_batch,
                                               self.detect_now)
                await stream.commit(events)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. the broker is unreachable
                stream.bus.take()  # the batch's results are not sent
                await stream.reopen()  # and it comes again, from the committed offsets
                await self.rt.supervisor.recover(self.name, [], exc, self.detect_now)

    async def publish(self, stage: DetectStage, prepared: Prepared, results: list[Result],
                      failed: list[Rejected]) -> None:
        """Results, shed results and dead letters of one batch; a result that cannot be
        serialized or sent is dead-lettered instead, the others go on."""
        bus, names = self.out, self.rt.names
        unsent: list[Rejected] = []
        for r in results:
            try:
                if r.shadow_jpeg is not None:  # not a result for users: the edge answers it
                    await bus.publish(names.shadow, r.key, r.shadow_result().dumps())
                    continue
                await bus.publish(names.detections, r.key, r.detection.dumps())
                self.detected += 1
                await self.tap.frame(r)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - this result only
                if r.source is None:
                    raise
                unsent.append(Rejected(r.source, exc, "publishing the frame's result"))
        for shed in stage.shed_results(prepared):
            await bus.publish(names.detections, f"{shed.camera}:{shed.seq}".encode(),
                              shed.dumps())
            self.shed += 1
        await bus.dead_letter(prepared.rejected + failed + unsent)
