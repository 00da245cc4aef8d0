"""Placement by search: the greedy heuristic (with local search) and exhaustive search.

:func:`solve_greedy` places operators in flow order, each on the node that adds least
cost and still fits, then improves by local search (move one operator; move both ends of
a flow together; swap the contents of two nodes) and iterated local search (random kicks,
each followed by local search, keeping the best). :func:`solve_exhaustive` is
depth-first search with cost bounds, for tiny instances (the reference in tests and
``bench/placement.py``).

>>> from autosteer.spec.synthetic import random_spec
>>> from autosteer.spec.placement import build_instance
>>> inst = build_instance(random_spec(6, 3, seed=2))
>>> round(solve_exhaustive(inst).objective, 2), round(solve_greedy(inst).objective, 2)
(39.05, 39.05)
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

import numpy as np
from autosteer.spec.placement import EdgeCost, Instance, Solution

EPS = 1e-9


# --- greedy --------------------------------------------------------------------------------
class State:
    """A partial placement with its node use and link traffic, for greedy and search."""

    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self.assign = [-1] * len(inst.ops)
        self.use = {key: np.zeros(len(inst.nodes)) for key in inst.caps}
        self.links = np.zeros(len(inst.link_cap))
        self.incident: list[list[EdgeCost]] = [[] for _ in inst.ops]
        for e in inst.edges:
            self.incident[e.u].append(e)
            self.incident[e.v].append(e)

    def _ends(self, e: EdgeCost, i: int, k: int) -> tuple[int, int] | None:
        a = k if e.u == i else self.assign[e.u]
        b = k if e.v == i else self.assign[e.v]
        return None if a < 0 or b < 0 else (a, b)

    def fits(self, i: int, k: int) -> bool:
        inst = self.inst
        for key, cap in inst.caps.items():
            if self.use[key][k] + inst.demand(key, i, k) > cap[k] + EPS:
                return False
        extra: dict[int, float] = {}
        for e in self.incident[i]:
            ends = self._ends(e, i, k)
            if ends is None:
                continue
            if ends not in inst.routes:
                return False
            for li in inst.routes[ends]:
                extra[li] = extra.get(li, 0.0) + e.mbps
        return all(self.links[li] + t <= inst.link_cap[li] + EPS for li, t in extra.items())

    def cost(self, i: int, k: int) -> float:
        """What operator i on node k adds, given the operators already placed."""
        total = self.inst.op_cost(i, k)
        for e in self.incident[i]:
            ends = self._ends(e, i, k)
            if ends is not None:
                total += e.visit * self.inst.net(e, *ends)
        return total

    def _move(self, i: int, k: int, sign: float) -> None:
        for key in self.use:
            self.use[key][k] += sign * self.inst.demand(key, i, k)
        for e in self.incident[i]:
            ends = self._ends(e, i, k)
            if ends is not None:
                for li in self.inst.routes.get(ends, ()):
                    self.links[li] += sign * e.mbps

    def place(self, i: int, k: int) -> None:
        self._move(i, k, +1.0)
        self.assign[i] = k

    def unplace(self, i: int) -> None:
        self._move(i, self.assign[i], -1.0)
        self.assign[i] = -1


def flow_order(inst: Instance) -> list[int]:
    """Operators so that every edge's sender comes before its receiver."""
    indeg = [0] * len(inst.ops)
    out: list[list[int]] = [[] for _ in inst.ops]
    for e in inst.edges:
        indeg[e.v] += 1
        out[e.u].append(e.v)
    ready = [i for i, d in enumerate(indeg) if d == 0]
    order: list[int] = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for j in out[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                ready.append(j)
    return order + [i for i in range(len(inst.ops)) if i not in order]


def solve_greedy(inst: Instance, *, improve: bool = True, time_limit_s: float = 10.0,
                 kicks: int = 60, seed: int = 0) -> Solution | None:
    """Greedy construction (flow order, then biggest-first if that gets stuck); with
    ``improve``, local search (move one operator, or both ends of an edge together) and
    up to ``kicks`` random perturbations, each followed by local search, keeping the best
    (iterated local search). Stops at the time limit; None when nothing fits."""
    started = time.perf_counter()
    deadline = started + time_limit_s
    by_size = sorted(range(len(inst.ops)), key=lambda i: -_bulk(inst, i))
    state = None
    for order in (flow_order(inst), by_size):
        state = _construct(inst, order)
        if state is not None:
            break
    if state is None:
        return None
    if improve:
        state = _improve(state, deadline)
        state = _iterate(state, deadline, kicks, random.Random(seed))
    assign = tuple(state.assign)
    return Solution(assign, inst.objective(assign), "greedy", False,
                    time.perf_counter() - started)


def _bulk(inst: Instance, i: int) -> float:
    """How hard operator i is to fit: its largest share of any node's capacity."""
    share = 0.0
    for k in inst.allowed[i]:
        for key, cap in inst.caps.items():
            if cap[k] > 0:
                share = max(share, inst.demand(key, i, k) / cap[k])
    return share - 1e-3 * len(inst.allowed[i])


def _construct(inst: Instance, order: Sequence[int]) -> State | None:
    state = State(inst)
    for i in order:
        options = [(state.cost(i, k), k) for k in inst.allowed[i] if state.fits(i, k)]
        if not options:
            return None
        state.place(i, min(options)[1])
    return state


def _improve(state: State, deadline: float) -> State:
    improved = True
    while improved and time.perf_counter() < deadline:
        improved = _single_moves(state)
        improved |= _pair_moves(state)
        if not improved and time.perf_counter() < deadline:
            state, improved = _exchange_nodes(state, deadline)
    return state


def _exchange_nodes(state: State, deadline: float) -> tuple[State, bool]:
    """Swap everything on node a with everything on node b: moves whole clusters of
    operators that fill their nodes, which no one- or two-operator move can."""
    inst = state.inst
    best = list(state.assign)
    best_obj = inst.objective(best)
    on: dict[int, list[int]] = {}
    for i, k in enumerate(best):
        on.setdefault(k, []).append(i)
    allowed = [set(a) for a in inst.allowed]
    found = False
    for a in range(len(inst.nodes)):
        for b in range(a + 1, len(inst.nodes)):
            if time.perf_counter() >= deadline:
                break
            group_a, group_b = on.get(a, []), on.get(b, [])
            if not group_a and not group_b:
                continue
            if any(b not in allowed[i] for i in group_a) or any(
                    a not in allowed[i] for i in group_b):
                continue
            trial = list(best)
            for i in group_a:
                trial[i] = b
            for i in group_b:
                trial[i] = a
            obj = inst.objective(trial)
            if obj < best_obj - 1e-9 and inst.feasible(trial):
                best, best_obj, found = trial, obj, True
                on[a], on[b] = group_b, group_a
    if not found:
        return state, False
    fresh = State(inst)
    for i, k in enumerate(best):
        fresh.place(i, k)
    return fresh, True


def _single_moves(state: State) -> bool:
    inst = state.inst
    improved = False
    for i in range(len(inst.ops)):
        here = state.assign[i]
        state.unplace(i)
        best_cost, best = state.cost(i, here), here
        for k in inst.allowed[i]:
            if k != here and state.fits(i, k):
                c = state.cost(i, k)
                if c < best_cost - 1e-9:
                    best_cost, best = c, k
        state.place(i, best)
        improved |= best != here
    return improved


def _pair_moves(state: State) -> bool:
    """Move both ends of an edge onto one node: a single move never pays for itself
    when it tears a heavy edge apart."""
    inst = state.inst
    improved = False
    for e in inst.edges:
        a, b = state.assign[e.u], state.assign[e.v]
        state.unplace(e.u)
        state.unplace(e.v)
        old = _pair_cost(state, e, a, b)
        best_cost, best = old, None
        for k in set(inst.allowed[e.u]) & set(inst.allowed[e.v]):
            if (k, k) == (a, b) or not state.fits(e.u, k):
                continue
            state.place(e.u, k)
            ok = state.fits(e.v, k)
            c = state.cost(e.u, k) + state.cost(e.v, k) if ok else np.inf
            state.unplace(e.u)
            if c < best_cost - 1e-9:
                best_cost, best = c, k
        target = (best, best) if best is not None else (a, b)
        state.place(e.u, target[0])
        state.place(e.v, target[1])
        improved |= best is not None
    return improved


def _pair_cost(state: State, e: EdgeCost, a: int, b: int) -> float:
    """Cost of edge e's ends on a and b (both unplaced on entry and on return)."""
    state.place(e.u, a)
    cost = state.cost(e.u, a) + state.cost(e.v, b)
    state.unplace(e.u)
    return cost


def _iterate(state: State, deadline: float, kicks: int, rng: random.Random) -> State:
    inst = state.inst
    best = list(state.assign)
    best_obj = inst.objective(best)
    for _ in range(kicks):
        if time.perf_counter() >= deadline:
            break
        for i in rng.sample(range(len(inst.ops)), min(3, len(inst.ops))):
            here = state.assign[i]
            state.unplace(i)
            options = [k for k in inst.allowed[i] if k != here and state.fits(i, k)]
            state.place(i, rng.choice(options) if options else here)
        state = _improve(state, deadline)
        obj = inst.objective(state.assign)
        if obj < best_obj - 1e-9:
            best, best_obj = list(state.assign), obj
        else:
            state = State(inst)
            for i, k in enumerate(best):
                state.place(i, k)
    return state


# --- exhaustive ----------------------------------------------------------------------------
def solve_exhaustive(inst: Instance, *, max_states: int = 2_000_000) -> Solution | None:
    """The optimum by depth-first search with a cost bound; None when nothing fits.
    Raises ValueError past ``max_states`` partial placements (too big to enumerate)."""
    started = time.perf_counter()
    state = State(inst)
    order = flow_order(inst)
    best: list = [np.inf, None]
    visited = [0]

    def dfs(depth: int, partial: float) -> None:
        if partial >= best[0] - 1e-9:
            return
        if depth == len(order):
            best[0], best[1] = partial, tuple(state.assign)
            return
        visited[0] += 1
        if visited[0] > max_states:
            raise ValueError(f"more than {max_states} partial placements; too big to enumerate")
        i = order[depth]
        options = sorted((state.cost(i, k), k) for k in inst.allowed[i] if state.fits(i, k))
        for c, k in options:
            state.place(i, k)
            dfs(depth + 1, partial + c)
            state.unplace(i)

    dfs(0, 0.0)
    if best[1] is None:
        return None
    return Solution(best[1], inst.objective(best[1]), "exhaustive", True,
                    time.perf_counter() - started)
