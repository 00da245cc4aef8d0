"""Model rollout: the model watcher, the canary judge, and hot swap.

- :class:`~autosteer.streams.models.ModelWatcher` (a thread of its own) reads
  ``<prefix>.models.updates`` from the beginning, loads what this worker serves, and
  hands each update to the event loop (``call_soon_threadsafe``);
- :class:`ModelRollout` applies it there, between batches: the detector of its tier
  serves it, tries it as a canary, or drops it (:meth:`DetectorRole.apply`), and the
  router's judge and drift watch hear of it;
- :class:`RolloutJudge` (with the router): while a version is a canary, compares its
  agreement with the serving version's on the same camera's shadow pairs (shadowing
  ``retrain_shadow_rate`` of that camera's edge frames meanwhile) and publishes the
  verdict on ``<prefix>.models.updates``: canary 1.0 (promote) or 0.0 (roll back).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Any

from autosteer.processors.detector import Detector
from autosteer.retrain.records import ModelUpdate
from autosteer.streams.pipeline import Incoming, Rejected
from autosteer.streams.roles.shadows import ShadowSampler
from autosteer.streams.runtime import Runtime
from autosteer.topics.records import Detection, QualityRecord, ShadowResult, now_ms

if TYPE_CHECKING:
    from autosteer.streams.roles.detector import DetectorRole
    from autosteer.streams.roles.drift import DriftWatch

log = logging.getLogger(__name__)


class RolloutJudge:
    """Promote a canary that agrees with the cloud at least as well as the serving
    version, roll back one that agrees worse (after ``min_pairs`` of its own pairs)."""

    def __init__(self, rt: Runtime, sampler: ShadowSampler, min_pairs: int = 6,
                 tolerance: float = 0.02, max_trial_s: float = 60.0) -> None:
        self.rt = rt
        self.sampler = sampler
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
                self.sampler.boost(camera, until)
        else:
            self.canaries.pop(update.version, None)
            self._unboost(update)

    def _unboost(self, update: ModelUpdate) -> None:
        for camera in update.cameras:
            self.sampler.unboost(camera)

    async def on_pair(self, edge: Detection, cloud: ShadowResult, q: QualityRecord) -> None:
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
            await self.rt.bus.publish(self.rt.names.models_updates, update.model.encode(),
                                      verdict.dumps())


class ModelRollout:
    """Follow model updates and apply them on the event loop (see the module)."""

    def __init__(self, rt: Runtime, roles: frozenset[str], detectors: dict[str, DetectorRole],
                 threads: int, judge: RolloutJudge | None = None,
                 drift: DriftWatch | None = None) -> None:
        self.rt = rt
        self.roles = roles
        self.detectors = detectors
        self.threads = threads
        self.judge = judge
        self.drift = drift
        self.watcher: Any = None
        self._tasks: set[asyncio.Future] = set()
        rt.on_start(self.start)
        rt.on_stop(self.stop)

    async def start(self) -> None:
        from autosteer.streams.models import ModelWatcher

        self.watcher = ModelWatcher(self.rt.settings, self.rt.names.models_updates,
                                    asyncio.get_running_loop(), self.on_update, self.on_bad,
                                    self.serves, self.threads, self.rt.health)
        self.watcher.start()

    async def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    def serves(self, update: ModelUpdate) -> bool:
        """Whether this worker loads ``update``'s model (its tier, and not a rollback)."""
        return update.tier in self.roles and update.tier in self.detectors and update.canary > 0

    def on_update(self, update: ModelUpdate, detector: Detector | None) -> None:
        """A model update, on the event loop (``detector`` loaded by the watcher when this
        worker serves it); a failure is reported, never silent."""
        try:
            if self.judge is not None:
                self.judge.on_update(update)
                if update.canary >= 1.0 and self.drift is not None:  # new outputs expected
                    self.drift.reset(update.cameras)
            role = self.detectors.get(update.tier)
            if role is not None:
                role.apply(update, detector)
        except Exception as exc:  # noqa: BLE001 - reported in the log and the UI feed
            log.exception("model update %s@%s could not be applied", update.model,
                          update.version)
            self.rt.events.append({"kind": "model_swap", "ts_ms": now_ms(), "tier": update.tier,
                                   "title": f"{update.tier} {update.model}@{update.version}: "
                                   f"failed: {type(exc).__name__}: {exc}"[:200]})

    def on_bad(self, item: Incoming, error: Exception) -> None:
        """A model update that is malformed or cannot be loaded: a dead letter."""
        self.rt.events.append({"kind": "model_swap", "ts_ms": now_ms(),
                               "title": f"model update refused: {error}"[:200]})
        task = asyncio.ensure_future(self.rt.bus.dead_letter([Rejected(item, error)]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
