"""What every role is given: the settings, topic names, the bus, the UI's event feed,
and the places to register its agents, timers and start/stop hooks.

:class:`FaustRuntime` registers them on the worker's Faust app, each agent supervised
(:mod:`.supervise`) and each timer guarded. :class:`MemoryRuntime` only keeps them, so
a unit test can build a role and call its handlers with no broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from autosteer.settings import Settings
from autosteer.streams.bus import Bus, MemoryBus
from autosteer.streams.supervise import Health, Supervisor
from autosteer.topics.names import TopicNames

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[Any]], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]
EVENTS_KEPT = 1000


def event_feed() -> deque[dict[str, Any]]:
    """The UI's feed: dicts with kind (anomaly, root_cause, drift, model_swap,
    retrain_request, action), ts_ms, title and optional sql, camera, tier."""
    return deque(maxlen=EVENTS_KEPT)


class Runtime(Protocol):
    settings: Settings
    bus: Bus
    health: Health
    supervisor: Supervisor
    events: deque[dict[str, Any]]

    @property
    def names(self) -> TopicNames: ...

    def agent(self, topic: str, name: str, handle: Handler, *, size: int, within: float,
              **kw: Any) -> None: ...

    def timer(self, interval_s: float, name: str, fn: Hook) -> None: ...

    def on_start(self, fn: Hook) -> None: ...

    def on_stop(self, fn: Hook) -> None: ...


class FaustRuntime:
    """Registers roles' agents, timers and hooks on a Faust app."""

    def __init__(self, settings: Settings, app: Any, bus: Any, health: Health) -> None:
        self.settings = settings
        self.app = app
        self.bus: Bus = bus
        self.health = health
        self.supervisor = Supervisor(health, self._dead_letter_events, settings.agent_backoff_s)
        self.events = event_feed()

    @property
    def names(self) -> TopicNames:
        return TopicNames(self.settings.topic_prefix)

    async def _dead_letter_events(self, events: Sequence[Any], error: Exception,
                                  where: str) -> None:
        from autosteer.streams.events import incoming
        from autosteer.streams.pipeline import Rejected

        await self.bus.dead_letter([Rejected(incoming(e), error, where) for e in events])

    def agent(self, topic: str, name: str, handle: Handler, *, size: int, within: float,
              **kw: Any) -> None:
        """``handle`` gets batches of ``topic``'s events, supervised."""
        self.app.agent(self.bus.topic(topic), name=name)(  # type: ignore[attr-defined]
            self.supervisor.agent(name, handle, size=size, within=within, **kw))

    def timer(self, interval_s: float, name: str, fn: Hook) -> None:
        """Run ``fn`` every ``interval_s``; what it raises is logged, never escapes."""

        async def tick() -> None:
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a timer that raises would stop the worker
                log.exception("timer %s failed; it runs again in %.0fs", name, interval_s)

        tick.__name__ = name.replace("-", "_")
        self.app.timer(interval_s, name=name)(tick)

    def on_start(self, fn: Hook) -> None:
        self.app.task(fn)

    def on_stop(self, fn: Hook) -> None:
        async def stop(app: Any, **kw: Any) -> None:
            await fn()

        self.app.on_before_shutdown.connect(stop, weak=False)


@dataclass
class MemoryRuntime:
    """A runtime that keeps what roles register (unit tests call the handlers)."""

    settings: Settings = field(default_factory=Settings)
    bus: MemoryBus = field(default_factory=MemoryBus)
    health: Health = field(default_factory=lambda: Health(30.0))
    events: deque[dict[str, Any]] = field(default_factory=event_feed)
    handlers: dict[str, Handler] = field(default_factory=dict)
    timers: dict[str, Hook] = field(default_factory=dict)
    started: list[Hook] = field(default_factory=list)
    stopped: list[Hook] = field(default_factory=list)

    def __post_init__(self) -> None:
        async def dead_letter(events: Sequence[Any], error: Exception, where: str) -> None:
            from autosteer.streams.pipeline import Incoming, Rejected

            await self.bus.dead_letter([Rejected(Incoming(getattr(e, "value", e)), error,
                                                 where) for e in events])

        self.supervisor = Supervisor(self.health, dead_letter, 0.001)

    @property
    def names(self) -> TopicNames:
        return TopicNames(self.settings.topic_prefix)

    def agent(self, topic: str, name: str, handle: Handler, *, size: int, within: float,
              **kw: Any) -> None:
        self.handlers[name] = handle

    def timer(self, interval_s: float, name: str, fn: Hook) -> None:
        self.timers[name] = fn

    def on_start(self, fn: Hook) -> None:
        self.started.append(fn)

    def on_stop(self, fn: Hook) -> None:
        self.stopped.append(fn)
