"""A plan (where each operator runs, with how many consumers, and the initial offload
shares) and the events that ask for a new one. Plans round-trip through YAML and JSON.

>>> p = Plan(application="demo", placements=(Placement("detect", "edge-1", 1, 25.0, 0.25),),
...          latency_ms=25.0, objective_ms=25.0, solver="milp", optimal=True, solve_s=0.01)
>>> Plan.from_data(p.to_data()) == p
True
>>> p.assignment
{'detect': 'edge-1'}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml


@dataclass(frozen=True)
class Placement:
    operator: str
    node: str
    consumers: int  # parallel consumers (topic partitions it needs)
    service_ms: float  # per item, on this node
    busy: float  # cores (GPUs for GPU builds) kept busy at the input rate
    gpu: bool = False
    rate: float = 0.0  # items per second reaching it


@dataclass(frozen=True)
class Share:
    """The chosen shares of one distribute flow (the initial offload policy)."""

    flow: int
    source: str
    targets: tuple[str, ...]
    weights: tuple[float, ...]


@dataclass(frozen=True)
class NodeUse:
    node: str
    cpu: float  # reserved cores
    cpu_cap: float
    memory_mb: float
    memory_cap: float
    busy_cpu: float
    busy_gpu: float


@dataclass(frozen=True)
class LinkUse:
    between: tuple[str, str]
    mbps: float
    bandwidth_mbps: float


@dataclass(frozen=True)
class Plan:
    application: str
    placements: tuple[Placement, ...]
    latency_ms: float  # predicted expected end-to-end latency per item
    objective_ms: float  # what the solver minimised (latency + move penalties)
    solver: str  # "milp", "greedy" or "exhaustive"
    optimal: bool
    solve_s: float
    shares: tuple[Share, ...] = ()
    edge_ratio: float | None = None  # share of frames the router sends to the edge role
    partitions: int = 1
    nodes: tuple[NodeUse, ...] = ()
    links: tuple[LinkUse, ...] = ()
    moves: tuple[str, ...] = ()  # operators a replan moved
    down: tuple[str, ...] = ()  # nodes planned around
    derated: dict[str, float] = field(default_factory=dict)  # "node" or "a,b" -> capacity
    notes: tuple[str, ...] = ()

    @property
    def assignment(self) -> dict[str, str]:
        return {p.operator: p.node for p in self.placements}

    def placement(self, operator: str) -> Placement:
        return next(p for p in self.placements if p.operator == operator)

    def on(self, node: str) -> list[Placement]:
        return [p for p in self.placements if p.node == node]

    def to_data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Plan:
        d = dict(data)
        d["placements"] = tuple(Placement(**p) for p in d.get("placements", ()))
        d["shares"] = tuple(Share(s["flow"], s["source"], tuple(s["targets"]),
                                  tuple(s["weights"])) for s in d.get("shares", ()))
        d["nodes"] = tuple(NodeUse(**n) for n in d.get("nodes", ()))
        d["links"] = tuple(LinkUse(tuple(lk["between"]), lk["mbps"], lk["bandwidth_mbps"])
                           for lk in d.get("links", ()))
        for key in ("moves", "down", "notes"):
            d[key] = tuple(d.get(key, ()))
        d["derated"] = dict(d.get("derated", {}))
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_data(), indent=2) + "\n"

    def to_yaml(self) -> str:
        return yaml.safe_dump(_plain(self.to_data()), sort_keys=False)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --- events that ask for a replan -----------------------------------------------------------
@dataclass(frozen=True)
class NodeDown:
    """A node stopped (heartbeats gone): nothing may stay on it."""

    node: str


@dataclass(frozen=True)
class NodeOverloaded:
    """Root-cause analysis blames a node: plan it with ``capacity`` of its compute."""

    node: str
    capacity: float = 0.5


@dataclass(frozen=True)
class LinkOverloaded:
    """Root-cause analysis blames a link: plan it with ``capacity`` of its bandwidth."""

    between: tuple[str, str]
    capacity: float = 0.5


@dataclass(frozen=True)
class NodeRecovered:
    """A node is back at full capacity (undoes NodeDown and NodeOverloaded)."""

    node: str


Event = NodeDown | NodeOverloaded | LinkOverloaded | NodeRecovered
