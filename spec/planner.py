"""Plan a placement, and re-plan it when a node dies or is overloaded.

:func:`plan` validates the spec, builds the placement problem
(:mod:`autosteer.spec.placement`) and solves it exactly with ``scipy.optimize.milp``
when the model is small enough, else (or when the exact solver runs out of time) with
the greedy heuristic; then it chooses the shares of planner-chosen distributes
(:mod:`autosteer.spec.shares`) and sizes consumers and partitions.

:func:`replan` solves the same problem on what is left after an event, with a penalty
for every operator that moves, so operators stay where they are unless moving them is
needed (or saves more latency than the penalty).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import numpy as np
from autosteer.spec.checks import errors, validate
from autosteer.spec.errors import PlacementError, Problem, SpecError, did_you_mean
from autosteer.spec.graph import AppGraph, input_rates
from autosteer.spec.milp import exact_size, solve_exact
from autosteer.spec.model import Spec
from autosteer.spec.placement import Conditions, Instance, Solution, build_instance
from autosteer.spec.result import (
    Event,
    LinkOverloaded,
    LinkUse,
    NodeDown,
    NodeOverloaded,
    NodeRecovered,
    NodeUse,
    Placement,
    Plan,
    Share,
)
from autosteer.spec.roles import role_of
from autosteer.spec.search import solve_greedy
from autosteer.spec.shares import choose_shares

MAX_EXACT_VARS = 60_000
MOVE_PENALTY_MS = 100.0
STATEFUL_MOVE_FACTOR = 4.0  # moving state costs more than restarting a stateless consumer
EXACT_SHARE = 0.6  # of the time limit; the greedy heuristic gets the rest when it runs


def plan(spec: Spec, *, time_limit_s: float = 10.0, max_exact_vars: int = MAX_EXACT_VARS
         ) -> Plan:
    """Place every operator to minimise predicted end-to-end latency.

    Raises :class:`SpecError` when the spec has validation errors and
    :class:`PlacementError` when no placement fits."""
    return _plan(spec, Conditions(), None, time_limit_s, max_exact_vars, 0.0)


def replan(spec: Spec, plan: Plan, event: Event, *, time_limit_s: float = 10.0,
           move_penalty_ms: float = MOVE_PENALTY_MS, max_exact_vars: int = MAX_EXACT_VARS
           ) -> Plan:
    """A new plan after ``event``, moving as few operators as it can.

    Each move costs ``move_penalty_ms`` (four times that for a stateful operator) in the
    objective; operators on a node that is down must move."""
    cond = _after(spec, plan, event)
    return _plan(spec, cond, plan.assignment, time_limit_s, max_exact_vars, move_penalty_ms)


def _after(spec: Spec, plan: Plan, event: Event) -> Conditions:
    names = [n.name for n in spec.resources.nodes]
    down = set(plan.down)
    nodes = {k: v for k, v in plan.derated.items() if "," not in k}
    links = {k: v for k, v in plan.derated.items() if "," in k}
    touched = list(event.between) if isinstance(event, LinkOverloaded) else [event.node]
    for name in touched:
        if name not in names:
            raise SpecError(f"{type(event).__name__}: unknown node {name!r}"
                            f"{did_you_mean(name, names)}", origin=spec.origin)
    if isinstance(event, NodeDown):
        down.add(event.node)
    elif isinstance(event, NodeOverloaded):
        nodes[event.node] = nodes.get(event.node, 1.0) * event.capacity
    elif isinstance(event, LinkOverloaded):
        key = ",".join(sorted(event.between))
        links[key] = links.get(key, 1.0) * event.capacity
    elif isinstance(event, NodeRecovered):
        down.discard(event.node)
        nodes.pop(event.node, None)
    return Conditions(frozenset(down), nodes,
                      {frozenset(k.split(",")): v for k, v in links.items()})


def _plan(spec: Spec, cond: Conditions, current: Mapping[str, str] | None,
          time_limit_s: float, max_exact_vars: int, move_penalty_ms: float) -> Plan:
    problems = validate(spec)
    if errors(problems):
        n = len(errors(problems))
        raise SpecError(f"{spec.origin} has {n} error{'s' if n != 1 else ''}",
                        errors(problems), origin=spec.origin)
    inst = build_instance(spec, conditions=cond)
    if current:
        for i, op in enumerate(spec.application.operators):
            node = current.get(op.name)
            inst.current[i] = inst.nodes.index(node) if node in inst.nodes else None
            inst.penalty[i] = move_penalty_ms * (STATEFUL_MOVE_FACTOR if op.stateful else 1.0)
    solution, notes = _solve(inst, spec, time_limit_s, max_exact_vars)
    assign = {op: inst.nodes[k] for op, k in zip(inst.ops, solution.assign, strict=True)}
    chosen, share_notes = choose_shares(spec, assign, cond)
    final = build_instance(spec, shares=chosen, conditions=cond)
    idx = [final.nodes.index(assign[o]) for o in final.ops]
    if chosen and not final.feasible(idx):  # numerical edge of the LP: keep equal shares
        chosen, final = {}, build_instance(spec, conditions=cond)
        share_notes.append("chosen shares did not fit on re-check; equal shares kept")
    notes += share_notes
    latency = final.latency(idx)
    slo = spec.application.requirements.latency_slo_ms
    if slo is not None and latency > slo:
        notes.append(f"predicted latency {latency:.1f} ms exceeds the SLO of {slo:g} ms")
    moves = tuple(op for op, node in assign.items() if current and current.get(op) != node)
    return _assemble(spec, final, idx, chosen, solution, latency, cond, moves, notes)


def _solve(inst: Instance, spec: Spec, time_limit_s: float, max_exact_vars: int
           ) -> tuple[Solution, list[str]]:
    started = time.perf_counter()
    size = exact_size(inst)
    notes: list[str] = []
    found: list[Solution] = []
    if size <= max_exact_vars:  # the exact solver may use 60 % of the time, greedy the rest
        exact, verdict = solve_exact(inst, time_limit_s * EXACT_SHARE)
        if exact is not None and exact.optimal:
            return exact, notes
        if verdict == "infeasible":
            raise _infeasible(inst, spec, "the exact solver proved that")
        found += [exact] if exact is not None else []
        limit = time_limit_s * EXACT_SHARE
        notes.append(f"exact solver stopped ({verdict}, limit {limit:.3g} s); "
                     "kept the better of its best placement and the greedy heuristic's")
    else:
        notes.append(f"exact model would have {size} variables (limit {max_exact_vars}); "
                     "greedy heuristic used")
    left = max(0.2, time_limit_s - (time.perf_counter() - started))
    greedy = solve_greedy(inst, time_limit_s=left)
    found += [greedy] if greedy is not None else []
    if not found:
        raise _infeasible(inst, spec, "neither solver found a placement; likely")
    best = min(found, key=lambda s: s.objective)
    seconds = time.perf_counter() - started
    return Solution(best.assign, best.objective, best.solver, False, seconds), notes


def _infeasible(inst: Instance, spec: Spec, how: str) -> PlacementError:
    problems = []
    for i, nodes in enumerate(inst.allowed):
        if not nodes:
            why = "; ".join(f"{n}: {r}" for n, r in zip(inst.nodes, inst.reasons[i], strict=True))
            problems.append(Problem(f"application.operators[{i}]",
                                    f"operator {inst.ops[i]!r} has no node left ({why})"))
    if problems:
        return PlacementError(f"cannot place {spec.application.name}: {how} no placement "
                              "fits", problems, origin=spec.origin)
    for key, what in (("mem", "MB memory"), ("cpu", "reserved cores"),
                      ("busy_cpu", "busy cores"), ("busy_gpu", "busy GPUs")):
        cap = float(inst.caps[key].sum())
        need = sum(min(inst.demand(key, i, k) for k in nodes)
                   for i, nodes in enumerate(inst.allowed))
        if need > cap + 1e-9:
            problems.append(Problem("resources.nodes", f"operators need {need:.3g} {what}; "
                                    f"the nodes that are up offer {cap:.3g}"))
    if not problems:
        problems.append(Problem("resources", "no placement meets capacity, compatibility and "
                                "bandwidth together, though each total fits"))
    return PlacementError(f"cannot place {spec.application.name}: {how} no placement fits",
                          problems, origin=spec.origin)


def _assemble(spec: Spec, inst: Instance, idx: list[int], chosen: Mapping[int, list[float]],
              solution: Solution, latency: float, cond: Conditions, moves: tuple[str, ...],
              notes: list[str]) -> Plan:
    app = spec.application
    util = app.requirements.max_utilization
    placements = []
    rate_of = _rates(spec, chosen)
    for i, op in enumerate(app.operators):
        k = idx[i]
        busy = float(inst.busy[i, k])
        consumers = 1 if op.stateful else max(1, math.ceil(busy / util - 1e-9))
        placements.append(Placement(op.name, inst.nodes[k], consumers,
                                    round(float(inst.svc[i, k]), 3), round(busy, 4),
                                    bool(inst.on_gpu[i, k]), round(rate_of[op.name], 4)))
    shares = tuple(Share(fi, app.flows[fi].sources[0], tuple(app.flows[fi].to), tuple(w))
                   for fi, w in sorted(chosen.items()))
    use, traffic = inst.usage(idx)
    nodes = tuple(NodeUse(n, round(float(use["cpu"][k]), 4), float(inst.caps["cpu"][k]),
                          float(use["mem"][k]), float(inst.caps["mem"][k]),
                          round(float(use["busy_cpu"][k]), 4),
                          round(float(use["busy_gpu"][k]), 4))
                  for k, n in enumerate(inst.nodes))
    links = tuple(LinkUse((lk.between[0], lk.between[1]), round(float(traffic[li]), 4),
                          lk.bandwidth_mbps)
                  for li, lk in enumerate(spec.resources.links))
    derated = {**cond.node_factor, **{",".join(sorted(k)): v for k, v in cond.link_factor.items()}}
    return Plan(
        application=app.name, placements=tuple(placements), latency_ms=round(latency, 3),
        objective_ms=round(solution.objective, 3), solver=solution.solver,
        optimal=solution.optimal, solve_s=round(solution.seconds, 4), shares=shares,
        edge_ratio=_edge_ratio(spec, placements, chosen),
        partitions=max(p.consumers for p in placements), nodes=nodes, links=links,
        moves=moves, down=tuple(sorted(cond.down)), derated=derated, notes=tuple(notes))


def _rates(spec: Spec, chosen: Mapping[int, list[float]]) -> dict[str, float]:
    graph = AppGraph.from_spec(spec, chosen)
    return graph.rates(input_rates(spec, graph.entries()))


def _edge_ratio(spec: Spec, placements: list[Placement], chosen: Mapping[int, list[float]]
                ) -> float | None:
    """Share of the router's items that go to operators run by the edge role."""
    tier = {n.name: n.tier for n in spec.resources.nodes}
    where = {p.operator: p.node for p in placements}
    role = {o.name: role_of(o, tier[where[o.name]]) for o in spec.application.operators}
    for fi, flow in enumerate(spec.application.flows):
        if flow.kind != "distribute" or role.get(flow.sources[0]) != "router":
            continue
        weights = np.array(chosen.get(fi) or flow.weights or [1.0] * len(flow.to), dtype=float)
        weights = weights / weights.sum()
        edge = sum(w for t, w in zip(flow.to, weights, strict=True) if role[t] == "edge")
        return round(float(edge), 4)
    return None
