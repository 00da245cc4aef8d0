"""Local infrastructure: tansu broker or a 3-node Apache Kafka cluster, ClickHouse server,
RTSP test camera, sample video."""

from autosteer.infra.broker import LocalBroker
from autosteer.infra.clickhouse import LocalClickHouse
from autosteer.infra.kafka import LocalKafkaCluster
from autosteer.infra.rtsp import RtspTestServer
from autosteer.infra.sample import ensure_sample_video
from autosteer.infra.stack import LocalStack

__all__ = ["LocalBroker", "LocalClickHouse", "LocalKafkaCluster", "LocalStack", "RtspTestServer", "ensure_sample_video"]
