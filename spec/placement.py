"""The placement problem in numbers, built once from a spec and shared by every solver.

Operator ``i`` on node ``k`` costs ``visit[i] * svc[i, k]`` ms per input item; an edge
``e = (u, v)`` whose ends sit on nodes ``a`` and ``b`` costs ``visit[e] * net[e][a, b]``
(route latency plus item size over the route's narrowest bandwidth; 0 on one node).
Their sum is the expected end-to-end latency of an item when flows only split or merge
(a copy to two flows counts both). A replan adds ``penalty[i]`` for each moved operator.

Capacities per node: reserved cores and memory, busy cores (``rate * svc``) and busy
GPUs up to ``max_utilization`` of what there is, GPU memory; per link: traffic up to
``max_utilization`` of its bandwidth, shared by every flow routed over it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from autosteer.spec.compat import best_build, misfit_operator, service_ms
from autosteer.spec.graph import AppGraph, input_rates
from autosteer.spec.model import Node, Operator, Spec
from autosteer.spec.network import Network

INF = math.inf


@dataclass
class Conditions:
    """What changed since the spec was written: nodes down, capacities derated."""

    down: frozenset[str] = frozenset()
    node_factor: Mapping[str, float] = field(default_factory=dict)  # compute capacity share
    link_factor: Mapping[frozenset[str], float] = field(default_factory=dict)


@dataclass(frozen=True)
class EdgeCost:
    u: int
    v: int
    visit: float  # edge traversals per input item
    mbps: float  # traffic at the input rate
    item_kb: float


@dataclass(frozen=True)
class Solution:
    """A placement (node index per operator) and what it costs."""

    assign: tuple[int, ...]
    objective: float
    solver: str  # "milp", "greedy" or "exhaustive"
    optimal: bool
    seconds: float


class Instance:
    """Arrays indexed [operator, node]; ``allowed[i]`` lists the nodes operator i may use."""

    def __init__(self, ops: Sequence[str], nodes: Sequence[str], *, visit: np.ndarray,
                 svc: np.ndarray, busy: np.ndarray, on_gpu: np.ndarray, cpu: np.ndarray,
                 mem: np.ndarray, gpu_mem: np.ndarray, caps: Mapping[str, np.ndarray],
                 edges: Sequence[EdgeCost], lat: np.ndarray, inv_bw: np.ndarray,
                 routes: Mapping[tuple[int, int], tuple[int, ...]], link_cap: np.ndarray,
                 reasons: Sequence[Sequence[str | None]]) -> None:
        self.ops, self.nodes = list(ops), list(nodes)
        self.visit, self.svc, self.busy, self.on_gpu = visit, svc, busy, on_gpu
        self.cpu, self.mem, self.gpu_mem = cpu, mem, gpu_mem
        self.caps = dict(caps)  # cpu, mem, busy_cpu, busy_gpu, gpu_mem: per node
        self.edges = list(edges)
        self.lat, self.inv_bw, self.routes, self.link_cap = lat, inv_bw, routes, link_cap
        self.reasons = [list(r) for r in reasons]
        self.allowed = [[k for k, r in enumerate(row) if r is None] for row in self.reasons]
        self.current: list[int | None] = [None] * len(self.ops)
        self.penalty = np.zeros(len(self.ops))

    def net(self, e: EdgeCost, a: int, b: int) -> float:
        if a == b:
            return 0.0
        return float(self.lat[a, b] + e.item_kb * 8.0 * self.inv_bw[a, b])

    def op_cost(self, i: int, k: int) -> float:
        moved = self.current[i] is not None and self.current[i] != k
        return float(self.visit[i] * self.svc[i, k]) + (float(self.penalty[i]) if moved else 0.0)

    def objective(self, assign: Sequence[int]) -> float:
        """Predicted latency (ms per input item) plus move penalties."""
        total = sum(self.op_cost(i, k) for i, k in enumerate(assign))
        return total + sum(e.visit * self.net(e, assign[e.u], assign[e.v]) for e in self.edges)

    def latency(self, assign: Sequence[int]) -> float:
        """Predicted expected end-to-end latency (ms per input item), no penalties."""
        total = sum(float(self.visit[i] * self.svc[i, k]) for i, k in enumerate(assign))
        return total + sum(e.visit * self.net(e, assign[e.u], assign[e.v]) for e in self.edges)

    def usage(self, assign: Sequence[int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per-node use (same keys as ``caps``) and per-link traffic of ``assign``."""
        m = len(self.nodes)
        use = {key: np.zeros(m) for key in self.caps}
        for i, k in enumerate(assign):
            use["cpu"][k] += self.cpu[i]
            use["mem"][k] += self.mem[i]
            if self.on_gpu[i, k]:
                use["busy_gpu"][k] += self.busy[i, k]
                use["gpu_mem"][k] += self.gpu_mem[i]
            else:
                use["busy_cpu"][k] += self.busy[i, k]
        links = np.zeros(len(self.link_cap))
        for e in self.edges:
            for li in self.routes.get((assign[e.u], assign[e.v]), ()):
                links[li] += e.mbps
        return use, links

    def demand(self, key: str, i: int, k: int) -> float:
        """What operator i on node k takes of capacity ``key`` (a key of ``caps``)."""
        gpu = bool(self.on_gpu[i, k])
        if key == "busy_cpu":
            return 0.0 if gpu else float(self.busy[i, k])
        if key == "busy_gpu":
            return float(self.busy[i, k]) if gpu else 0.0
        if key == "gpu_mem":
            return float(self.gpu_mem[i]) if gpu else 0.0
        return float({"cpu": self.cpu, "mem": self.mem}[key][i])

    def violations(self, assign: Sequence[int]) -> list[str]:
        """Why ``assign`` is infeasible (empty when it is feasible)."""
        out = [f"{self.ops[i]} may not run on {self.nodes[k]}: {self.reasons[i][k]}"
               for i, k in enumerate(assign) if self.reasons[i][k] is not None]
        for e in self.edges:
            if (assign[e.u], assign[e.v]) not in self.routes:
                out.append(f"no route {self.nodes[assign[e.u]]} -> {self.nodes[assign[e.v]]}")
        use, links = self.usage(assign)
        for key, cap in self.caps.items():
            for k in np.nonzero(use[key] > cap + 1e-9)[0]:
                out.append(f"{self.nodes[k]} {key} {use[key][k]:.3g} > {cap[k]:.3g}")
        for li in np.nonzero(links > self.link_cap + 1e-9)[0]:
            out.append(f"link {li} {links[li]:.3g} Mbit/s > {self.link_cap[li]:.3g}")
        return out

    def feasible(self, assign: Sequence[int]) -> bool:
        return not self.violations(assign)


def build_instance(spec: Spec, *, shares: Mapping[int, Sequence[float]] | None = None,
                   conditions: Conditions | None = None) -> Instance:
    """The numbers of ``spec``'s placement problem (auto distributes: ``shares`` or equal)."""
    cond = conditions or Conditions()
    app, res = spec.application, spec.resources
    util = app.requirements.max_utilization
    graph = AppGraph.from_spec(spec, shares)
    inject = input_rates(spec, graph.entries())
    total_in = sum(inject.values()) or 1.0
    rate = graph.rates(inject)
    ops, nodes = app.operators, res.nodes
    n, m = len(ops), len(nodes)
    svc = np.full((n, m), INF)
    busy = np.zeros((n, m))
    on_gpu = np.zeros((n, m), dtype=bool)
    up = np.array([0.0 if nd.name in cond.down else 1.0 for nd in nodes])
    factor = up * np.array([cond.node_factor.get(nd.name, 1.0) for nd in nodes])
    caps = {
        "cpu": np.array([nd.cpu for nd in nodes]) * factor,
        "mem": np.array([nd.memory_mb for nd in nodes], dtype=float) * up,
        "busy_cpu": util * np.array([nd.cpu for nd in nodes]) * factor,
        "busy_gpu": util * np.array([nd.gpu.count if nd.gpu else 0 for nd in nodes]) * factor,
        "gpu_mem": np.array([nd.gpu.memory_mb if nd.gpu else 0.0 for nd in nodes]) * up,
    }
    reasons: list[list[str | None]] = []
    for i, op in enumerate(ops):
        row: list[str | None] = []
        for k, nd in enumerate(nodes):
            why = _why_not(op, nd, cond)
            build = best_build(op, nd) if why is None else None
            if build is not None:
                svc[i, k] = service_ms(build, nd)
                on_gpu[i, k] = build.accelerator != "cpu"
                busy[i, k] = rate[op.name] * svc[i, k] / 1000.0
                why = _overfull(op, k, busy[i, k], bool(on_gpu[i, k]), caps, util)
            row.append(why)
        reasons.append(row)
    index = {op.name: i for i, op in enumerate(ops)}
    edges = [EdgeCost(index[e.src], index[e.dst], rate[e.src] * e.share / total_in,
                      rate[e.src] * e.share * e.item_kb * 8.0 / 1000.0, e.item_kb)
             for e in graph.edges]
    up_links = [lk for lk in res.links if not set(lk.between) & cond.down]  # no forwarding
    net = Network([nd.name for nd in nodes], up_links)
    lat, inv_bw = np.full((m, m), INF), np.full((m, m), INF)
    routes: dict[tuple[int, int], tuple[int, ...]] = {}
    for a in range(m):
        for b in range(m):
            r = net.route(nodes[a].name, nodes[b].name)
            if r is not None:
                lat[a, b], inv_bw[a, b] = r.latency_ms, 1.0 / r.bandwidth_mbps
                routes[(a, b)] = tuple(res.links.index(up_links[li]) for li in r.links)
    link_cap = np.array([util * lk.bandwidth_mbps * cond.link_factor.get(frozenset(lk.between),
                                                                          1.0)
                         for lk in res.links])
    return Instance(
        [o.name for o in ops], [nd.name for nd in nodes],
        visit=np.array([rate[o.name] / total_in for o in ops]), svc=svc, busy=busy,
        on_gpu=on_gpu, cpu=np.array([o.resources.cpu for o in ops]),
        mem=np.array([o.resources.memory_mb for o in ops]),
        gpu_mem=np.array([o.resources.gpu_memory_mb for o in ops]), caps=caps, edges=edges,
        lat=lat, inv_bw=inv_bw, routes=routes, link_cap=link_cap, reasons=reasons)


def _why_not(op: Operator, node: Node, cond: Conditions) -> str | None:
    if node.name in cond.down:
        return "node is down"
    if op.node is not None and op.node != node.name:
        return f"pinned to {op.node}"
    return misfit_operator(op, node)


def _overfull(op: Operator, k: int, busy: float, gpu: bool,
              caps: Mapping[str, np.ndarray], util: float) -> str | None:
    need = op.resources
    if need.memory_mb > caps["mem"][k]:
        return f"needs {need.memory_mb:g} MB memory, node has {caps['mem'][k]:g} MB"
    if need.cpu > caps["cpu"][k] + 1e-9:
        return f"reserves {need.cpu:g} cores, node has {caps['cpu'][k]:g}"
    if gpu and need.gpu_memory_mb > caps["gpu_mem"][k]:
        return f"needs {need.gpu_memory_mb:g} MB GPU memory, node has {caps['gpu_mem'][k]:g} MB"
    unit = "GPUs" if gpu else "cores"
    room = caps["busy_gpu" if gpu else "busy_cpu"][k]
    if busy > room + 1e-9:
        return f"keeps {busy:.2f} {unit} busy, node may be planned to {room:.2f}"
    if op.stateful and busy > util + 1e-9:
        return f"stateful: runs as one consumer, which would be {busy / util:.0%} of its budget"
    return None
