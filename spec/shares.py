"""The initial offload policy: shares of each planner-chosen distribute flow.

Placement assumes equal shares. Once operators are placed, each such flow gets the
shares that minimise expected latency (a small linear program, flows in flow order):

    minimise    sum_t (w_t * (L_t - s_t) + q_t(w_t))
    subject to  sum_t w_t = 1, w_t >= 0
                base + sum_t w_t * g_t <= capacity   for busy cores, GPUs and links
                sum_t w_t * A_t >= accuracy floor     A_t: accuracy of items sent to t

``L_t`` is the latency of an item sent to target t (network, t's service time ``s_t``
and everything after), ``q_t(w) = w s_t / (1 - rho_t w)`` its time at t as an M/M/1
queue (convex, held under tangent lines), ``g_t`` the load the whole stream would put
downstream of t and ``base`` the load that does not pass this flow. Faster targets get
more items until queueing, capacity or the accuracy floor says stop; equal replicas get
equal shares.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
from autosteer.spec.graph import AppGraph, Edge, input_rates
from autosteer.spec.model import Spec
from autosteer.spec.placement import Conditions, Instance, build_instance
from scipy.optimize import linprog

log = logging.getLogger(__name__)


def auto_flows(spec: Spec) -> list[int]:
    """Distribute flows without weights, in the order their senders are reached."""
    graph = AppGraph.from_spec(spec)
    rank = {op: n for n, op in enumerate(graph.order())}
    flows = [i for i, f in enumerate(spec.application.flows)
             if f.kind == "distribute" and f.weights is None and not f.feedback]
    return sorted(flows, key=lambda i: rank[spec.application.flows[i].sources[0]])


def choose_shares(spec: Spec, assign: Mapping[str, str], conditions: Conditions
                  ) -> tuple[dict[int, list[float]], list[str]]:
    """Shares per auto distribute flow (by index), and notes where the LP gave up."""
    shares = {i: [1.0 / len(spec.application.flows[i].to)] * len(spec.application.flows[i].to)
              for i in auto_flows(spec)}
    notes: list[str] = []
    for i in auto_flows(spec):
        found = _solve_flow(spec, assign, conditions, shares, i)
        if found is None:
            notes.append(f"application.flows[{i}]: no shares meet capacity and the accuracy "
                         "floor on this placement; equal shares kept")
        else:
            shares[i] = found
    return shares, notes


def _solve_flow(spec: Spec, assign: Mapping[str, str], cond: Conditions,
                shares: dict[int, list[float]], fi: int) -> list[float] | None:
    inst = build_instance(spec, shares=shares, conditions=cond)
    graph = AppGraph.from_spec(spec, shares)
    flow = spec.application.flows[fi]
    targets, sender = flow.to, flow.sources[0]
    k_of = {op: inst.nodes.index(n) for op, n in assign.items()}
    i_of = {op: i for i, op in enumerate(inst.ops)}
    svc = {op: float(inst.svc[i_of[op], k_of[op]]) for op in inst.ops}

    def edge_ms(e: Edge) -> float:
        if k_of[e.src] == k_of[e.dst]:
            return 0.0
        a, b = k_of[e.src], k_of[e.dst]
        return float(inst.lat[a, b] + e.item_kb * 8.0 * inst.inv_bw[a, b])

    value = graph.values(svc, edge_ms)
    into = {e.dst: e for e in graph.outgoing(sender) if e.flow == fi}
    latency = [edge_ms(into[t]) + value[t] for t in targets]
    inject = input_rates(spec, graph.entries())
    sender_rate = graph.rates(inject)[sender]
    loads = [_load(inst, graph, k_of, svc, into[t], sender_rate) for t in targets]
    total = _load_all(inst, graph, k_of, svc, inject)
    base = total - sum(w * g for w, g in zip(shares[fi], loads, strict=True))
    cap = np.concatenate([inst.caps["busy_cpu"], inst.caps["busy_gpu"], inst.link_cap])
    a_ub = np.array(loads).T
    b_ub = cap - base
    keep = a_ub.any(axis=1)
    a_ub, b_ub = a_ub[keep], b_ub[keep]
    floor = spec.application.requirements.accuracy_floor
    if floor is not None:
        acc = graph.accuracy_values({o.name: o.accuracy for o in spec.application.operators})
        a_ub = np.vstack([a_ub, [-acc[t] for t in targets]])
        b_ub = np.append(b_ub, -floor)
    queues = [_Queue(svc[t], sender_rate, _servers(spec, inst, i_of[t], k_of[t]),
                     spec.application.requirements.max_utilization) for t in targets]
    found = _lp(latency, queues, a_ub, b_ub, fi)
    if found is None:
        return None
    # the tangents make the objective flat between breakpoints, so twin targets (same
    # latency, queue, load and accuracy) may come back uneven: even them out
    twins: dict[tuple, list[int]] = {}
    for t in range(len(targets)):
        key = (round(latency[t], 9), round(queues[t].s, 9), round(queues[t].a, 9),
               tuple(np.round(a_ub[:, t], 9)))
        twins.setdefault(key, []).append(t)
    for group in twins.values():
        mean = sum(found[t] for t in group) / len(group)
        for t in group:
            found[t] = round(mean, 4)
    return found


class _Queue:
    """Target t as an M/M/1 queue with ``servers`` times the service rate: an item's time
    there, weighted by the share w it gets, is g(w) = w s / (1 - a w / servers) with
    a = rate * s, convex in w; the LP holds it under tangent lines."""

    def __init__(self, service_ms: float, rate: float, servers: int, util: float) -> None:
        self.s = service_ms
        self.a = rate * service_ms / 1000.0 / servers  # utilization at w = 1
        self.w_max = 1.0 if self.a <= util else util / self.a

    def g(self, w: float) -> float:
        return w * self.s / (1.0 - self.a * w)

    def slope(self, w: float) -> float:
        return self.s / (1.0 - self.a * w) ** 2

    def tangents(self, n: int = 32) -> list[tuple[float, float]]:
        """(slope, intercept) of lines under g on [0, w_max]."""
        points = [self.w_max * j / (n - 1) for j in range(n)] if self.a > 0 else [0.0]
        return [(self.slope(w), self.g(w) - self.slope(w) * w) for w in points]


def _servers(spec: Spec, inst: Instance, i: int, k: int) -> int:
    node = spec.resources.nodes[k]
    if inst.on_gpu[i, k] and node.gpu is not None:
        return node.gpu.count
    return max(1, int(node.cpu))


def _lp(latency: list[float], queues: list[_Queue], a_ub: np.ndarray, b_ub: np.ndarray,
        fi: int) -> list[float] | None:
    """Variables: shares w_t, then z_t >= g_t(w_t); minimise sum (L_t - s_t) w_t + z_t."""
    n = len(queues)
    cost = np.concatenate([[lat - q.s for lat, q in zip(latency, queues, strict=True)],
                           np.ones(n)])
    rows = [np.concatenate([r, np.zeros(n)]) for r in a_ub]
    bounds = list(b_ub)
    for t, q in enumerate(queues):
        for slope, intercept in q.tangents():
            row = np.zeros(2 * n)
            row[t], row[n + t] = slope, -1.0  # slope * w - z <= -intercept
            rows.append(row)
            bounds.append(-intercept)
    res = linprog(cost, A_ub=np.array(rows), b_ub=np.array(bounds),
                  A_eq=np.concatenate([np.ones(n), np.zeros(n)])[None, :], b_eq=[1.0],
                  bounds=[(0.0, q.w_max) for q in queues] + [(0.0, None)] * n,
                  method="highs")
    if res.status != 0:
        log.info("shares of flow %d: %s", fi, res.message)
        return None
    w = np.clip(res.x[:n], 0.0, 1.0)
    return [round(float(x), 4) for x in w / w.sum()]


def _vector(inst: Instance, k_of: Mapping[str, int], svc: Mapping[str, float],
            rates: Mapping[str, float], edges: list[tuple[Edge, float]]) -> np.ndarray:
    m = len(inst.nodes)
    cpu, gpu, links = np.zeros(m), np.zeros(m), np.zeros(len(inst.link_cap))
    for op, r in rates.items():
        if r <= 0:
            continue
        k = k_of[op]
        busy = r * svc[op] / 1000.0
        if inst.on_gpu[inst.ops.index(op), k]:
            gpu[k] += busy
        else:
            cpu[k] += busy
    for e, r in edges:
        for li in inst.routes.get((k_of[e.src], k_of[e.dst]), ()):
            links[li] += r * e.item_kb * 8.0 / 1000.0
    return np.concatenate([cpu, gpu, links])


def _load(inst: Instance, graph: AppGraph, k_of: Mapping[str, int],
          svc: Mapping[str, float], into: Edge, sender_rate: float) -> np.ndarray:
    """Load if the sender's whole stream went to ``into.dst``."""
    rates = graph.rates({into.dst: sender_rate})
    edges = [(into, sender_rate)] + [(e, rates[e.src] * e.share) for e in graph.edges
                                     if rates[e.src] > 0]
    return _vector(inst, k_of, svc, rates, edges)


def _load_all(inst: Instance, graph: AppGraph, k_of: Mapping[str, int],
              svc: Mapping[str, float], inject: Mapping[str, float]) -> np.ndarray:
    rates = graph.rates(inject)
    return _vector(inst, k_of, svc, rates, [(e, rates[e.src] * e.share) for e in graph.edges])
