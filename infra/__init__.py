"""Local infrastructure: tansu broker, ClickHouse server, RTSP test camera, sample video."""

from autosteer.infra.broker import LocalBroker
from autosteer.infra.clickhouse import LocalClickHouse
from autosteer.infra.rtsp import RtspTestServer
from autosteer.infra.sample import ensure_sample_video
from autosteer.infra.stack import LocalStack

__all__ = ["LocalBroker", "LocalClickHouse", "LocalStack", "RtspTestServer", "ensure_sample_video"]
