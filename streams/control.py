"""The control plane's agents: anomalies on telemetry, their root causes, and the actions
they call for. Registered on a :class:`~autosteer.streams.app.Pipeline` whose roles
include ``anomaly``.

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
from typing import TYPE_CHECKING, Any

from autosteer.anomaly.monitor import AnomalyMonitor
from autosteer.anomaly.records import Anomaly
from autosteer.errors import StoreError
from autosteer.rootcause.actions import ControlAction, decide
from autosteer.rootcause.analyzer import RootCauseAnalyzer
from autosteer.streams.pipeline import parse_valid
from autosteer.topics.records import WindowRecord, now_ms

if TYPE_CHECKING:
    from autosteer.streams.app import Pipeline

log = logging.getLogger(__name__)

ANALYSES = 4  # root-cause analyses running at once (each a few read-only queries)


class ControlPlane:
    """Anomaly detection and root-cause analysis inside one worker."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.monitor = AnomalyMonitor()
        self._analyses = asyncio.Semaphore(ANALYSES)
        self._tasks: set[asyncio.Future] = set()
        self.anomalies = 0
        self.rootcauses = 0
        self.actions = 0
        names = pipeline.names
        app = pipeline.app
        app.agent(pipeline.topics[names.telemetry_windows], name="anomaly-windows")(
            self._windows)

    async def _windows(self, stream: Any) -> None:
        async for events in stream.take_events(256, within=0.2):
            found: list[Anomaly] = []
            for w in parse_valid((e.message.value for e in events), WindowRecord):
                found += self.monitor.update(w)
            # heartbeats this worker's nodes agent has seen since the last batch
            for seen_at, rec in list(self.p.nodes.values()):
                if seen_at > self._last_nodes:
                    found += self.monitor.update_node(rec)
            self._last_nodes = max([t for t, _ in self.p.nodes.values()], default=0.0)
            for a in found:
                await self._publish(a)

    _last_nodes = 0.0

    async def _publish(self, a: Anomaly) -> None:
        p = self.p
        self.anomalies += 1
        log.warning("anomaly %s: score %.1f on %s", a.id, a.score, ", ".join(a.metrics))
        p.events.append({"kind": "anomaly", "ts_ms": now_ms(), "title": f"{a.metric} on "
                         f"{a.node}/{a.camera or '-'}/{a.tier or '-'}", "camera": a.camera,
                         "tier": a.tier, "id": a.id})
        p._watch(await p.topics[p.names.anomalies].send(key=a.node.encode(), value=a.dumps()))
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
        p = self.p
        loop = asyncio.get_running_loop()
        # the anomalous windows reach the store through the sink: give it a flush or two
        await asyncio.sleep(2 * p.settings.sink_flush_s + 1.0)
        try:
            rc = await loop.run_in_executor(None, self._analyze, a)
        except StoreError as exc:
            log.warning("root-cause analysis of %s failed: %s", a.id, exc)
            return
        self.rootcauses += 1
        top = rc.causes[0] if rc.causes else None
        p.events.append({
            "kind": "root_cause", "ts_ms": now_ms(), "id": a.id,
            "title": (f"{top.dimension}={top.value} {top.metric} ({top.cause_type})"
                      if top else "no cause found"),
            "sql": top.sql if top else ""})
        p._watch(await p.topics[p.names.rootcauses].send(key=a.node.encode(), value=rc.dumps()))
        await self._act(a, rc)

    async def _act(self, a: Anomaly, rc: Any) -> None:
        p, s = self.p, self.p.settings
        action, request = decide(a, rc, edge_model=s.edge_model, teacher=s.cloud_model,
                                 collect_ms=int(s.retrain_collect_s * 1000))
        self.actions += 1
        if request is not None:
            log.warning("root cause %s: %s", a.id, request.reason)
            p._watch(await p.topics[p.names.retrain_requests].send(
                key=request.camera.encode(), value=request.dumps()))
        p.events.append({"kind": "action", "ts_ms": now_ms(), "id": a.id,
                         "title": f"{action.kind}: {action.reason}"[:200]})
        p._watch(await p.topics[p.names.control_actions].send(
            key=a.node.encode(), value=action.dumps()))

    def _analyze(self, a: Anomaly) -> Any:
        """Periods in windows: a baseline of 60 windows (10 min at 10 s windows) ending 2
        windows before the anomaly, which spans at least 3 windows, and takes in the later
        windows that have landed in the store (:meth:`landed_ms`)."""
        w = max(1, a.window_s)
        analyzer = RootCauseAnalyzer(self.p.store, baseline_s=60 * w, gap_s=2 * w,
                                     min_anomaly_s=3 * w)
        return analyzer.analyze(a, until_ms=self.landed_ms())

    def landed_ms(self) -> int:
        """By when windows have reached the store: a window closes the aggregator's grace
        after it ends, is sent on the next 1 s timer tick, and the sink writes it within a
        flush interval; one more second of margin. Windows ending later may be missing
        rows, which would read as a drop in frames per second."""
        p = self.p
        return now_ms() - int((p.windows.grace_s + 2.0 + p.settings.sink_flush_s) * 1000)


class ActionFollower:
    """With the router: a ``replan`` action re-plans the offload policy at once
    (``policy.replan(action)`` where the policy has it, else its next control step now)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.replans = 0
        pipeline.app.agent(pipeline.topics[pipeline.names.control_actions],
                           name="control-actions")(self._actions)

    async def _actions(self, stream: Any) -> None:
        async for events in stream.take_events(16, within=0.5):
            for action in parse_valid((e.message.value for e in events), ControlAction):
                if action.kind != "replan":
                    continue
                policy = self.p.policy
                replan, tick = getattr(policy, "replan", None), getattr(policy, "tick", None)
                if replan is not None:
                    replan(action)
                elif tick is not None:
                    tick()
                else:
                    continue  # a policy without a control step (fixed, edge-only, ...)
                self.replans += 1
                log.warning("offload re-planned after %s: %s", action.anomaly_id, action.reason)
                self.p.events.append({"kind": "action", "ts_ms": now_ms(),
                                      "title": f"offload re-planned: {action.reason}"[:200]})
