"""The router seam: an offload policy decides, frame by frame, edge or cloud.

Every policy (the fixed split here, the queueing-model controller in ``controller.py``
and the baselines in ``baselines.py``) implements :class:`OffloadPolicy`:
``decide(frame)`` returns a tier and ``learn(observation)`` feeds back what happened. The
router agent only calls these two, and reads three optional attributes right after
``decide``: :func:`cloud_level` (the quality a cloud frame is sent at), :func:`cloud_copy`
(an edge frame the policy also wants on the cloud, to measure it) and
:func:`shed_reason` (the policy answers the frame ``status: "shed"`` instead: no tier could
meet its SLO). :func:`route_of` calls ``decide`` and reads all three into one
:class:`Route`.

:class:`FixedRatio` realises a target edge share with a deficit counter, so the split is
smooth and exact over any window rather than a coin flip:

>>> p = FixedRatio(0.25)
>>> "".join(p.decide(FrameMeta("cam1", i, 0))[0] for i in range(8))
'ccceccce'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from autosteer.offload.profiles import FULL, QualityLevel

Tier = Literal["edge", "cloud"]


@dataclass(frozen=True)
class FrameMeta:
    """What a policy may look at when routing one frame."""

    camera: str
    seq: int
    ts_ms: int
    size_bytes: int = 0


@dataclass(frozen=True)
class Observation:
    """What happened to one routed frame, read back from the detections topic.

    All times in ms, as on the wire (:class:`~autosteer.topics.records.Latency`).
    ``ts_ms`` is the frame's capture time; the stages add up to about ``total_ms``
    (ingest -> route -> link -> queue -> decode -> infer -> publish). ``link_ms`` runs from
    the router's hand-over to the detector's worker receiving the frame: for a cloud
    frame the edge -> cloud link, for an edge frame the hop to the edge detector (plus any
    backlog held before its worker); 0 when not measured. ``queue_ms`` runs from there
    until the detector takes the frame."""

    camera: str
    tier: Tier
    total_ms: float
    infer_ms: float
    queue_ms: float
    seq: int = 0
    ts_ms: int = 0
    ingest_ms: float = 0.0
    route_ms: float = 0.0
    decode_ms: float = 0.0
    node: str = ""
    model_id: str = ""
    n_boxes: int = 0
    link_ms: float = 0.0
    copy: bool = False  # the cloud's answer on a copy of an edge frame (see cloud_copy)


class OffloadPolicy(Protocol):
    def decide(self, frame: FrameMeta) -> Tier: ...

    def learn(self, obs: Observation) -> None: ...


@dataclass(frozen=True)
class Route:
    """What the router does with one frame, as :func:`route_of` reads it off a policy.

    ``tier``: where it goes (for a shed frame, where it would have gone). ``level``: the
    quality a cloud frame is re-encoded at (``FULL`` on the edge). ``copy``: an edge frame
    the policy also wants on the cloud, as captured. ``shed_reason``: not None when the
    policy answers the frame ``status: "shed"`` instead of sending it anywhere (nothing is
    sent, not even a copy); the reason says why, for the record."""

    tier: Tier
    level: QualityLevel = FULL
    copy: bool = False
    shed_reason: str | None = None

    @property
    def shed(self) -> bool:
        return self.shed_reason is not None


def route_of(policy: OffloadPolicy, frame: FrameMeta) -> Route:
    """``policy.decide(frame)`` and the optional attributes read right after it, as one
    :class:`Route` (the router's one call per frame).

    >>> r = route_of(FixedRatio(0.0), FrameMeta("cam1", 0, 0))
    >>> r.tier, r.level.name, r.copy, r.shed
    ('cloud', 'full', False, False)
    """
    tier = policy.decide(frame)
    reason = shed_reason(policy)
    if reason is not None:
        return Route(tier, FULL, False, reason)
    if tier == "cloud":
        return Route(tier, cloud_level(policy))
    return Route(tier, FULL, cloud_copy(policy))


def shed_reason(policy: object) -> str | None:
    """Why ``policy`` sheds the frame it just decided (its ``shed`` attribute: a non-empty
    string), or None: it is sent to its tier. A shed frame is answered at once with
    ``status: "shed"`` and no boxes, and it counts as an SLO miss. None for policies
    without the attribute.

    >>> shed_reason(FixedRatio(0.5)) is None
    True
    """
    reason = getattr(policy, "shed", None)
    return reason if isinstance(reason, str) and reason else None


def cloud_level(policy: object) -> QualityLevel:
    """The quality level ``policy`` chose for the frame it just sent to the cloud
    (:data:`~autosteer.offload.profiles.FULL` for policies without the knob).

    >>> cloud_level(FixedRatio(0.5)).name
    'full'
    """
    level = getattr(policy, "level", None)
    return level if isinstance(level, QualityLevel) else FULL


def cloud_copy(policy: object) -> bool:
    """Whether ``policy`` wants a copy of the frame it just sent to the edge on the cloud
    too: the edge's result is the answer; the copy (sent as captured, over the same link)
    only measures the link and the cloud. Its result comes back to ``learn`` as an
    ``Observation`` with ``copy=True``. False for policies without the attribute.

    >>> cloud_copy(FixedRatio(0.5))
    False
    """
    return getattr(policy, "copy", False) is True


def count_copy(policy: object, frame: FrameMeta) -> bool:
    """The router copies ``frame``, which ``policy`` just sent to the edge, to the cloud
    for its own reasons (an agreement shadow): tell a policy that keeps count (a
    ``copied(frame)`` method), so it plans for the copy's load on the link and the cloud
    and learns from its answer (an ``Observation`` with ``copy=True``). True if it does.

    >>> count_copy(FixedRatio(0.5), FrameMeta("cam1", 0, 0, 80_000))
    False
    """
    copied = getattr(policy, "copied", None)
    if not callable(copied):
        return False
    copied(frame)
    return True


class FixedRatio:
    """Send ``edge_ratio`` of frames to the edge, spread evenly (deficit round robin)."""

    def __init__(self, edge_ratio: float) -> None:
        if not 0.0 <= edge_ratio <= 1.0:
            raise ValueError(f"edge_ratio must be within [0, 1]; got {edge_ratio}")
        self.edge_ratio = edge_ratio
        self._credit = 0.0

    def __repr__(self) -> str:
        return f"FixedRatio(edge_ratio={self.edge_ratio})"

    def decide(self, frame: FrameMeta) -> Tier:
        self._credit += self.edge_ratio
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            return "edge"
        return "cloud"

    def learn(self, obs: Observation) -> None:
        """A fixed split learns nothing."""
