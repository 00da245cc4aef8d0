"""Topic names: the public contract of which data lives where.

Every name carries the deployment's prefix (``AUTOSTEER_TOPIC_PREFIX``), so several
deployments can share one Kafka cluster. The names come from the catalog
(:mod:`autosteer.topics.catalog`): a topic ``a.b`` is ``TopicNames(prefix).a_b``.

>>> t = TopicNames("lab")
>>> t.frames, t.detections, t.deadletter, t.models_updates
('lab.frames', 'lab.detections', 'lab.deadletter', 'lab.models.updates')
>>> t.framez
Traceback (most recent call last):
...
AttributeError: no topic 'framez'; topics: frames, cameras, frames_edge, ...
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autosteer.topics.catalog import Topic


@functools.cache
def _catalog() -> tuple[Topic, ...]:
    # imported on first use: the catalog imports every record type, some of which
    # (retrain, rootcause) import this package
    from autosteer.topics.catalog import CATALOG

    return CATALOG


@functools.cache
def _by_attr() -> dict[str, Topic]:
    return {t.attr: t for t in _catalog()}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    description: str
    public: bool  # public topics are read or written by users; the others are internal
    config: tuple[tuple[str, str], ...] = ()  # topic configs set at creation


@dataclass(frozen=True)
class TopicNames:
    prefix: str = "autosteer"

    def __getattr__(self, attr: str) -> str:
        if attr.startswith("__"):
            raise AttributeError(attr)
        topic = _by_attr().get(attr)
        if topic is None:
            raise AttributeError(f"no topic {attr!r}; topics: "
                                 f"{', '.join(list(_by_attr())[:3])}, ...")
        return self.of(topic)

    def of(self, topic: Topic) -> str:
        """The full name of a catalog entry."""
        return f"{self.prefix}.{topic.suffix}"

    def all(self) -> list[str]:
        """Every topic's name, in catalog order (what a worker subscribes from)."""
        return [self.of(t) for t in _catalog()]

    def tier_topic(self, tier: str) -> str:
        if tier == "edge":
            return self.frames_edge
        if tier == "cloud":
            return self.frames_cloud
        raise ValueError(f"unknown tier {tier!r}; expected 'edge' or 'cloud'")

    def specs(self, partitions: int) -> list[TopicSpec]:
        """Every topic autosteer creates, with its partition count."""
        return [TopicSpec(self.of(t), t.partitions or partitions, t.description, t.public,
                          t.config) for t in _catalog()]
