"""Feasibility checks: can any placement meet the spec? Each failure names the operator,
node or requirement at fault and the numbers that do not add up.

* an operator no node can run (no build fits: architecture, GPU kind, libraries, tier)
  or no node can hold (memory, reserved cores, GPU memory, busy cores at the input rate);
* a pinned operator its node cannot run, or pinned operators over a node's capacity;
* demand over the capacity of all nodes together;
* operators pinned apart with no route between their nodes;
* an SLO above the best case (each operator on its fastest node, no network time);
* an accuracy floor above the most accurate choice of distribute targets.
"""

from __future__ import annotations

from autosteer.spec.compat import misfit_operator
from autosteer.spec.findings import Findings
from autosteer.spec.graph import AppGraph, input_rates
from autosteer.spec.placement import Instance, build_instance

_FIELD = {"GPU memory": "resources.gpu_memory_mb", "memory": "resources.memory_mb",
          "reserves": "resources.cpu"}  # first match wins: "GPU memory" before "memory"


def check_feasibility(found: Findings) -> None:
    spec = found.spec
    inst = build_instance(spec)
    ops, nodes = spec.application.operators, spec.resources.nodes
    for i, op in enumerate(ops):
        path = f"application.operators[{i}]"
        if inst.allowed[i]:
            continue
        if op.node is not None:
            k = inst.nodes.index(op.node)
            found.add(f"{path}.node", f"operator {op.name!r} cannot run on node {op.node!r}: "
                      f"{inst.reasons[i][k]}")
            continue
        compatible = [k for k, nd in enumerate(nodes) if misfit_operator(op, nd) is None]
        if not compatible:
            why = "; ".join(f"{nd.name}: {inst.reasons[i][k]}" for k, nd in enumerate(nodes))
            found.add(f"{path}.builds", f"no node can run operator {op.name!r} ({why})")
            continue
        first = inst.reasons[i][compatible[0]] or ""
        field = next((f for word, f in _FIELD.items() if word in first), "")
        why = "; ".join(f"{nodes[k].name}: {inst.reasons[i][k]}" for k in compatible)
        found.add(f"{path}.{field}" if field else path,
                  f"operator {op.name!r} fits no node that can run it ({why})")
    _pinned_capacity(found)
    _totals(found)
    _pinned_routes(found, inst)
    if any(not a for a in inst.allowed):
        return
    _slo(found, inst)
    _accuracy(found)


def _pinned_capacity(found: Findings) -> None:
    ops = found.spec.application.operators
    for k, nd in enumerate(found.spec.resources.nodes):
        pinned = [o for o in ops if o.node == nd.name]
        if len(pinned) < 2:
            continue
        names = ", ".join(o.name for o in pinned)
        mem = sum(o.resources.memory_mb for o in pinned)
        cpu = sum(o.resources.cpu for o in pinned)
        if mem > nd.memory_mb:
            found.add(f"resources.nodes[{k}].memory_mb", f"operators pinned to {nd.name!r} "
                      f"({names}) need {mem:g} MB; the node has {nd.memory_mb:g} MB")
        if cpu > nd.cpu + 1e-9:
            found.add(f"resources.nodes[{k}].cpu", f"operators pinned to {nd.name!r} "
                      f"({names}) reserve {cpu:g} cores; the node has {nd.cpu:g}")


def _totals(found: Findings) -> None:
    ops, nodes = found.spec.application.operators, found.spec.resources.nodes
    mem, have_mem = sum(o.resources.memory_mb for o in ops), sum(n.memory_mb for n in nodes)
    cpu, have_cpu = sum(o.resources.cpu for o in ops), sum(n.cpu for n in nodes)
    if mem > have_mem:
        found.add("application.operators", f"operators need {mem:g} MB memory in all; "
                  f"the nodes have {have_mem:g} MB")
    if cpu > have_cpu + 1e-9:
        found.add("application.operators", f"operators reserve {cpu:g} cores in all; "
                  f"the nodes have {have_cpu:g}")


def _pinned_routes(found: Findings, inst: Instance) -> None:
    spec = found.spec
    graph = AppGraph.from_spec(spec)
    for e in graph.edges:
        a, b = spec.operator(e.src).node, spec.operator(e.dst).node
        if a and b and a != b and (inst.nodes.index(a), inst.nodes.index(b)) not in inst.routes:
            found.add(f"application.flows[{e.flow}]", f"{e.src!r} is pinned to {a!r} and "
                      f"{e.dst!r} to {b!r}, but no links join those nodes")


def _slo(found: Findings, inst: Instance) -> None:
    spec = found.spec
    slo = spec.application.requirements.latency_slo_ms
    if slo is None:
        return
    graph = AppGraph.from_spec(spec)
    inject = input_rates(spec, graph.entries())
    fastest = {op: min(inst.svc[i, k] for k in inst.allowed[i]) for i, op in enumerate(inst.ops)}
    best, path = graph.expected(fastest, inject, best=True)
    if best > slo:
        found.add("application.requirements.latency_slo_ms",
                  f"{slo:g} ms cannot be met: the best case is {best:.1f} ms "
                  f"({' -> '.join(path)}, every operator on its fastest node, no network time)")


def _accuracy(found: Findings) -> None:
    spec = found.spec
    floor = spec.application.requirements.accuracy_floor
    if floor is None:
        return
    declared = {o.name: o.accuracy for o in spec.application.operators}
    if all(a is None for a in declared.values()):
        found.add("application.requirements.accuracy_floor",
                  "no operator declares its accuracy, so the floor cannot be checked", "warning")
        return
    graph = AppGraph.from_spec(spec)
    best = graph.accuracy(declared, input_rates(spec, graph.entries()), best=True)
    if best < floor - 1e-9:
        found.add("application.requirements.accuracy_floor",
                  f"{floor:g} cannot be met: the most accurate choice gives {best:.3f}")
