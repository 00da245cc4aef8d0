"""Root-cause accuracy on seeded fault cases over the real telemetry schema.

Each case simulates 8 cameras on 3 edge and 2 cloud nodes
(``autosteer.rootcause.simulate``: real WindowAggregator windows, sampled frame rows and
heartbeats), injects one fault (``autosteer.rootcause.faults``: node slowdown, link
degradation, camera failure, bad deploy, lighting change, memory leak), writes
everything through the real Sink into a fresh chdb database (one chdb session for the
run), runs the AnomalyMonitor over the same records in arrival order, and hands the
first anomaly after the fault's onset to RootCauseAnalyzer twice: with our RiskRanker
and with the naive ZScoreRanker (every slice and metric by plain z-score), on the same
data.

A cause is a triple (dimension, value, metric), e.g. ("node", "edge-2", "infer_ms"); a
case is right at k when its fault's expected triple (``Fault.cause``) is among the top
k. AC@k is the share of cases right at k; Avg@5 is the mean of AC@1..AC@5.

    python bench/rca.py            # 300 cases (50 per fault kind)
    python bench/rca.py --quick    # 36 cases (6 per kind)
    python bench/rca.py --mild     # the same 300 cases with faults of a third the size

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from autosteer.anomaly import Anomaly, AnomalyMonitor
from autosteer.rootcause import (
    FAULT_KINDS,
    RootCauseAnalyzer,
    Topology,
    ZScoreRanker,
    random_fault,
    simulate,
    write,
)
from autosteer.rootcause.simulate import Telemetry
from autosteer.telemetry.store import EmbeddedStore

T0 = 1_763_000_000_000
HISTORY_S = 720  # before the fault: detector warm-up and the RCA baseline
FAULT_S = 360
GRACE_MS = 1_000  # a window is published this long after it ends


def first_anomaly(tel: Telemetry, onset_ms: int) -> tuple[Anomaly | None, int]:
    """Feed windows and heartbeats to a monitor in publication order; return the first
    anomaly that ends after the onset, and how many opened before it (false alarms)."""
    events = [(w.ts_ms + w.window_s * 1000 + GRACE_MS, 0, i) for i, w in enumerate(tel.windows)]
    events += [(n.ts_ms, 1, i) for i, n in enumerate(tel.nodes)]
    monitor, early = AnomalyMonitor(), 0
    for _, kind, i in sorted(events):
        found = (monitor.update(tel.windows[i]) if kind == 0
                 else monitor.update_node(tel.nodes[i]))
        for a in found:
            if a.end_ms > onset_ms:
                return a, early
            early += 1
    return None, early


def rank_of(keys: list[tuple[str, str, str]], truth: tuple[str, str, str]) -> int | None:
    return keys.index(truth) + 1 if truth in keys else None


def run_case(i: int, kind: str, seed: int, store: EmbeddedStore,
             severity: tuple[float, float] = (0.3, 1.0)) -> dict:
    rng = random.Random(seed)
    topo = Topology()
    onset = T0 + HISTORY_S * 1000 + rng.randrange(0, 60_000)
    fault = random_fault(kind, topo, rng, onset, onset + 3_600_000, severity)
    tel = simulate(topo, [fault], start_ms=T0, seconds=HISTORY_S + FAULT_S, seed=seed)
    anomaly, early = first_anomaly(tel, onset)
    detected = anomaly is not None
    if anomaly is None:  # not detected: analyze the first minute of the fault
        anomaly = Anomaly(node="-", metric="-", detector="-", start_ms=onset,
                          end_ms=onset + 60_000, score=0.0, threshold=0.0)
    store.database = f"rca{i}"  # a fresh database per case, in one chdb session
    write(store, tel)
    ours = RootCauseAnalyzer(store).analyze(anomaly)
    naive = RootCauseAnalyzer(store, ranker=ZScoreRanker()).analyze(anomaly)
    store.query(f"DROP DATABASE {store.database}")
    return {"kind": kind, "variant": fault.variant, "truth": fault.cause, "detected": detected,
            "delay_s": (anomaly.end_ms - onset) / 1000 if detected else None,
            "early_alarms": early, "ours": rank_of([c.key for c in ours.causes], fault.cause),
            "naive": rank_of([c.key for c in naive.causes], fault.cause),
            "type_ok": ours.cause_type == fault.cause_type,
            "top": ours.causes[0].key if ours.causes else None,
            "naive_top": naive.causes[0].key if naive.causes else None}


def accuracy(ranks: list[int | None]) -> dict[str, float]:
    n = max(len(ranks), 1)
    ac = {k: sum(1 for r in ranks if r is not None and r <= k) / n for k in range(1, 6)}
    return {"ac1": ac[1], "ac3": ac[3], "avg5": sum(ac.values()) / 5}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="6 cases per fault kind")
    ap.add_argument("--per-kind", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mild", action="store_true",
                    help="severities in [0.1, 0.3] instead of [0.3, 1.0]: faults near the noise")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every miss")
    args = ap.parse_args()
    per_kind = args.per_kind or (6 if args.quick else 50)
    t0 = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="rca-bench-") as tmp:
        store = EmbeddedStore(Path(tmp) / "chdb", database="rca")  # chdb: one session
        try:
            for _ in range(per_kind):
                for kind in FAULT_KINDS:
                    i = len(results)
                    r = run_case(i, kind, args.seed * 100_003 + i, store,
                                 (0.1, 0.3) if args.mild else (0.3, 1.0))
                    results.append(r)
                    if args.verbose and r["ours"] != 1:
                        print(f"miss {kind}/{r['variant']}: truth {r['truth']} rank "
                              f"{r['ours']} top {r['top']}", file=sys.stderr)
        finally:
            store.close()
    by_kind = defaultdict(list)
    for r in results:
        by_kind[r["kind"]].append(r)
    print(f"{'fault':18} {'n':>3} {'AC@1':>6} {'AC@3':>6} {'Avg@5':>6} | {'naive AC@1':>10} "
          f"{'AC@3':>6} {'Avg@5':>6} | {'type':>5} {'detected':>8} {'delay s':>7}")
    for kind in [*FAULT_KINDS, "all"]:
        rs = results if kind == "all" else by_kind[kind]
        o, b = accuracy([r["ours"] for r in rs]), accuracy([r["naive"] for r in rs])
        delays = sorted(r["delay_s"] for r in rs if r["delay_s"] is not None)
        med = delays[len(delays) // 2] if delays else float("nan")
        print(f"{kind:18} {len(rs):3d} {o['ac1']:6.3f} {o['ac3']:6.3f} {o['avg5']:6.3f} | "
              f"{b['ac1']:10.3f} {b['ac3']:6.3f} {b['avg5']:6.3f} | "
              f"{sum(r['type_ok'] for r in rs) / len(rs):5.2f} "
              f"{sum(r['detected'] for r in rs) / len(rs):8.2f} {med:7.0f}")
    o, b = accuracy([r["ours"] for r in results]), accuracy([r["naive"] for r in results])
    summary = {
        "ac1": round(o["ac1"], 4), "ac3": round(o["ac3"], 4), "avg5": round(o["avg5"], 4),
        "baseline_ac1": round(b["ac1"], 4), "baseline_ac3": round(b["ac3"], 4),
        "baseline_avg5": round(b["avg5"], 4), "cases": len(results),
        "cause_type_accuracy": round(sum(r["type_ok"] for r in results) / len(results), 4),
        "detected": round(sum(r["detected"] for r in results) / len(results), 4),
        "early_alarms_per_case": round(sum(r["early_alarms"] for r in results) / len(results), 3),
        "per_kind_ac1": {k: round(accuracy([r["ours"] for r in v])["ac1"], 3)
                         for k, v in by_kind.items()},
        "per_kind_baseline_ac1": {k: round(accuracy([r["naive"] for r in v])["ac1"], 3)
                                  for k, v in by_kind.items()},
        "severity": [0.1, 0.3] if args.mild else [0.3, 1.0],
        "seconds": round(time.monotonic() - t0, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
