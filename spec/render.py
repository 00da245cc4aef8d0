"""A plan as a readable table.

>>> from autosteer.spec.result import Placement, Plan
>>> p = Plan(application="demo", placements=(Placement("detect", "edge-1", 1, 25.0, 0.25,
...          rate=10.0),), latency_ms=25.0, objective_ms=25.0, solver="milp", optimal=True,
...          solve_s=0.01)
>>> print(render_table(p))
plan for demo: predicted latency 25.0 ms per item (milp, optimal, 0.01 s)
<BLANKLINE>
operator  node    consumers  service ms  busy  items/s
--------  ------  ---------  ----------  ----  -------
detect    edge-1          1       25.00  0.25    10.00
<BLANKLINE>
partitions per topic: 1
"""

from __future__ import annotations

from collections.abc import Sequence

from autosteer.spec.result import Plan


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to width; numbers right-aligned with two decimals."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [all(isinstance(r[c], int | float) for r in rows) if rows else False
               for c in range(len(header))]
    widths = [max([len(h)] + [len(r[c]) for r in cells]) for c, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    out = [line(header), line(["-" * w for w in widths])] + [line(r) for r in cells]
    return "\n".join(out)


def _cell(v: object) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def render_table(plan: Plan) -> str:
    """Operators with their nodes, node and link use, shares, moves and notes."""
    status = "optimal" if plan.optimal else "heuristic"
    out = [f"plan for {plan.application}: predicted latency {plan.latency_ms:.1f} ms per item "
           f"({plan.solver}, {status}, {plan.solve_s:.2f} s)", ""]
    out.append(table(["operator", "node", "consumers", "service ms", "busy", "items/s"],
                     [(p.operator, p.node + (" (gpu)" if p.gpu else ""), p.consumers,
                       p.service_ms, p.busy, p.rate) for p in plan.placements]))
    used = [n for n in plan.nodes if n.cpu > 0 or n.node in plan.down]
    if used:
        out += ["", table(["node", "reserved cores", "memory MB", "busy cores", "busy GPUs"],
                          [(n.node + (" (down)" if n.node in plan.down else ""),
                            f"{n.cpu:g}/{n.cpu_cap:g}", f"{n.memory_mb:g}/{n.memory_cap:g}",
                            n.busy_cpu, n.busy_gpu) for n in used])]
    if plan.links:
        out += ["", table(["link", "Mbit/s", "bandwidth"],
                          [(" - ".join(lk.between), lk.mbps, lk.bandwidth_mbps)
                           for lk in plan.links])]
    out.append("")
    for s in plan.shares:
        split = ", ".join(f"{t} {w:.0%}" for t, w in zip(s.targets, s.weights, strict=True))
        out.append(f"shares of {s.source} (flows[{s.flow}]): {split}")
    if plan.edge_ratio is not None:
        out.append(f"router edge ratio: {plan.edge_ratio:g}")
    out.append(f"partitions per topic: {plan.partitions}")
    if plan.moves:
        out.append(f"moved: {', '.join(plan.moves)}")
    if plan.derated:
        out.append("derated: " + ", ".join(f"{k} to {v:.0%}" for k, v in plan.derated.items()))
    out += [f"note: {n}" for n in plan.notes]
    return "\n".join(out)
