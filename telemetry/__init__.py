"""Telemetry: ClickHouse schema, stores (server and embedded) and the sink."""

from autosteer.telemetry.schema import FRAME_COLUMNS, FRAMES_TABLE
from autosteer.telemetry.store import (
    EmbeddedStore,
    ServerStore,
    TelemetryStore,
    check_read_only,
    open_store,
)

__all__ = [
    "FRAMES_TABLE",
    "FRAME_COLUMNS",
    "EmbeddedStore",
    "ServerStore",
    "TelemetryStore",
    "check_read_only",
    "open_store",
]
