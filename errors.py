"""The autosteer error tree.

Every error the product raises on purpose derives from :class:`AutosteerError`;
errors of lower libraries are translated at the edge with ``raise ... from exc``.

    AutosteerError
    ├── ConfigError          settings are missing or inconsistent
    ├── InfraError           a local server (broker, ClickHouse, RTSP) cannot start or be reached
    ├── ModelError           a model file is missing, malformed or cannot be prepared
    ├── RecordError          a message does not match its topic's contract (goes to the dead-letter topic)
    │   └── DecodeError      a frame's image bytes cannot be decoded
    └── StoreError           the telemetry store rejected a query or insert
        └── QueryRejected    a read-only SQL query was refused before it ran
"""


class AutosteerError(Exception):
    """Base class of all autosteer errors."""


class ConfigError(AutosteerError):
    """Settings are missing or inconsistent."""


class InfraError(AutosteerError):
    """A local server cannot be started, stopped or reached."""


class ModelError(AutosteerError):
    """A model is missing, malformed or cannot be prepared."""


class RecordError(AutosteerError):
    """A message does not match its topic's contract."""


class DecodeError(RecordError):
    """A frame's image bytes cannot be decoded."""


class StoreError(AutosteerError):
    """The telemetry store failed."""


class QueryRejected(StoreError):
    """A read-only SQL query was refused before it ran."""
