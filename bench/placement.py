"""Placement planner against its anchors on seeded synthetic specs, in one run.

1. exact: tiny specs (10-12 operators, 5-6 nodes), where exhaustive search (depth-first
   with cost bounds) finds the optimum: the planner's gap to it.
2. scale: specs of 10-200 operators on 5-50 nodes: the planner (exact MILP within the
   time limit, greedy + local search past it) against the greedy baseline (each operator,
   in flow order, on the node that adds least cost, no local search).

Objectives are the planner's: predicted latency per input item (ms). Ratios below 1 mean
the planner is better than the anchor. Solve time is the planner's own, on this machine.

    python bench/placement.py            # full
    python bench/placement.py --quick    # CI-sized (< 1 min)

Last line: one JSON object with max_gap_vs_exact, median_ratio_vs_greedy, max_solve_s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from autosteer.spec.milp import exact_size
from autosteer.spec.placement import build_instance
from autosteer.spec.planner import plan
from autosteer.spec.search import solve_exhaustive, solve_greedy
from autosteer.spec.synthetic import random_spec

TINY = [(10, 5), (12, 6)]
SCALE = [(10, 5), (25, 8), (50, 10), (100, 20), (200, 50)]


def run_case(n_ops: int, n_nodes: int, seed: int, time_limit_s: float, exact: bool) -> dict:
    spec = random_spec(n_ops, n_nodes, seed)
    inst = build_instance(spec)
    started = time.perf_counter()
    p = plan(spec, time_limit_s=time_limit_s)
    wall = time.perf_counter() - started
    placed = [inst.nodes.index(p.assignment[o]) for o in inst.ops]
    assert inst.feasible(placed), inst.violations(placed)
    ours = inst.objective(placed)
    greedy = solve_greedy(inst, improve=False)
    row = {"ops": n_ops, "nodes": n_nodes, "seed": seed, "vars": exact_size(inst),
           "solver": p.solver, "optimal": p.optimal, "objective": round(ours, 3),
           "solve_s": round(p.solve_s, 3), "plan_s": round(wall, 3),
           "greedy": round(greedy.objective, 3) if greedy else None,
           "ratio_vs_greedy": round(ours / greedy.objective, 4) if greedy else None}
    if exact:
        t = time.perf_counter()
        best = solve_exhaustive(inst)
        row["exhaustive_s"] = round(time.perf_counter() - t, 3)
        row["exact"] = round(best.objective, 3) if best else None
        row["gap_vs_exact"] = round(ours / best.objective - 1, 6) if best else None
    return row


def show(row: dict) -> None:
    size = f"{row['ops']:>3} ops {row['nodes']:>2} nodes seed {row['seed']}"
    how = f"{row['solver']}{'*' if row['optimal'] else ' '}"
    exact = (f"  vs exact {row['gap_vs_exact']:+.2%} ({row['exhaustive_s']:.2f} s)"
             if "gap_vs_exact" in row else "")
    print(f"{size}  {how:7} {row['objective']:9.2f} ms  vs greedy "
          f"{row['ratio_vs_greedy']:.3f}{exact}  solve {row['solve_s']:.2f} s "
          f"(plan {row['plan_s']:.2f} s, {row['vars']} vars)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--time-limit", type=float, default=None, help="planner time limit (s)")
    args = ap.parse_args()
    q = args.quick
    limit = args.time_limit or (3.0 if q else 10.0)
    tiny_seeds = range(3 if q else 8)
    scale_seeds = range(1 if q else 2)
    print(f"# planner time limit {limit:g} s; * = proven optimal")
    rows = []
    for n, m in TINY:
        for s in tiny_seeds:
            r = run_case(n, m, s, limit, exact=True)
            show(r)
            rows.append(r)
    for n, m in SCALE:
        for s in scale_seeds:
            r = run_case(n, m, 100 + s, limit, exact=False)
            show(r)
            rows.append(r)
    gaps = [r["gap_vs_exact"] for r in rows if r.get("gap_vs_exact") is not None]
    ratios = [r["ratio_vs_greedy"] for r in rows if r["ratio_vs_greedy"] is not None]
    by_size = {f"{n}x{m}": round(statistics.median(
        r["ratio_vs_greedy"] for r in rows if (r["ops"], r["nodes"]) == (n, m)
        and "gap_vs_exact" not in r), 4) for n, m in SCALE}
    out = {"bench": "placement", "quick": q, "time_limit_s": limit, "cases": len(rows),
           "exact_cases": len(gaps), "max_gap_vs_exact": round(max(gaps), 6),
           "median_ratio_vs_greedy": round(statistics.median(ratios), 4),
           "median_ratio_vs_greedy_by_size": by_size,
           "max_solve_s": round(max(r["solve_s"] for r in rows), 3),
           "max_plan_s": round(max(r["plan_s"] for r in rows), 3),
           "proven_optimal": sum(r["optimal"] for r in rows)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
