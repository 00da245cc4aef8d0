"""The control plane's agents: anomalies on telemetry, their root causes, and the actions
they call for (role ``anomaly``; the action follower runs with the router).

- ``<prefix>.telemetry.windows`` (and heartbeats) -> :class:`AnomalyMonitor` ->
  ``<prefix>.anomalies``;
- each anomaly -> :class:`RootCauseAnalyzer` over the telemetry store ->
  ``<prefix>.rootcauses`` (ranked causes, evidence, the SQL that reproduces it);
- each root cause -> an action (:func:`autosteer.rootcause.actions.decide`) ->
  ``<prefix>.control.actions``; a model cause also asks for retraining on
  ``<prefix>.retrain.requests``. The router's :class:`ActionFollower` re-plans the
  offload policy on a ``replan``; ``autosteer deploy`` re-places operators.

All go to the worker's ``events`` feed (the UI) too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from autosteer.anomaly.monitor import AnomalyMonitor
from autosteer.anomaly.records import Anomaly
from autosteer.errors import StoreError
from autosteer.offload.policy import OffloadPolicy
from autosteer.rootcause.actions import ControlAction, decide
from autosteer.rootcause.analyzer import RootCauseAnalyzer
from autosteer.streams.pipeline import parse_valid
from autosteer.streams.roles.router import Controlled
from autosteer.streams.roles.telemetry import StoreHandle
from autosteer.streams.runtime import Runtime
from autosteer.telemetry.window import WindowAggregator
from autosteer.topics.records import NodeRecord, WindowRecord, now_ms

log = logging.getLogger(__name__)

ANALYSES = 4  # root-cause analyses running at once (each a few read-only queries)


class ControlPlane:
    """Anomaly detection and root-cause analysis inside one worker."""

    def __init__(self, rt: Runtime, store: StoreHandle, windows: WindowAggregator,
                 nodes: Callable[[], Mapping[str, tuple[float, NodeRecord]]]) -> None:
        self.rt = rt
        self.store = store
        self.windows = windows
        self.nodes = nodes
        self.monitor = AnomalyMonitor()
        self._analyses = asyncio.Semaphore(ANALYSES)
        self._tasks: set[asyncio.Future] = set()
        self.anomalies = 0
        self.rootcauses = 0
        self.actions = 0
        rt.agent(rt.names.telemetry_windows, "anomaly-windows", self.on_windows, size=256,
                 within=0.2)

    async def on_windows(self, events: Sequence[Any]) -> None:
        found: list[Anomaly] = []
        for w in parse_valid((e.message.value for e in events), WindowRecord):
            found += self.monitor.update(w)
        # heartbeats this worker's nodes agent has seen since the last batch
        nodes = list(self.nodes().values())
        for seen_at, rec in nodes:
            if seen_at > self._last_nodes:
                found += self.monitor.update_node(rec)
        self._last_nodes = max([t for t, _ in nodes], default=0.0)
        for a in found:
            await self._publish(a)

    _last_nodes = 0.0

    async def _publish(self, a: Anomaly) -> None:
        self.anomalies += 1
        log.warning("anomaly %s: score %.1f on %s", a.id, a.score, ", ".join(a.metrics))
        self.rt.events.append({"kind": "anomaly", "ts_ms": now_ms(), "title": f"{a.metric} on "
                         f"{a.node}/{a.camera or '-'}/{a.tier or '-'}", "camera": a.camera,
                         "tier": a.tier, "id": a.id})
        await self.rt.bus.publish(self.rt.names.anomalies, a.node.encode(), a.dumps())
        # explained in the background: the windows agent goes on reading, and anomalies
        # that open together are analyzed together (at most ANALYSES at once)
        task = asyncio.ensure_future(self._explain(a))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _explain(self, a: Anomaly) -> None:
        try:
            async with self._analyses:
                await self._root_cause(a)
        except Exception:  # one failed analysis never stops the others
            log.exception("root-cause analysis of %s failed", a.id)

    async def _root_cause(self, a: Anomaly) -> None:
        loop = asyncio.get_running_loop()
        # the anomalous windows reach the store through the sink: give it a flush or two
        await asyncio.sleep(2 * self.rt.settings.sink_flush_s + 1.0)
        try:
            rc = await loop.run_in_executor(None, self._analyze, a)
        except StoreError as exc:
            log.warning("root-cause analysis of %s failed: %s", a.id, exc)
            return
        self.rootcauses += 1
        top = rc.causes[0] if rc.causes else None
        self.rt.events.append({
            "kind": "root_cause", "ts_ms": now_ms(), "id": a.id,
            "title": (f"{top.dimension}={top.value} {top.metric} ({top.cause_type})"
                      if top else "no cause found"),
            "sql": top.sql if top else ""})
        await self.rt.bus.publish(self.rt.names.rootcauses, a.node.encode(), rc.dumps())
        await self.act(a, rc)

    async def act(self, a: Anomaly, rc: Any) -> None:
        """The action a root cause calls for (and a retrain request for a model cause)."""
        s, names = self.rt.settings, self.rt.names
        action, request = decide(a, rc, edge_model=s.edge_model, teacher=s.cloud_model,
                                 collect_ms=int(s.retrain_collect_s * 1000))
        self.actions += 1
        if request is not None:
            log.warning("root cause %s: %s", a.id, request.reason)
            await self.rt.bus.publish(names.retrain_requests, request.camera.encode(),
                                      request.dumps())
        self.rt.events.append({"kind": "action", "ts_ms": now_ms(), "id": a.id,
                         "title": f"{action.kind}: {action.reason}"[:200]})
        await self.rt.bus.publish(names.control_actions, a.node.encode(), action.dumps())

    def _analyze(self, a: Anomaly) -> Any:
        """Periods in windows: a baseline of 60 windows (10 min at 10 s windows) ending 2
        windows before the anomaly, which spans at least 3 windows, and takes in the later
        windows that have landed in the store (:meth:`landed_ms`)."""
        w = max(1, a.window_s)
        analyzer = RootCauseAnalyzer(self.store.get(), baseline_s=60 * w, gap_s=2 * w,
                                     min_anomaly_s=3 * w)
        return analyzer.analyze(a, until_ms=self.landed_ms())

    def landed_ms(self) -> int:
        """By when windows have reached the store: a window closes the aggregator's grace
        after it ends, is sent on the next 1 s timer tick, and the sink writes it within a
        flush interval; one more second of margin. Windows ending later may be missing
        rows, which would read as a drop in frames per second."""
        return now_ms() - int((self.windows.grace_s + 2.0 + self.rt.settings.sink_flush_s)
                              * 1000)


class ActionFollower:
    """With the router: a ``replan`` action re-plans the offload policy at once
    (``policy.replan(action)``, for a policy with a control step)."""

    def __init__(self, rt: Runtime, policy: OffloadPolicy) -> None:
        self.rt = rt
        self.policy = policy
        self.replans = 0
        rt.agent(rt.names.control_actions, "control-actions", self.on_actions, size=16,
                 within=0.5)

    async def on_actions(self, events: Sequence[Any]) -> None:
        for action in parse_valid((e.message.value for e in events), ControlAction):
            if action.kind != "replan":
                continue
            if not isinstance(self.policy, Controlled):
                continue  # a policy without a control step (fixed, edge-only, ...)
            self.policy.replan(action)
            self.replans += 1
            log.warning("offload re-planned after %s: %s", action.anomaly_id, action.reason)
            self.rt.events.append({"kind": "action", "ts_ms": now_ms(),
                                  "title": f"offload re-planned: {action.reason}"[:200]})
