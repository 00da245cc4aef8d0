"""Hot swap: detectors follow ``<prefix>.models.updates`` and switch models between
batches, without a restart.

:class:`ModelWatcher` is a thread with its own confluent-kafka consumer (a group of its
own, so every worker sees every update) that reads the topic from the beginning and
hands each valid :class:`~autosteer.retrain.records.ModelUpdate` to a callback. An
update's ``canary`` says how it rolls out:

- ``1.0``: serve it to every frame (promote);
- between 0 and 1: serve it to that share of the frames (by ``seq``) of its cameras,
  the rest stay on the current version (canary);
- ``0.0``: drop the candidate of that version (roll back).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from autosteer.errors import ModelError, RecordError
from autosteer.processors.detector import Detector, load_detector
from autosteer.processors.manifest import sha256_file
from autosteer.retrain.records import ModelUpdate
from autosteer.settings import Settings
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


class ModelWatcher(threading.Thread):
    """Call ``on_update`` for every model update on ``topic``, from the beginning."""

    def __init__(self, settings: Settings, topic: str,
                 on_update: Callable[[ModelUpdate], None]) -> None:
        super().__init__(name="model-watcher", daemon=True)
        self.settings = settings
        self.topic = topic
        self.on_update = on_update
        self.halt = threading.Event()

    def stop(self) -> None:
        self.halt.set()

    def run(self) -> None:
        conf = self.settings.consumer_config(f"{self.settings.topic_prefix}-models-"
                                             f"{uuid.uuid4().hex[:8]}")
        conf.update({"enable.auto.commit": False})
        consumer = Consumer(conf)
        # assigned, not subscribed: no group join to wait for, every partition, from 0
        meta = consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING)
                         for p in meta.partitions])
        try:
            while not self.halt.is_set():
                m = consumer.poll(0.5)
                if m is None or m.error():
                    continue
                try:
                    update = ModelUpdate.parse(m.value())
                except RecordError as exc:
                    log.warning("ignoring a malformed model update: %s", exc)
                    continue
                try:
                    self.on_update(update)
                except Exception:  # noqa: BLE001 - one bad update must not stop the watcher
                    log.exception("model update %s@%s failed", update.model, update.version)
        finally:
            consumer.close()
