"""Anomaly detection: a public data set, and injected faults in telemetry.

1. **Shuttle** (UCI Statlog Shuttle as river bundles it, offline: 49,097 points, 9
   features, 7 % anomalies). Prequential: each point is scored, then learned. ROC AUC
   over all scores (exact, scikit-learn). Anchor, same run, same points: river's
   ``MinMaxScaler() | HalfSpaceTrees()`` with its defaults, as in river's docs; also the
   same anchor with our tree count (25 trees, height 10), so the effect of the scaling
   is visible on its own. Measured: ``RobustHalfSpaceTrees``. Means over seeds.
2. **Events**: hours of simulated telemetry (``autosteer.rootcause.simulate``) with one
   fault every ~30 minutes (4 to 8 minutes long, the six kinds in turn) and the usual
   noise (load wave, scene drift, one-window GC pauses and CPU blips). Windows and
   heartbeats go to ``AnomalyMonitor`` in publication order. An alarm is an anomaly as
   it opens; it is true if it opens during a fault or up to 2 minutes after it ends.
   Recall: faults with a true alarm; precision: detected faults / (detected faults +
   false incidents), where false alarms less than 5 minutes apart are one incident;
   delay: from fault onset to its first alarm.

    python bench/anomaly.py            # full Shuttle x 3 seeds; 3 streams x 8 hours
    python bench/anomaly.py --quick    # 10,000 Shuttle points x 3 seeds; 1 stream x 3 hours

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable

from autosteer.anomaly import (
    AnomalyMonitor,
    RobustHalfSpaceTrees,
    Scorer,
    multivariate_detector,
)
from autosteer.rootcause import FAULT_KINDS, Topology, random_fault, simulate
from river import anomaly, datasets, preprocessing
from sklearn.metrics import roc_auc_score

T0 = 1_763_000_000_000
GRACE_MS = 1_000
LATE_MS = 120_000
INCIDENT_GAP_MS = 300_000


def prequential_auc(make: Callable[[int], Scorer], n: int, seeds: list[int]) -> list[float]:
    out = []
    for seed in seeds:
        model = make(seed)
        ys, scores = [], []
        for x, y in datasets.Shuttle().take(n):
            scores.append(model.score_one(x))
            model.learn_one(x)
            ys.append(y)
        out.append(float(roc_auc_score(ys, scores)))
    return out


def events(hours: float, seed: int, make_monitor: Callable[[], AnomalyMonitor] = AnomalyMonitor
           ) -> dict:
    rng = random.Random(seed)
    topo = Topology()
    faults, t = [], T0 + 20 * 60_000  # 20 minutes of warm-up first
    end = T0 + int(hours * 3_600_000)
    while True:
        start = t + rng.randrange(0, 10 * 60_000)
        stop = start + rng.randrange(4 * 60_000, 8 * 60_000)
        if stop > end - 5 * 60_000:
            break
        faults.append(random_fault(FAULT_KINDS[len(faults) % len(FAULT_KINDS)], topo, rng,
                                   start, stop))
        t = stop + 20 * 60_000
    tel = simulate(topo, faults, start_ms=T0, seconds=int(hours * 3600), seed=seed)
    feed = [(w.ts_ms + w.window_s * 1000 + GRACE_MS, 0, i) for i, w in enumerate(tel.windows)]
    feed += [(n.ts_ms, 1, i) for i, n in enumerate(tel.nodes)]
    monitor, alarms = make_monitor(), []
    for at, kind, i in sorted(feed):
        found = monitor.update(tel.windows[i]) if kind == 0 else monitor.update_node(tel.nodes[i])
        alarms += [at for _ in found]
    first: dict[int, int] = {}
    false_at = []
    for at in alarms:
        hit = [k for k, f in enumerate(faults) if f.start_ms <= at < f.end_ms + LATE_MS]
        for k in hit:
            first.setdefault(k, at)
        if not hit:
            false_at.append(at)
    incidents = sum(1 for i, at in enumerate(false_at)
                    if i == 0 or at - false_at[i - 1] > INCIDENT_GAP_MS)
    return {"faults": len(faults), "detected": len(first), "false_incidents": incidents,
            "alarms": len(alarms),
            "delays_s": [(at - faults[k].start_ms) / 1000 for k, at in first.items()],
            "missed": [f"{faults[k].kind}/{faults[k].variant}" for k in range(len(faults))
                       if k not in first]}


def score_events(runs: list[dict], hours: float, name: str) -> dict:
    faults = sum(r["faults"] for r in runs)
    detected = sum(r["detected"] for r in runs)
    false = sum(r["false_incidents"] for r in runs)
    delays = sorted(d for r in runs for d in r["delays_s"])
    precision = detected / (detected + false) if detected + false else 0.0
    recall = detected / faults if faults else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    median = statistics.median(delays) if delays else None
    print(f"Events, {name}: {faults} faults in {hours:g} h; detected {detected}, false "
          f"incidents {false}; precision {precision:.3f} recall {recall:.3f} F1 {f1:.3f}; "
          f"delay median {median if median is not None else float('nan'):.0f} s")
    missed = [m for r in runs for m in r["missed"]]
    if missed:
        print(f"  missed: {missed}")
    return {"event_precision": round(precision, 4), "event_recall": round(recall, 4),
            "event_f1": round(f1, 4), "faults": faults, "false_incidents": false,
            "false_incidents_per_hour": round(false / hours, 3), "delay_s_median": median,
            "delay_s_p90": delays[int(0.9 * (len(delays) - 1))] if delays else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    t0 = time.monotonic()
    n = 10_000 if args.quick else 49_097
    seeds = [1, 2, 3]
    ours = prequential_auc(lambda s: RobustHalfSpaceTrees(seed=s), n, seeds)
    hst = prequential_auc(lambda s: preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=s),
                          n, seeds)
    hst25 = prequential_auc(lambda s: preprocessing.MinMaxScaler()
                            | anomaly.HalfSpaceTrees(n_trees=25, height=10, seed=s), n, seeds)
    print(f"Shuttle, {n} points, seeds {seeds}: prequential ROC AUC")
    for name, aucs in (("RobustHalfSpaceTrees (ours)", ours), ("MinMax | HST (defaults)", hst),
                       ("MinMax | HST 25x10", hst25)):
        print(f"  {name:28} {statistics.mean(aucs):.4f}  {[round(a, 4) for a in aucs]}")
    streams = [(3.0, 11)] if args.quick else [(8.0, 11), (8.0, 12), (8.0, 13)]
    hours = sum(h for h, _ in streams)
    ev = score_events([events(h, s) for h, s in streams], hours, "robust per metric (default)")
    mv = score_events([events(h, s, lambda: AnomalyMonitor(univariate=None,
                                                          multivariate=multivariate_detector))
                       for h, s in streams], hours, "multivariate per series")
    print(json.dumps({
        "dataset": "river.datasets.Shuttle", "points": n, "seeds": seeds,
        "shuttle_auc": round(statistics.mean(ours), 4), "hst_auc": round(statistics.mean(hst), 4),
        "hst_same_size_auc": round(statistics.mean(hst25), 4),
        **ev, "multivariate_event_f1": mv["event_f1"],
        "multivariate_false_incidents_per_hour": mv["false_incidents_per_hour"],
        "seconds": round(time.monotonic() - t0, 1)}))


if __name__ == "__main__":
    main()
