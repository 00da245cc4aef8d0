"""The router seam: an offload policy decides, frame by frame, edge or cloud.

Every policy (the fixed split here, the queueing-model controller in ``controller.py``
and the baselines in ``baselines.py``) implements :class:`OffloadPolicy`:
``decide(frame)`` returns a :class:`Route` (the tier, the quality a cloud frame is sent
at, whether an edge frame is also copied to the cloud, and why the frame is shed, if it
is) and ``learn(observation)`` feeds back what happened. The router calls ``decide``
once per frame and reads nothing else off the policy. A policy that counts the router's
own copies of edge frames (agreement shadows) is :class:`CountsCopies`:
:func:`count_copy` tells it.

:class:`FixedRatio` realises a target edge share with a deficit counter, so the split is
smooth and exact over any window rather than a coin flip:

>>> p = FixedRatio(0.25)
>>> "".join(p.decide(FrameMeta("cam1", i, 0)).tier[0] for i in range(8))
'ccceccce'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

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
    until the detector takes the frame. ``back_ms``: the result's way back from the
    detector to the router (an emulated link's return leg plus the hop on which the
    router reads it), measured by the router and included in ``total_ms``; None where it
    is not measured apart (the simulator: its ``total_ms`` already runs to the result
    back)."""

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
    copy: bool = False  # the cloud's answer on a copy of an edge frame (Route.copy)
    back_ms: float | None = None  # the result's way back to the router, in total_ms; None:
    #                               not measured apart (total_ms is then taken as back)


@dataclass(frozen=True)
class Route:
    """What the router does with one frame: what :meth:`OffloadPolicy.decide` returns.

    ``tier``: where it goes (for a shed frame, where it would have gone). ``level``: the
    quality a cloud frame is re-encoded at (``FULL`` on the edge). ``copy``: an edge frame
    the policy also wants on the cloud, as captured: the edge's result is the answer; the
    copy (over the same link) only measures the link and the cloud, and its result comes
    back to ``learn`` as an ``Observation`` with ``copy=True``. ``shed_reason``: not None
    when the policy answers the frame ``status: "shed"`` instead of sending it anywhere
    (nothing is sent, not even a copy): no tier could meet its SLO; the reason says why,
    for the record, and the frame counts as an SLO miss.

    >>> Route("cloud").level.name, Route("edge", copy=True).copy
    ('full', True)
    >>> Route("cloud", copy=True)
    Traceback (most recent call last):
    ...
    ValueError: Route: only an edge frame is copied to the cloud; got a cloud frame with copy=True
    """

    tier: Tier
    level: QualityLevel = FULL
    copy: bool = False
    shed_reason: str | None = None

    def __post_init__(self) -> None:
        if self.copy and self.tier != "edge":
            raise ValueError("Route: only an edge frame is copied to the cloud; got a cloud "
                             "frame with copy=True")
        if self.copy and self.shed_reason is not None:
            raise ValueError("Route: a shed frame is sent nowhere, not even as a copy; got "
                             "copy=True")
        if self.tier == "edge" and not self.level.is_full:
            raise ValueError(f"Route: an edge frame is detected as captured; got level "
                             f"{self.level.name!r} on the edge")

    @property
    def shed(self) -> bool:
        return self.shed_reason is not None


EDGE = Route("edge")
CLOUD = Route("cloud")


class OffloadPolicy(Protocol):
    def decide(self, frame: FrameMeta) -> Route: ...

    def learn(self, obs: Observation) -> None: ...


@runtime_checkable
class CountsCopies(Protocol):
    """A policy that plans for the router's own copies of edge frames (agreement shadows)
    too: ``copied(frame)`` is called right after ``decide`` sent ``frame`` to the edge."""

    def copied(self, frame: FrameMeta) -> None: ...


def count_copy(policy: OffloadPolicy, frame: FrameMeta) -> bool:
    """The router copies ``frame``, which ``policy`` just sent to the edge, to the cloud
    for its own reasons (an agreement shadow): tell a policy that keeps count
    (:class:`CountsCopies`), so it plans for the copy's load on the link and the cloud
    and learns from its answer (an ``Observation`` with ``copy=True``). True if it does.

    >>> count_copy(FixedRatio(0.5), FrameMeta("cam1", 0, 0, 80_000))
    False
    """
    if not isinstance(policy, CountsCopies):
        return False
    policy.copied(frame)
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

    def decide(self, frame: FrameMeta) -> Route:
        self._credit += self.edge_ratio
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            return EDGE
        return CLOUD

    def learn(self, obs: Observation) -> None:
        """A fixed split learns nothing."""
