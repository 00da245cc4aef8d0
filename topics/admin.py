"""Create autosteer's topics explicitly (Faust workers do not recreate missing topics)."""

from __future__ import annotations

import logging

from autosteer.errors import InfraError
from autosteer.settings import Settings
from autosteer.topics.names import TopicNames
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

log = logging.getLogger(__name__)


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
            replication_factor=settings.replication_factor,
            config={"max.message.bytes": str(settings.max_message_bytes)},
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
