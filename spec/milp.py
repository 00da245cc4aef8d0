"""The exact solver: a mixed-integer program for ``scipy.optimize.milp`` (HiGHS).

``x[i, k] = 1`` puts operator ``i`` on node ``k``. For each flow edge ``e = (u, v)`` a
continuous ``y[e, a, b]`` with ``sum_b y[e, a, b] = x[u, a]`` and
``sum_a y[e, a, b] = x[v, b]`` equals ``x[u, a] * x[v, b]`` at integral ``x`` (and gives
a tighter relaxation than the usual three inequalities), so network cost and link
traffic stay linear. Capacity and link rows are added only where they can bind.

>>> from autosteer.spec.synthetic import random_spec
>>> from autosteer.spec.placement import build_instance
>>> solution, verdict = solve_exact(build_instance(random_spec(6, 3, seed=2)), 10)
>>> verdict, solution.optimal, round(solution.objective, 2)
('optimal', True, 39.05)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import numpy as np
from autosteer.spec.placement import EdgeCost, Instance, Solution
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

log = logging.getLogger(__name__)
EPS = 1e-9


def exact_size(inst: Instance) -> int:
    """Variables the exact model would have (``x`` plus ``y``)."""
    n_x = sum(len(a) for a in inst.allowed)
    return n_x + sum(len(inst.allowed[e.u]) * len(inst.allowed[e.v]) for e in inst.edges)


def solve_exact(inst: Instance, time_limit_s: float) -> tuple[Solution | None, str]:
    """The optimal placement, or the best found within the time limit (``optimal=False``),
    or None when HiGHS finds none; with HiGHS's verdict: ``optimal``, ``time limit``,
    ``infeasible`` or ``failed``."""
    started = time.perf_counter()
    if any(not nodes for nodes in inst.allowed):
        return None, "infeasible"
    cols: dict[tuple, int] = {}
    cost: list[float] = []

    def var(key: tuple, c: float) -> int:
        cols[key] = len(cost)
        cost.append(c)
        return cols[key]

    for i, nodes in enumerate(inst.allowed):
        for k in nodes:
            var(("x", i, k), inst.op_cost(i, k))
    for ei, e in enumerate(inst.edges):
        for a in inst.allowed[e.u]:
            for b in inst.allowed[e.v]:
                if (a, b) in inst.routes:
                    var(("y", ei, a, b), e.visit * inst.net(e, a, b))
    rows = _Rows()
    for i, nodes in enumerate(inst.allowed):
        rows.add({cols[("x", i, k)]: 1.0 for k in nodes}, 1.0, 1.0)
    for ei, e in enumerate(inst.edges):  # sum_b y[e,a,b] = x[u,a]; sum_a y[e,a,b] = x[v,b]
        by_u: dict[int, dict[int, float]] = {a: {cols[("x", e.u, a)]: -1.0}
                                             for a in inst.allowed[e.u]}
        by_v: dict[int, dict[int, float]] = {b: {cols[("x", e.v, b)]: -1.0}
                                             for b in inst.allowed[e.v]}
        for (_, _, a, b), col in _edge_cols(cols, ei, inst, e):
            by_u[a][col] = 1.0
            by_v[b][col] = 1.0
        for terms in (*by_u.values(), *by_v.values()):
            rows.add(terms, 0.0, 0.0)
    _capacity_rows(inst, cols, rows)
    _link_rows(inst, cols, rows)
    n = len(cost)
    integrality = np.array([1 if key[0] == "x" else 0 for key in cols], dtype=np.uint8)
    res = milp(np.array(cost), integrality=integrality, bounds=Bounds(0, 1),
               constraints=rows.constraint(n),
               options={"time_limit": max(0.05, time_limit_s - (time.perf_counter() - started)),
                        "mip_rel_gap": 1e-6,
                        "disp": False})
    seconds = time.perf_counter() - started
    verdict = {0: "optimal", 1: "time limit", 2: "infeasible"}.get(res.status, "failed")
    if res.x is None:
        log.info("milp found no placement (%s: %s)", verdict, res.message)
        return None, verdict
    assign = [max(nodes, key=lambda k: res.x[cols[("x", i, k)]])
              for i, nodes in enumerate(inst.allowed)]
    if not inst.feasible(assign):  # rounding of a time-limited incumbent
        return None, verdict
    solution = Solution(tuple(assign), inst.objective(assign), "milp", res.status == 0, seconds)
    return solution, verdict


def _edge_cols(cols: dict[tuple, int], ei: int, inst: Instance, e: EdgeCost
               ) -> Iterator[tuple[tuple, int]]:
    for a in inst.allowed[e.u]:
        for b in inst.allowed[e.v]:
            key = ("y", ei, a, b)
            if key in cols:
                yield key, cols[key]


class _Rows:
    def __init__(self) -> None:
        self.r: list[int] = []
        self.c: list[int] = []
        self.v: list[float] = []
        self.lb: list[float] = []
        self.ub: list[float] = []

    def add(self, terms: dict[int, float], lb: float, ub: float) -> None:
        row = len(self.lb)
        for col, val in terms.items():
            self.r.append(row)
            self.c.append(col)
            self.v.append(val)
        self.lb.append(lb)
        self.ub.append(ub)

    def constraint(self, n: int) -> LinearConstraint:
        a = coo_array((self.v, (self.r, self.c)), shape=(len(self.lb), n)).tocsr()
        return LinearConstraint(a, np.array(self.lb), np.array(self.ub))


def _capacity_rows(inst: Instance, cols: dict[tuple, int], rows: _Rows) -> None:
    for k in range(len(inst.nodes)):
        users = [i for i, nodes in enumerate(inst.allowed) if k in nodes]
        for key, cap in inst.caps.items():
            terms = {cols[("x", i, k)]: inst.demand(key, i, k) for i in users}
            terms = {c: v for c, v in terms.items() if v > 0}
            if sum(terms.values()) > cap[k] + EPS:  # only rows that can bind
                rows.add(terms, -np.inf, float(cap[k]))


def _link_rows(inst: Instance, cols: dict[tuple, int], rows: _Rows) -> None:
    per_link: dict[int, dict[int, float]] = {}
    for key, col in cols.items():
        if key[0] != "y":
            continue
        _, ei, a, b = key
        for li in inst.routes.get((a, b), ()):
            per_link.setdefault(li, {})[col] = inst.edges[ei].mbps
    for li, terms in per_link.items():
        if sum(terms.values()) > inst.link_cap[li] + EPS:
            rows.add(terms, -np.inf, float(inst.link_cap[li]))
