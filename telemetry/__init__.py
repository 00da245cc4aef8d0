"""Telemetry: windows of counters and sketches, sampled frame rows, node heartbeats,
the ClickHouse schema, the stores (server and embedded) and the exactly-once sink."""

from autosteer.telemetry.sampling import Sampler
from autosteer.telemetry.schema import FRAMES, NODES, TABLES, VIEWS, WINDOWS, Table
from autosteer.telemetry.sink import Position, Sink
from autosteer.telemetry.store import (
    EmbeddedStore,
    ServerStore,
    TelemetryStore,
    check_read_only,
    open_store,
)
from autosteer.telemetry.window import Sample, WindowAggregator

__all__ = [
    "FRAMES",
    "NODES",
    "TABLES",
    "VIEWS",
    "WINDOWS",
    "EmbeddedStore",
    "Position",
    "Sample",
    "Sampler",
    "ServerStore",
    "Sink",
    "Table",
    "TelemetryStore",
    "WindowAggregator",
    "check_read_only",
    "open_store",
]
