"""Hot swap: detectors follow ``<prefix>.models.updates`` and switch models between
batches, without a restart.

:class:`ModelWatcher` is a thread with its own confluent-kafka consumer (a group of its
own, so every worker sees every update) that reads the topic from the beginning, loads
what this worker serves, and hands each valid
:class:`~autosteer.retrain.records.ModelUpdate` to the event loop, which applies it. An
update's ``canary`` says how it rolls out:

- ``1.0``: serve it to every frame (promote);
- between 0 and 1: serve it to that share of the frames (by ``seq``) of its cameras,
  the rest stay on the current version (canary);
- ``0.0``: drop the candidate of that version (roll back).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autosteer.errors import ModelError
from autosteer.processors.detector import Detector, load_detector
from autosteer.processors.manifest import sha256_file
from autosteer.retrain.records import ModelUpdate
from autosteer.settings import Settings
from autosteer.streams.pipeline import Incoming
from autosteer.streams.supervise import Health, SupervisedThread
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

log = logging.getLogger(__name__)


def load_update(update: ModelUpdate, settings: Settings, threads: int) -> Detector:
    """Load the artifact of ``update`` after checking its hash, or raise ModelError."""
    path = Path(update.artifact)
    if not path.exists():
        raise ModelError(f"model update {update.model}@{update.version}: no file at {path}; "
                         "the registry must be on a filesystem every worker mounts")
    digest = sha256_file(path)
    if digest != update.sha256:
        raise ModelError(f"model update {update.model}@{update.version}: {path} has sha256 "
                         f"{digest[:12]}..., the update says {update.sha256[:12]}...")
    floor = min([settings.score_threshold, *update.thresholds.values()])
    return load_detector(path.parent.parent, path.parent.name, providers=settings.providers,
                         intra_op_threads=threads, score_threshold=floor)


class ModelWatcher(SupervisedThread):
    """Hand every model update on ``topic`` (from the beginning) to the event loop.

    This thread only reads and loads: for an update that ``wanted(update)`` says this
    worker serves, it loads the artifact here (seconds of work off the loop), then hands
    ``on_update(update, detector)`` to ``loop`` with ``call_soon_threadsafe``; the loop
    owns every piece of state the update changes. A message that is not a valid update,
    or whose artifact cannot be loaded, goes to ``on_failed(message, error)`` on the loop
    (a dead letter). A crash restarts the thread, which reads the topic again from the
    beginning (updates apply idempotently)."""

    def __init__(self, settings: Settings, topic: str, loop: asyncio.AbstractEventLoop,
                 on_update: Callable[[ModelUpdate, Detector | None], None],
                 on_failed: Callable[[Incoming, Exception], None],
                 wanted: Callable[[ModelUpdate], bool], threads: int,
                 health: Health | None = None) -> None:
        super().__init__("model-watcher", health, settings.agent_backoff_s)
        self.settings = settings
        self.topic = topic
        self.loop = loop
        self.on_update = on_update
        self.on_failed = on_failed
        self.wanted = wanted
        self.threads = threads
        self._loaded: dict[tuple[str, str], Detector] = {}  # this thread's, by model@version

    def work(self) -> None:
        conf = self.settings.consumer_config(f"{self.settings.topic_prefix}-models-"
                                             f"{uuid.uuid4().hex[:8]}")
        conf.update({"enable.auto.commit": False})
        consumer = Consumer(conf)
        try:
            # assigned, not subscribed: no group join to wait for, every partition, from 0
            meta = consumer.list_topics(self.topic, timeout=10).topics[self.topic]
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING)
                             for p in meta.partitions])
        except BaseException:
            consumer.close()
            raise
        self.consume(consumer, self._handle)

    def _handle(self, m: Any) -> None:
        try:
            update = ModelUpdate.parse(m.value())
            det = self._load(update) if self.wanted(update) else None
        except Exception as exc:  # noqa: BLE001 - this message only: a dead letter
            item = Incoming(m.value(), m.key(), m.topic(), m.partition(), m.offset())
            self.loop.call_soon_threadsafe(self.on_failed, item, exc)
            return
        self.loop.call_soon_threadsafe(self.on_update, update, det)

    def _load(self, update: ModelUpdate) -> Detector:
        key = (update.model, update.version)
        if key not in self._loaded:
            self._loaded[key] = load_update(update, self.settings, self.threads)
        return self._loaded[key]
