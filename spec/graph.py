"""The application as a graph: operators joined by edges that carry a share of items.

A ``pipe`` or ``reduce`` edge carries every item of its sender; a ``distribute`` edge
carries its target's share (``weights``, normalized; equal shares until the planner
chooses them). Feedback edges are kept aside: they close loops but add no latency.

>>> from autosteer.spec.model import Spec
>>> g = AppGraph.from_spec(Spec.model_validate({
...     "application": {"name": "a", "operators": [
...         {"name": n, "builds": [{"latency_ms": 1}]} for n in ("src", "l", "r", "out")],
...         "flows": [{"kind": "distribute", "from": "src", "to": ["l", "r"], "weights": [3, 1]},
...                   {"kind": "reduce", "from": ["l", "r"], "to": "out"}]},
...     "resources": {"nodes": [{"name": "n", "tier": "edge", "cpu": 1, "memory_mb": 1}]}}))
>>> g.order()
['src', 'l', 'r', 'out']
>>> g.rates({"src": 8.0})
{'src': 8.0, 'l': 6.0, 'r': 2.0, 'out': 8.0}
>>> g.expected({"src": 1, "l": 10, "r": 30, "out": 1}, {"src": 1.0})
(17.0, ['src', 'r', 'out'])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from autosteer.spec.model import Spec


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    share: float  # of the sender's items that take this edge
    item_kb: float
    flow: int  # index in application.flows
    auto: bool = False  # a distribute share the planner chooses
    feedback: bool = False


class AppGraph:
    """Operators and the edges between them; only edges between known operators."""

    def __init__(self, ops: Sequence[str], edges: Sequence[Edge]) -> None:
        self.ops = list(ops)
        self.edges = [e for e in edges if not e.feedback]
        self.feedback = [e for e in edges if e.feedback]
        self._out: dict[str, list[Edge]] = {o: [] for o in self.ops}
        self._in: dict[str, list[Edge]] = {o: [] for o in self.ops}
        for e in self.edges:
            self._out[e.src].append(e)
            self._in[e.dst].append(e)

    @classmethod
    def from_spec(cls, spec: Spec, shares: Mapping[int, Sequence[float]] | None = None
                  ) -> AppGraph:
        """``shares`` overrides distribute weights, by flow index (the planner's choice)."""
        app = spec.application
        known = {o.name for o in app.operators}
        out_kb = {o.name: o.output_kb for o in app.operators}
        edges: list[Edge] = []
        for i, f in enumerate(app.flows):
            targets = f.to
            weights = list((shares or {}).get(i, f.weights or []))
            auto = f.kind == "distribute" and f.weights is None and i not in (shares or {})
            if f.kind != "distribute" or len(weights) != len(targets) or sum(weights) <= 0:
                weights = [1.0] * len(targets)
            total = sum(weights) if f.kind == "distribute" else 1.0
            for src in f.sources:
                for dst, w in zip(targets, weights, strict=True):
                    if src in known and dst in known:
                        kb = f.item_kb if f.item_kb is not None else out_kb[src]
                        edges.append(Edge(src, dst, w / total, kb, i, auto, f.feedback))
        return cls([o.name for o in app.operators], edges)

    def outgoing(self, op: str) -> list[Edge]:
        return self._out[op]

    def incoming(self, op: str) -> list[Edge]:
        return self._in[op]

    def entries(self) -> list[str]:
        """Operators nothing flows into (feedback aside): where sources enter."""
        return [o for o in self.ops if not self._in[o]]

    def find_cycle(self) -> list[str] | None:
        """A cycle as ``[a, b, ..., a]``, or None. Iterative DFS, first cycle found."""
        state = dict.fromkeys(self.ops, 0)  # 0 new, 1 on stack, 2 done
        for root in self.ops:
            if state[root]:
                continue
            stack = [(root, iter(self._out[root]))]
            path = [root]
            state[root] = 1
            while stack:
                op, it = stack[-1]
                edge = next(it, None)
                if edge is None:
                    state[op] = 2
                    stack.pop()
                    path.pop()
                elif state[edge.dst] == 1:
                    return path[path.index(edge.dst):] + [edge.dst]
                elif state[edge.dst] == 0:
                    state[edge.dst] = 1
                    stack.append((edge.dst, iter(self._out[edge.dst])))
                    path.append(edge.dst)
        return None

    def order(self) -> list[str]:
        """Topological order, stable in declaration order; raises ValueError on a cycle."""
        indeg = {o: len(self._in[o]) for o in self.ops}
        ready = [o for o in self.ops if indeg[o] == 0]
        out: list[str] = []
        while ready:
            op = ready.pop(0)
            out.append(op)
            for e in self._out[op]:
                indeg[e.dst] -= 1
                if indeg[e.dst] == 0:
                    ready.append(e.dst)
        if len(out) != len(self.ops):
            raise ValueError(f"flows form a cycle: {' -> '.join(self.find_cycle() or [])}")
        return out

    def rates(self, inject: Mapping[str, float]) -> dict[str, float]:
        """Items per second reaching each operator when ``inject`` enters at entries."""
        rate = {o: float(inject.get(o, 0.0)) for o in self.ops}
        for op in self.order():
            for e in self._out[op]:
                rate[e.dst] += rate[op] * e.share
        return rate

    def values(self, cost: Mapping[str, float],
               edge_cost: Callable[[Edge], float] | None = None, *, best: bool = False
               ) -> dict[str, float]:
        """Expected per-item sum of ``cost`` (and ``edge_cost``) from each operator to the end.

        With ``best``, distribute flows the planner chooses send every item to the
        cheapest target (the best case, used to tell an SLO no plan can meet)."""
        value: dict[str, float] = {}
        for op in reversed(self.order()):
            value[op] = cost[op] + sum(self._onward(op, value, edge_cost, best).values())
        return value

    def expected(self, cost: Mapping[str, float], inject: Mapping[str, float],
                 edge_cost: Callable[[Edge], float] | None = None, *, best: bool = False
                 ) -> tuple[float, list[str]]:
        """Expected per-item sum of ``cost`` from entry to end, and its heaviest path."""
        value = self.values(cost, edge_cost, best=best)
        total = sum(inject.values()) or 1.0
        mean = sum(value[o] * r for o, r in inject.items()) / total
        start = max(inject, key=lambda o: (value[o], inject[o])) if inject else self.ops[0]
        path = [start]
        while self._out[path[-1]]:
            onward = self._onward(path[-1], value, edge_cost, best, per_target=True)
            path.append(max(onward, key=lambda d: onward[d]))
        return mean, path

    def _onward(self, op: str, value: Mapping[str, float],
                edge_cost: Callable[[Edge], float] | None, best: bool,
                per_target: bool = False) -> dict[str, float]:
        by_flow: dict[int, list[Edge]] = {}
        for e in self._out[op]:
            by_flow.setdefault(e.flow, []).append(e)

        def through(e: Edge) -> float:
            return value[e.dst] + (edge_cost(e) if edge_cost is not None else 0.0)

        out: dict[str, float] = {}
        for edges in by_flow.values():
            if best and edges[0].auto:
                pick = min(edges, key=through)
                out[pick.dst] = out.get(pick.dst, 0.0) + through(pick)
                continue
            for e in edges:
                share = 1.0 if per_target else e.share
                out[e.dst] = out.get(e.dst, 0.0) + share * through(e)
        return out

    def accuracy(self, acc: Mapping[str, float | None], inject: Mapping[str, float],
                 *, best: bool = False) -> float:
        """Expected accuracy of an item: the lowest ``acc`` on the operators it passes
        (1.0 where none is declared), averaged over the shares it takes at each split;
        with ``best``, planner-chosen distributes take their most accurate target."""
        value = self.accuracy_values(acc, best=best)
        total = sum(inject.values()) or 1.0
        return sum(value[o] * r for o, r in inject.items()) / total

    def accuracy_values(self, acc: Mapping[str, float | None], *, best: bool = False
                        ) -> dict[str, float]:
        """Expected accuracy of an item from each operator onwards (see :meth:`accuracy`)."""
        value: dict[str, float] = {}
        for op in reversed(self.order()):
            own = acc.get(op)
            own = 1.0 if own is None else own
            by_flow: dict[int, list[Edge]] = {}
            for e in self._out[op]:
                by_flow.setdefault(e.flow, []).append(e)
            parts = []
            for group in by_flow.values():
                if best and group[0].auto:
                    parts.append(max(value[e.dst] for e in group))
                else:
                    parts.append(sum(e.share * value[e.dst] for e in group))
            value[op] = min(own, sum(parts) / len(parts)) if parts else own
        return value


def input_rates(spec: Spec, entries: Sequence[str]) -> dict[str, float]:
    """Items per second entering each entry operator from the spec's sources.

    A camera counts at ``throughput_fps_per_camera`` when that is set (ingest caps a
    faster camera; a slower one is a validation error), else at its own fps."""
    need = spec.application.requirements.throughput_fps_per_camera
    rates: dict[str, float] = {}
    default = entries[0] if entries else ""
    for cam in spec.sources.cameras:
        op = cam.operator or default
        rates[op] = rates.get(op, 0.0) + (min(cam.fps, need) if need else cam.fps)
    for stream in spec.sources.streams:
        op = stream.operator or default
        rates[op] = rates.get(op, 0.0) + stream.rate_per_s
    return rates
