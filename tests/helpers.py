"""Helpers shared by the tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from autosteer.infra.worker import WorkerProcess as Worker  # noqa: F401 - the tests' name
from autosteer.infra.worker import worker_environment
from autosteer.settings import Settings


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def wait_for(pred: Callable[[], Any], timeout_s: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def produce(s: Settings, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    """Produce (key, value) pairs with plain confluent-kafka and wait for delivery."""
    from confluent_kafka import Producer

    p = Producer(s.producer_config())
    errors: list[Any] = []
    for key, value in messages:
        p.produce(topic, key=key, value=value,
                  on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert p.flush(30) == 0, "messages still queued after 30s"
    assert not errors, errors


def consume(s: Settings, topic: str, *, until: Callable[[list[Any]], bool],
            timeout_s: float, what: str) -> list[Any]:
    """Read ``topic`` from the beginning with a fresh group until ``until(messages)``."""
    from confluent_kafka import Consumer

    c = Consumer(s.consumer_config(unique("g")))
    c.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            got.append(m)
            if until(got):
                return got
    finally:
        c.close()
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}; "
                         f"got {len(got)} message(s)")


def cli(s: Settings, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    """Run the ``autosteer`` CLI in a separate process with ``s`` as its environment."""
    return subprocess.run([sys.executable, "-m", "autosteer.streams.cli", *args],
                          env=worker_environment(s), capture_output=True, text=True, timeout=timeout_s)


def feeds(s: Settings) -> dict[str, Any]:
    """The worker's UI feeds (``GET /api/feeds``): model swaps, anomalies, ..."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{s.web_port}/api/feeds", timeout=10) as r:
        return json.loads(r.read())


def wait_for_swap(s: Settings, version: str, what: str, timeout_s: float = 60) -> None:
    """Wait until the worker of ``s`` reports that its model ``version`` is now
    ``what`` ("serving", "canary 50%", "rolled back"): the hot swap happened."""
    def swapped() -> bool:
        return any(version in e.get("title", "") and e["title"].endswith(what)
                   for e in feeds(s).get("model_swaps", []))

    wait_for(swapped, timeout_s, f"{version}: {what} on {s.node}")


class Message:
    """A consumed confluent-kafka message, as far as the telemetry loader reads one."""

    def __init__(self, value: bytes | None, offset: int = 0) -> None:
        self._value, self._offset = value, offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value
