"""Role ``router``: frames -> edge or cloud, chosen per frame by the offload policy.

- ``router``   ``<prefix>.frames`` -> ``frames.edge`` | ``frames.cloud`` (and the
  shadows of some edge frames to the cloud, see :mod:`.shadows`); a frame the policy
  sheds (no tier could meet ``AUTOSTEER_SLO_MS``) is answered at once on
  ``<prefix>.detections`` with ``status: "shed"`` and the reason, and counted in
  ``shed``;
- ``feedback`` ``<prefix>.detections`` -> ``policy.learn``: the policy sees what its
  choices did; edge detections also complete shadow pairs;
- with ``AUTOSTEER_MOTION_GATE=on``, frames that changed nothing since their camera's
  last detected frame never reach the policy: :mod:`.gate` answers them ``reused``;
- ``offload-decisions`` (each second): the policy's control step, if it has one
  (:class:`Controlled`), published on ``<prefix>.offload.decisions``.

With an emulated WAN link (``AUTOSTEER_LINK_MBPS``) a cloud-bound frame reaches its topic
after its transit; its message is held (not committed) until then.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from autosteer.offload.link import EmulatedLink
from autosteer.offload.policy import OffloadPolicy
from autosteer.streams.events import incoming
from autosteer.streams.pipeline import Routed, observations, parse_valid, route
from autosteer.streams.roles.gate import Gate
from autosteer.streams.roles.shadows import ShadowPairing, ShadowSampler
from autosteer.streams.runtime import Runtime
from autosteer.telemetry.window import WindowAggregator
from autosteer.topics import headers as H
from autosteer.topics.records import Detection, OffloadDecision, now_ms

log = logging.getLogger(__name__)


@runtime_checkable
class Controlled(Protocol):
    """A policy with a control step: ``tick()`` each second (returns its decision), and
    ``replan(action)`` at once when the control plane asks."""

    def tick(self) -> Any: ...

    def replan(self, action: Any) -> Any: ...


class Router:
    """The router's agents and timer; owns the policy's state and its counts."""

    def __init__(self, rt: Runtime, policy: OffloadPolicy, link: EmulatedLink | None,
                 windows: WindowAggregator | None = None) -> None:
        s = rt.settings
        self.rt = rt
        self.policy = policy
        self.link = link
        self.routed = {"edge": 0, "cloud": 0}
        self.shed = 0  # frames answered status "shed" here (no tier could meet the SLO)
        self.decisions: deque[OffloadDecision] = deque(maxlen=600)
        self.sampler = ShadowSampler(s.shadow_rate, s.retrain_shadow_rate)
        self.pairing = ShadowPairing(rt, policy.learn)
        self.gate = Gate(rt, self.pairing, windows) if s.motion_gate == "on" else None
        self._held: set[asyncio.Future] = set()
        rt.agent(rt.names.frames, "router", self.on_frames, size=256, within=0.005)
        rt.agent(rt.names.detections, "feedback", self.on_detections, size=256, within=0.05)
        rt.timer(1.0, "offload-decisions", self.control_step)

    @property
    def offload_ratio(self) -> float:
        """The cloud share of the frames routed so far (NaN before the first)."""
        total = self.routed["edge"] + self.routed["cloud"]
        return self.routed["cloud"] / total if total else math.nan

    async def on_frames(self, events: Sequence[Any]) -> None:
        names = self.rt.names
        items, still = (self.gate.admit(events) if self.gate is not None
                        else ([incoming(e) for e in events], []))
        routed, rejected = route(items, self.policy, self.sampler.due)
        now = now_ms()
        by_pos = {(e.message.partition, e.message.offset): e for e in events}
        for r in routed:
            event = by_pos[(r.item.partition, r.item.offset)]
            if r.shed_reason is not None:  # answered here, sent nowhere: an SLO miss
                self.shed += 1
                key = f"{r.frame.camera}:{r.frame.seq}".encode()  # the result key
                await self.rt.bus.publish(names.detections, key,
                                          r.shed_detection(self.rt.settings.node, now).dumps())
                continue
            self.routed[r.tier] += 1
            headers = self._headers(r, now, r.tier, shadow=False)
            if r.tier == "cloud" and self.link is not None:
                event.message.incref()  # held until its transit ends
                self._later(self.link.transit_s(len(r.value or b""), now / 1000),
                            names.frames_cloud, r, r.value, headers, event)
            else:
                await self.rt.bus.publish(names.tier_topic(r.tier), self._key(r), r.value or b"",
                                          headers)
            if r.shadow:
                # also to the cloud as captured, marked: its answer measures the edge's
                # agreement, and for a copy the policy counts, the link and the cloud
                self.pairing.expect(r.frame.camera, r.frame.seq, r.copy)
                headers = self._headers(r, now, "cloud", shadow=True)
                if self.link is not None:  # over the same link, as a real network would
                    self._later(self.link.transit_s(len(r.item.value or b""), now / 1000),
                                names.frames_cloud, r, r.item.value, headers, None)
                else:
                    await self.rt.bus.publish(names.frames_cloud, self._key(r),
                                              r.item.value or b"", headers)
        await self.rt.bus.dead_letter(rejected)
        if self.gate is not None:  # still frames: answered with their source's boxes
            await self.gate.answer(still)

    @staticmethod
    def _key(r: Routed) -> bytes:
        return r.item.key or r.frame.camera.encode()

    @staticmethod
    def _headers(r: Routed, now: int, tier: str, shadow: bool) -> list[tuple[str, bytes]]:
        out = [(H.ROUTED_MS, str(now).encode()), (H.TIER, tier.encode()),
               (H.PRODUCED_MS, str(r.item.produced_ms).encode())]
        return out + [(H.SHADOW, b"1")] if shadow else out

    def _later(self, delay_s: float, topic: str, r: Routed, value: bytes | None,
               headers: list[tuple[str, bytes]], event: Any) -> None:
        async def send() -> None:
            await asyncio.sleep(delay_s)
            try:
                await self.rt.bus.publish(topic, self._key(r), value or b"", headers)
            finally:
                if event is not None:  # a copy has none: its frame went to the edge
                    event.ack()

        task = asyncio.ensure_future(send())
        self._held.add(task)
        task.add_done_callback(self._held.discard)

    async def on_detections(self, events: Sequence[Any]) -> None:
        detections, received = [], []
        for item in (incoming(e) for e in events):
            for d in parse_valid([item.value], Detection):
                detections.append(d)
                received.append(item.received_ms)  # the result is back here: measured
        for obs in observations(detections, received):
            self.policy.learn(obs)
        await self.pairing.on_edge(detections)
        if self.gate is not None:
            await self.gate.on_detections(detections)

    async def control_step(self) -> None:
        """Run the policy's control step (if it has one) and publish what it decided."""
        if not isinstance(self.policy, Controlled):
            return
        rec = decision_record(self.policy.tick(), self.rt.settings.node,
                              self.rt.settings.offload_policy)
        self.decisions.append(rec)
        await self.rt.bus.publish(self.rt.names.offload_decisions,
                                  self.rt.settings.node.encode(), rec.dumps())


def decision_record(d: Any, node: str, policy: str) -> OffloadDecision:
    """A controller's decision as the record users read."""

    def num(v: float | None) -> float | None:
        return None if v is None or v != v else round(float(v), 3)

    return OffloadDecision(
        ts_ms=now_ms(), node=node, policy=policy, offload_ratio=num(d.offload_ratio) or 0.0,
        offload={k: round(v, 4) for k, v in d.offload.items()},
        predicted_mean_ms=num(d.predicted_mean_ms), predicted_p95_ms=num(d.predicted_p95_ms),
        measured_mean_ms=num(d.measured_mean_ms), measured_p95_ms=num(d.measured_p95_ms),
        edge_util=num(d.edge_util), link_util=num(d.link_util), cloud_util=num(d.cloud_util),
        reason=d.reason, level=getattr(d, "level", "full"),
        predicted_accuracy=num(getattr(d, "predicted_accuracy", None)))
