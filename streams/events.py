"""A consumed Faust event as the pure steps see it (:class:`~.pipeline.Incoming`)."""

from __future__ import annotations

import time
from typing import Any

from autosteer.streams.pipeline import Incoming
from autosteer.topics import headers as H
from autosteer.topics.records import now_ms


def header(headers: Any, name: str) -> bytes | None:
    """The value of header ``name`` (Faust gives a dict or a list of pairs), or None."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for k, v in items:
        if k == name:
            return v
    return None


def _ms(raw: bytes | None) -> int:
    return int(raw) if raw and raw.isdigit() else 0


def incoming(event: Any) -> Incoming:
    m = event.message
    produced = _ms(header(m.headers, H.PRODUCED_MS))  # set by the router on tier topics
    return Incoming(
        value=m.value, key=m.key, topic=m.topic, partition=m.partition, offset=m.offset,
        produced_ms=produced or (int(m.timestamp * 1000) if m.timestamp else 0),
        routed_ms=_ms(header(m.headers, H.ROUTED_MS)),
        received_ms=now_ms() - int((time.monotonic() - m.time_in) * 1000) if m.time_in else 0,
        shadow=header(m.headers, H.SHADOW) == b"1",
    )
