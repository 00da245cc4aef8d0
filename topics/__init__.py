"""The public contract: topic names and record schemas."""

from autosteer.topics.names import TopicNames, TopicSpec
from autosteer.topics.records import (
    Box,
    CameraCommand,
    DeadLetter,
    Detection,
    FrameRecord,
    Latency,
    Record,
    TelemetryRecord,
)

__all__ = [
    "Box",
    "CameraCommand",
    "DeadLetter",
    "Detection",
    "FrameRecord",
    "Latency",
    "Record",
    "TelemetryRecord",
    "TopicNames",
    "TopicSpec",
]
