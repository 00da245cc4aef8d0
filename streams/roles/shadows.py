"""Shadow sampling and agreement pairing (with the router).

A share of edge frames is also sent to the cloud, as captured (:class:`ShadowSampler`
decides which). The cloud's answer (``<prefix>.shadow``) and the edge's detection
(``<prefix>.detections``) of the same frame make a pair; :class:`ShadowPairing` turns
each pair into a :class:`~autosteer.topics.records.QualityRecord` (their agreement) on
``<prefix>.quality`` and hands it to its listeners (drift watch, canary judge). The
cloud's answer on a *copy* the offload policy asked for also goes to the policy.

The motion gate's checks (:mod:`.gate`) come back the same way: a reused frame that was
also detected fresh is compared with the answer it was given (:meth:`expect_check`); that
agreement is the gate's accuracy cost (``gate_agreement``), kept apart from edge/cloud
agreement (no quality record, no listener).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from autosteer.offload.policy import Observation
from autosteer.retrain.agreement import agreement
from autosteer.streams.pipeline import copy_observation, parse_valid
from autosteer.streams.runtime import Runtime
from autosteer.topics.records import Box, Detection, QualityRecord, ShadowResult, now_ms

PAIR_TIMEOUT_S = 120.0  # a pair that never completed (lost, shed) is dropped


class ShadowSampler:
    """Every 1/``rate``-th edge frame is due (a deficit counter, not a coin flip); every
    1/``boost_rate``-th of a camera while it is boosted (a retrain request collecting
    teacher frames, or a canary under trial).

    >>> s = ShadowSampler(0.25, 1.0)
    >>> [s.due("cam1") for _ in range(4)]
    [False, False, False, True]
    >>> s.boost("cam1", time.time() + 60)
    >>> [s.due("cam1") for _ in range(2)]
    [True, True]
    """

    def __init__(self, rate: float, boost_rate: float) -> None:
        self.rate = rate
        self.boost_rate = boost_rate
        self._credit = 0.0
        self._boost: dict[str, float] = {}  # camera -> until (epoch s)

    def boost(self, camera: str, until_s: float) -> None:
        self._boost[camera] = max(self._boost.get(camera, 0.0), until_s)

    def unboost(self, camera: str) -> None:
        self._boost.pop(camera, None)

    def boosted(self, camera: str) -> bool:
        until = self._boost.get(camera)
        if until is not None and time.time() >= until:
            self._boost.pop(camera, None)
            return False
        return until is not None

    def due(self, camera: str) -> bool:
        self._credit += self.boost_rate if self.boosted(camera) else self.rate
        if self._credit >= 1.0:
            self._credit -= 1.0
            return True
        return False


class PairListener(Protocol):
    async def on_pair(self, edge: Detection, cloud: ShadowResult, q: QualityRecord) -> None:
        """One completed shadow pair and its agreement."""


class ShadowPairing:
    """Pairs the edge's and the cloud's answers on shadowed frames (see the module)."""

    def __init__(self, rt: Runtime, learn: Callable[[Observation], None]) -> None:
        self.rt = rt
        self.learn = learn
        self.listeners: list[PairListener] = []
        self.quality: deque[QualityRecord] = deque(maxlen=1000)
        self._shadowed: dict[tuple[str, int], float] = {}  # frames awaiting a pair
        self._copies: dict[tuple[str, int], float] = {}  # shadows the policy asked for
        self._pairs: dict[tuple[str, int], dict[str, Any]] = {}
        self._checks: dict[tuple[str, int], tuple[float, list[Box]]] = {}  # gate checks
        self.gate_agreements: deque[float] = deque(maxlen=1000)  # reused vs fresh, latest
        self.gate_checks = 0  # gate checks answered
        rt.agent(rt.names.shadow, "shadows", self.on_shadows, size=64, within=0.1)

    def expect(self, camera: str, seq: int, copy: bool) -> None:
        """The router shadowed this frame (``copy``: the policy counts it)."""
        now = time.time()
        self._shadowed[(camera, seq)] = now
        if copy:
            self._copies[(camera, seq)] = now

    def expect_check(self, camera: str, seq: int, reused: Sequence[Box]) -> None:
        """The motion gate answered this frame with ``reused`` boxes and also sent it to
        be detected fresh: compare the two when the fresh answer comes."""
        self._checks[(camera, seq)] = (time.time(), list(reused))

    @property
    def gate_agreement(self) -> float:
        """Mean F1 of reused answers against fresh ones over the latest checks (NaN
        before the first): the motion gate's accuracy."""
        xs = self.gate_agreements
        return sum(xs) / len(xs) if xs else math.nan

    @property
    def waiting(self) -> int:
        """Shadowed frames without both answers yet."""
        return len(self._shadowed)

    async def on_edge(self, detections: Sequence[Detection]) -> None:
        """Edge detections (from the router's feedback agent)."""
        if not self._shadowed:
            return
        for d in detections:
            if d.status == "ok" and d.tier == "edge" and (d.camera, d.seq) in self._shadowed:
                self._pairs.setdefault((d.camera, d.seq), {})["edge"] = d
        await self._publish()

    async def on_shadows(self, events: Sequence[Any]) -> None:
        """Cloud answers on shadow frames."""
        for sr in parse_valid((e.message.value for e in events), ShadowResult):
            key = (sr.camera, sr.seq)
            check = self._checks.pop(key, None)
            if check is not None:  # a motion gate check, not an edge/cloud pair
                self.gate_agreements.append(agreement(check[1], sr.boxes))
                self.gate_checks += 1
                continue
            self._pairs.setdefault(key, {})["cloud"] = sr
            self._shadowed.setdefault(key, time.time())
            if self._copies.pop(key, None) is not None:
                obs = copy_observation(sr)
                if obs is not None:
                    self.learn(obs)
        await self._publish()

    async def _publish(self) -> None:
        names, node = self.rt.names, self.rt.settings.node
        for key in [k for k, v in self._pairs.items() if len(v) == 2]:
            pair = self._pairs.pop(key)
            self._shadowed.pop(key, None)
            edge, cloud = pair["edge"], pair["cloud"]
            q = QualityRecord(
                ts_ms=now_ms(), node=node, camera=edge.camera, seq=edge.seq,
                edge_model_id=edge.model_id, edge_model_version=edge.model_version,
                cloud_model_id=cloud.model_id, cloud_model_version=cloud.model_version,
                agreement=agreement(edge.boxes, cloud.boxes), edge_boxes=len(edge.boxes),
                cloud_boxes=len(cloud.boxes), edge_mean_score=_mean([b.score for b in edge.boxes]),
                cloud_mean_score=_mean([b.score for b in cloud.boxes]))
            self.quality.append(q)
            await self.rt.bus.publish(names.quality, q.camera.encode(), q.dumps())
            for listener in self.listeners:
                await listener.on_pair(edge, cloud, q)
        cutoff = time.time() - PAIR_TIMEOUT_S
        for key in [k for k, ts in self._shadowed.items() if ts < cutoff]:
            self._shadowed.pop(key, None)
            self._pairs.pop(key, None)
            self._copies.pop(key, None)
        for key in [k for k, (ts, _) in self._checks.items() if ts < cutoff]:
            self._checks.pop(key, None)


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0
