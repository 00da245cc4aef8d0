"""Nothing escapes an agent: per-batch guards, restarts with backoff, and agent health.

Every Faust agent of a worker is a :meth:`Supervisor.agent`: a loop over batches of one
stream that calls a plain ``handle(events)``. The steps inside ``handle`` isolate each
message (they return rejects, see :mod:`.pipeline`); what still escapes ``handle`` is
caught here, whatever it is:

1. the agent counts as crashed (``/ready`` answers 503 and names it, with the error);
2. it waits (backoff: ``AUTOSTEER_AGENT_BACKOFF_S``, doubling up to 30 s on crashes in a
   row), then restarts: it is counted in ``/metrics``;
3. it takes every message of the failed batch again, one at a time; a message that
   fails again alone becomes a dead letter with the reason and the error type.

So a message is answered, redelivered or dead-lettered, never dropped, and the stream
is never left: the next batch is taken only after the failed one is settled, and its
offsets are committed only then. Consumer threads (:class:`SupervisedThread`) get the
same restart-with-backoff; they commit only what they finished, so Kafka redelivers
what a crashed thread held.

:class:`Health` is what ``/ready``, ``/status``, ``/metrics`` and the UI read: per agent
or thread, its restarts, last error, and the age of its last progress. An agent that
made no progress for ``AUTOSTEER_AGENT_STALL_S`` while messages wait for it is stalled.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[Any]], Awaitable[None]]
DeadLetterer = Callable[[Sequence[Any], Exception, str], Awaitable[None]]
MAX_BACKOFF_S = 30.0


@dataclass
class AgentHealth:
    """One agent's or thread's state, as the health endpoints show it."""

    name: str
    kind: str  # "agent" | "thread"
    restarts: int = 0
    crashes: int = 0
    last_error: str | None = None
    down_since: float | None = None  # monotonic; set while crashed, until it restarts
    progress_at: float = 0.0  # monotonic time of the last finished batch (or start)
    busy_since: float | None = None  # holding a batch since (monotonic)
    waiting: Callable[[], int] = lambda: 0  # messages waiting for it
    stall_s: float | None = None  # its own stall threshold (a batch may take long by design)

    def problem(self, now: float, stall_s: float) -> str | None:
        """Why this agent is not ready, or None."""
        if self.down_since is not None:
            return f"crashed {now - self.down_since:.1f}s ago: {self.last_error}"
        stall_s = self.stall_s or stall_s
        idle = now - self.progress_at
        if idle > stall_s:
            held = self.busy_since is not None
            waiting = _safe_count(self.waiting)
            if held or waiting:
                what = "holding a batch" if held else f"{waiting} message(s) waiting"
                return f"no progress for {idle:.0f}s with {what}"
        return None


class Health:
    """The health of every agent and thread of one worker (thread-safe: consumer
    threads report their own progress)."""

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self._lock = threading.Lock()
        self._agents: dict[str, AgentHealth] = {}

    def register(self, name: str, kind: str = "agent",
                 waiting: Callable[[], int] | None = None,
                 stall_s: float | None = None) -> AgentHealth:
        with self._lock:
            h = self._agents.get(name)
            if h is None:
                h = self._agents[name] = AgentHealth(name, kind, progress_at=time.monotonic())
            if waiting is not None:
                h.waiting = waiting
            if stall_s is not None:
                h.stall_s = stall_s
            return h

    def busy(self, name: str) -> None:
        with self._lock:
            self._agents[name].busy_since = time.monotonic()

    def progress(self, name: str) -> None:
        with self._lock:
            h = self._agents[name]
            h.progress_at, h.busy_since = time.monotonic(), None

    def crashed(self, name: str, exc: BaseException) -> None:
        with self._lock:
            h = self._agents[name]
            h.crashes += 1
            h.last_error = f"{type(exc).__name__}: {exc}"[:500]
            h.down_since = time.monotonic()

    def restarted(self, name: str) -> None:
        with self._lock:
            h = self._agents[name]
            h.restarts += 1
            h.down_since = None
            h.progress_at = time.monotonic()

    def waiting(self, name: str) -> int:
        """Messages waiting for agent ``name`` (0 if it is unknown)."""
        with self._lock:
            h = self._agents.get(name)
        return 0 if h is None else _safe_count(h.waiting)

    def problems(self) -> dict[str, str]:
        """Agent -> why it is not ready (crashed, or stalled with work waiting)."""
        now = time.monotonic()
        with self._lock:
            agents = list(self._agents.values())
        return {h.name: p for h in agents if (p := h.problem(now, self.stall_s)) is not None}

    def snapshot(self) -> list[dict[str, Any]]:
        """Every agent and thread: kind, state, restarts, last error, progress age."""
        now = time.monotonic()
        with self._lock:
            agents = sorted(self._agents.values(), key=lambda h: h.name)
        out = []
        for h in agents:
            problem = h.problem(now, self.stall_s)
            out.append({"name": h.name, "kind": h.kind,
                        "state": "crashed" if h.down_since is not None
                        else "stalled" if problem else "running",
                        "restarts": h.restarts, "crashes": h.crashes,
                        "last_error": h.last_error, "problem": problem,
                        "progress_age_s": round(now - h.progress_at, 3)})
        return out


class Supervisor:
    """Runs agents so that nothing escapes them (see the module docstring)."""

    def __init__(self, health: Health, dead_letter: DeadLetterer, backoff_s: float) -> None:
        self.health = health
        self._dead_letter = dead_letter
        self.backoff_s = backoff_s
        self._delays: dict[str, float] = {}
        self._crash_next: set[str] = set()  # fault injection: crash these agents once

    def crash_next_batch(self, name: str) -> None:
        """Fault injection (tests): the next batch of agent ``name`` raises inside it."""
        self._crash_next.add(name)

    def agent(self, name: str, handle: Handler, *, size: int, within: float,
              retry: Handler | None = None, drain: Callable[[], Awaitable[None]] | None = None,
              stall_s: float | None = None) -> Callable[[Any], Any]:
        """A Faust agent function: batches of up to ``size`` events (waiting at most
        ``within`` s) go to ``handle``. After a crash, each message of the batch goes to
        ``retry`` (default ``handle``) alone. ``drain`` runs when the stream ends.
        ``stall_s`` overrides the stall threshold for an agent whose batches take long."""
        self.health.register(name, "agent", stall_s=stall_s)

        async def run(stream: Any) -> None:
            self.health.register(name, "agent", waiting=lambda: _buffered(stream))
            while True:
                try:
                    async for events in stream.take_events(size, within=within):
                        await self.guard(name, events, handle, retry or handle)
                    break  # the stream ended: the worker is stopping
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the stream itself failed
                    await self._down(name, exc)
            if drain is not None:
                await drain()

        run.__name__ = name.replace("-", "_")
        return run

    async def guard(self, name: str, events: Sequence[Any], handle: Handler,
                    retry: Handler) -> None:
        """``handle(events)``; if it raises, :meth:`recover` the batch."""
        self.health.busy(name)
        try:
            if name in self._crash_next:
                self._crash_next.discard(name)
                raise RuntimeError(f"injected crash of agent {name} (POST /fault)")
            await handle(events)
            self._delays.pop(name, None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - nothing escapes an agent
            await self.recover(name, events, exc, retry)
        self.health.progress(name)

    async def recover(self, name: str, events: Sequence[Any], exc: Exception,
                      retry: Handler) -> None:
        """Agent ``name`` failed on ``events`` with ``exc``: down for the backoff, then
        restarted; each event is retried alone, and one that fails again is
        dead-lettered with its own error."""
        await self._down(name, exc)
        for event in events:
            try:
                await retry([event])
            except asyncio.CancelledError:
                raise
            except Exception as again:  # noqa: BLE001
                log.warning("agent %s: a message failed again alone: %s: %s", name,
                            type(again).__name__, again)
                await self._dead_letter([event], again, f"agent {name} failed on this "
                                        f"message (also when retried alone)")

    async def _down(self, name: str, exc: BaseException) -> None:
        self.health.crashed(name, exc)
        delay = self._delays.get(name, self.backoff_s)
        self._delays[name] = min(MAX_BACKOFF_S, delay * 2)
        log.error("agent %s crashed (%s: %s); restarting in %.1fs", name,
                  type(exc).__name__, exc, delay, exc_info=exc)
        await asyncio.sleep(delay)
        self.health.restarted(name)
        log.warning("agent %s restarted", name)


class SupervisedThread(threading.Thread):
    """A daemon thread that runs :meth:`work` until :attr:`halt` is set; when ``work``
    raises, the thread counts a crash, waits (backoff) and runs it again. ``work`` must
    commit only what it finished, so what it held is redelivered after a restart."""

    def __init__(self, name: str, health: Health | None, backoff_s: float = 0.5) -> None:
        super().__init__(name=name, daemon=True)
        self.health = health
        self.backoff_s = backoff_s
        self.halt = threading.Event()
        self.error: BaseException | None = None
        if health is not None:
            health.register(name, "thread")

    def stop(self) -> None:
        self.halt.set()

    def work(self) -> None:
        raise NotImplementedError

    def progress(self) -> None:
        """Call from ``work`` after each finished step (keeps the thread's health fresh)."""
        if self.health is not None:
            self.health.progress(self.name)

    def consume(self, consumer: Any, handle: Callable[[Any], None]) -> None:
        """Poll a confluent-kafka ``consumer`` until halted, handing each message to
        ``handle`` (a poll is progress); the consumer is closed at the end."""
        try:
            poll_until(consumer, handle, self.halt.is_set, each=self.progress)
        finally:
            consumer.close()

    def run(self) -> None:
        delay = self.backoff_s
        while not self.halt.is_set():
            try:
                self.work()
                return
            except Exception as exc:  # noqa: BLE001 - restarted below
                self.error = exc
                log.error("thread %s crashed (%s: %s); restarting in %.1fs", self.name,
                          type(exc).__name__, exc, delay, exc_info=exc)
                if self.health is not None:
                    self.health.crashed(self.name, exc)
                if self.halt.wait(delay):
                    return
                delay = min(MAX_BACKOFF_S, delay * 2)
                if self.health is not None:
                    self.health.restarted(self.name)


def poll_until(consumer: Any, handle: Callable[[Any], None], stop: Callable[[], bool], *,
               timeout_s: float = 0.5, each: Callable[[], None] | None = None) -> None:
    """The one confluent-kafka poll loop: until ``stop()``, poll ``consumer`` (waiting at
    most ``timeout_s``), call ``each()`` after every poll (progress, a clock, a check
    that may raise), and hand each message that is not an error to ``handle``. Closing
    the consumer is the caller's (:meth:`SupervisedThread.consume` closes it).
    """
    while not stop():
        m = consumer.poll(timeout_s)
        if each is not None:
            each()
        if m is None or m.error():
            continue
        handle(m)


def _buffered(stream: Any) -> int:
    try:
        return int(stream.channel.queue.qsize())
    except Exception:  # noqa: BLE001 - not a Faust stream (tests) or no queue yet
        return 0


def _safe_count(fn: Callable[[], int]) -> int:
    try:
        return int(fn())
    except Exception:  # noqa: BLE001 - a health probe never raises
        return 0
