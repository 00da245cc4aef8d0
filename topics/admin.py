"""Create autosteer's topics explicitly (Faust workers do not recreate missing topics).

Each topic gets ``AUTOSTEER_REPLICATION_FACTOR`` replicas, or, unset, the broker's
``default.replication.factor`` (replication factor -1 in the request, KIP-464): on the
local Kafka cluster that is 3 with ``min.insync.replicas=2``, where a topic made with 1
replica would refuse every ``acks=all`` write. Frame topics get their catalog retention
(:data:`~autosteer.topics.catalog.FRAME_RETENTION`); tansu accepts and ignores it.

>>> from autosteer.topics.names import TopicNames
>>> spec = TopicNames("lab").specs(4)[0]
>>> replication(Settings()), topic_config(spec, Settings())["retention.ms"]
(-1, '3600000')
"""

from __future__ import annotations

import logging

from autosteer.errors import InfraError
from autosteer.settings import Settings
from autosteer.topics.names import TopicNames, TopicSpec
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

log = logging.getLogger(__name__)
BROKER_DEFAULT = -1  # the replication factor that asks for the broker's default


def replication(settings: Settings) -> int:
    """The replication factor new topics are requested with."""
    return settings.replication_factor or BROKER_DEFAULT


def topic_config(spec: TopicSpec, settings: Settings) -> dict[str, str]:
    """The topic configs a new topic is created with."""
    return {"max.message.bytes": str(settings.max_message_bytes), **dict(spec.config)}


def ensure_topics(settings: Settings, timeout_s: float = 15.0,
                  admin: AdminClient | None = None) -> list[str]:
    """Create every missing topic; return the names created. Idempotent. Pass ``admin``
    to reuse one client when checking again and again."""
    names = TopicNames(settings.topic_prefix)
    admin = admin or AdminClient(settings.confluent_config())
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise InfraError(
            f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}. "
            "Start the local broker with `autosteer infra up` or set AUTOSTEER_KAFKA_BOOTSTRAP."
        ) from exc
    wanted = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=replication(settings),
            config=topic_config(s, settings),
        )
        for s in names.specs(settings.partitions)
        if s.name not in existing
    ]
    created = []
    if wanted:
        for name, fut in admin.create_topics(wanted, operation_timeout=timeout_s).items():
            try:
                fut.result(timeout=timeout_s)
                created.append(name)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" in str(exc):
                    continue
                raise InfraError(f"cannot create topic {name!r}: {exc}") from exc
        log.info("created topics %s", created)
    return created
