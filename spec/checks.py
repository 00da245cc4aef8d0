"""Semantic checks of a spec's structure: names, flows, cycles, sources and links.

Every check adds :class:`Problem` s to one list, so a user sees all of them at once;
:func:`validate` runs these and the feasibility checks of
:mod:`autosteer.spec.feasibility` (compatibility, capacity, SLO, accuracy).

>>> from autosteer.spec.load import parse_spec
>>> spec = parse_spec('''
... application:
...   name: demo
...   operators:
...     - {name: ingest, function: ingest, builds: [{latency_ms: 2}]}
...     - {name: detect, model: ssd, builds: [{latency_ms: 30}]}
...   flows:
...     - {kind: pipe, from: ingest, to: detct}
... resources:
...   nodes: [{name: n1, tier: edge, cpu: 2, memory_mb: 2048}]
... sources:
...   cameras: [{id: cam1, url: "rtsp://127.0.0.1:18554/cam1", fps: 10}]
... ''')
>>> for p in validate(spec):
...     print(p.severity, p)
error application.flows[0].to: unknown operator 'detct' (did you mean 'detect'?) (line 8)
warning application.operators[1]: operator 'detect' is in no flow (line 6)
"""

from __future__ import annotations

from collections.abc import Iterable

from autosteer.spec.errors import Problem, did_you_mean
from autosteer.spec.feasibility import check_feasibility
from autosteer.spec.findings import Findings
from autosteer.spec.graph import AppGraph
from autosteer.spec.model import Spec

_ARITY = {"pipe": ("exactly one", "exactly one"), "distribute": ("exactly one", "at least two"),
          "reduce": ("at least two", "exactly one")}


def validate(spec: Spec) -> list[Problem]:
    """All semantic problems of ``spec``, errors first, each with its YAML path and line.

    An empty list (or warnings only) means :func:`autosteer.spec.plan` can run."""
    found = Findings(spec)
    check_names(found)
    check_operators(found)
    check_flows(found)
    check_links(found)
    check_sources(found)
    if not any(p.severity == "error" for p in found.problems):
        check_feasibility(found)  # needs a sound structure to reason about
    order = {"error": 0, "warning": 1}
    return sorted(found.problems, key=lambda p: order[p.severity])


def errors(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def check_names(found: Findings) -> None:
    spec = found.spec
    _unique(found, "application.operators", [o.name for o in spec.application.operators],
            "operator")
    _unique(found, "resources.nodes", [n.name for n in spec.resources.nodes], "node")
    ids = [(f"sources.cameras[{i}].id", c.id) for i, c in enumerate(spec.sources.cameras)]
    ids += [(f"sources.streams[{i}].id", s.id) for i, s in enumerate(spec.sources.streams)]
    first: dict[str, str] = {}
    for path, name in ids:
        if name in first:
            found.add(path, f"duplicate source id {name!r} (first at {first[name]})")
        first.setdefault(name, path)


def _unique(found: Findings, base: str, names: list[str], what: str) -> None:
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            found.add(f"{base}[{i}].name",
                      f"duplicate {what} {name!r} (first at {base}[{first[name]}])")
        first.setdefault(name, i)


def check_operators(found: Findings) -> None:
    nodes = [n.name for n in found.spec.resources.nodes]
    for i, op in enumerate(found.spec.application.operators):
        path = f"application.operators[{i}]"
        if (op.model is None) == (op.function is None):
            found.add(path, f"operator {op.name!r} must give exactly one of model and function")
        if op.node is not None and op.node not in nodes:
            found.add(f"{path}.node", f"unknown node {op.node!r}{did_you_mean(op.node, nodes)}")


def check_flows(found: Findings) -> None:
    app = found.spec.application
    names = [o.name for o in app.operators]
    for i, flow in enumerate(app.flows):
        path = f"application.flows[{i}]"
        for side, members in (("from", flow.sources), ("to", flow.to)):
            for k, name in enumerate(members):
                if name not in names:
                    where = found.member(f"{path}.{side}", k, len(members))
                    found.add(where, f"unknown operator {name!r}{did_you_mean(name, names)}")
        want_from, want_to = _ARITY[flow.kind]
        for side, members, want in (("from", flow.sources, want_from), ("to", flow.to, want_to)):
            ok = len(members) == 1 if want == "exactly one" else len(members) >= 2
            if not ok:
                found.add(f"{path}.{side}", f"a {flow.kind} flow takes {want} operator"
                          f"{'' if want == 'exactly one' else 's'} here; got {len(members)}")
        if flow.weights is not None:
            if flow.kind != "distribute":
                found.add(f"{path}.weights", f"weights apply to distribute flows, not {flow.kind}")
            elif len(flow.weights) != len(flow.to):
                found.add(f"{path}.weights", f"{len(flow.weights)} weights for "
                          f"{len(flow.to)} targets; give one per target")
            elif sum(flow.weights) <= 0:
                found.add(f"{path}.weights", "weights sum to 0; at least one must be positive")
        for name in set(flow.sources) & set(flow.to):
            found.add(path, f"operator {name!r} flows into itself")
    graph = AppGraph.from_spec(found.spec)
    cycle = graph.find_cycle()
    if cycle is not None and len(cycle) > 2:  # a self-flow is reported above
        closing = next(e for e in graph.edges if e.src == cycle[-2] and e.dst == cycle[-1])
        found.add(f"application.flows[{closing.flow}]",
                  f"cycle {' -> '.join(cycle)}; flows must not loop unless the closing flow "
                  "is marked `feedback: true`")
    touched = {n for f in app.flows for n in f.sources + f.to}
    if len(names) > 1:
        for i, op in enumerate(app.operators):
            if op.name not in touched:
                found.add(f"application.operators[{i}]",
                          f"operator {op.name!r} is in no flow", "warning")


def check_links(found: Findings) -> None:
    res = found.spec.resources
    names = [n.name for n in res.nodes]
    seen: dict[frozenset[str], int] = {}
    for i, link in enumerate(res.links):
        path = f"resources.links[{i}].between"
        for k, name in enumerate(link.between):
            if name not in names:
                found.add(f"{path}[{k}]", f"unknown node {name!r}{did_you_mean(name, names)}")
        pair = frozenset(link.between)
        if len(pair) == 1:
            found.add(path, f"a link joins two different nodes; got {link.between[0]!r} twice")
        elif pair in seen:
            found.add(path, f"duplicate link between {' and '.join(sorted(pair))} (first at "
                      f"resources.links[{seen[pair]}]); the faster route is used", "warning")
        seen.setdefault(pair, i)
    if len(names) > 1 and not res.links:
        found.add("resources.links", "no links: operators joined by a flow must share a node",
                  "warning")


def check_sources(found: Findings) -> None:
    spec = found.spec
    src = spec.sources
    names = [o.name for o in spec.application.operators]
    targets = {t for f in spec.application.flows if not f.feedback for t in f.to}
    entries = [n for n in names if n not in targets]
    typo = any(n not in names for f in spec.application.flows for n in f.sources + f.to)
    if not src.cameras and not src.streams:
        found.add("sources", "no cameras or streams: the planner needs an input rate")
    need = spec.application.requirements.throughput_fps_per_camera
    inputs: list[tuple[str, str | None]] = [
        (f"sources.cameras[{i}]", c.operator) for i, c in enumerate(src.cameras)]
    inputs += [(f"sources.streams[{i}]", s.operator) for i, s in enumerate(src.streams)]
    for path, op in inputs:
        if op is None:
            if len(entries) > 1 and not typo:  # a typo in a flow would make false entries
                found.add(path, f"the application has several entry operators "
                          f"({', '.join(entries)}); say which one this feeds with `operator:`")
        elif op not in names:
            found.add(f"{path}.operator", f"unknown operator {op!r}{did_you_mean(op, names)}")
        elif op not in entries:
            found.add(f"{path}.operator", f"operator {op!r} is not an entry: flows lead into it")
    for i, cam in enumerate(src.cameras):
        if need is not None and cam.fps < need:
            found.add(f"sources.cameras[{i}].fps", f"camera {cam.id!r} gives {cam.fps:g} fps, "
                      f"below the required {need:g} fps "
                      "(application.requirements.throughput_fps_per_camera)")

