"""The read-only SQL of root-cause analysis (valid on ClickHouse 18.16 and current chdb).

Two kinds of query:

- **cube** queries: per 10 s bucket and per leaf (node, camera, tier, model version), the
  sums every metric needs, from one telemetry table;
- **evidence** queries: one row, ``baseline`` and ``anomaly``, a cause's metric over its
  slice in the two periods. They are in the :class:`~autosteer.rootcause.RootCause`
  so a person can re-run them with ``autosteer sql``.

Only plain SQL both versions run: integer bucketing (``intDiv``), ``sumIf``, array
lambdas, tuple ``IN``; aliases never equal a column name.

>>> p = Periods.around(1_000_005_000, 1_000_031_000, window_s=10, baseline_s=60, gap_s=20)
>>> (p.baseline_start_ms, p.baseline_end_ms, p.start_ms, p.end_ms), p.seconds("anomaly")
((999920000, 999980000, 1000000000, 1000040000), 40.0)
>>> print(evidence_sql("db", METRICS["fps"], "camera", "cam3", p))
SELECT sumIf(frames, ts_ms >= 999920000 AND ts_ms < 999980000) / 60 AS baseline,
       sumIf(frames, ts_ms >= 1000000000 AND ts_ms < 1000040000) / 40 AS anomaly
FROM db.telemetry_windows
WHERE camera = 'cam3' AND ts_ms >= 999920000 AND ts_ms < 1000040000
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autosteer.rootcause.metrics import METRICS, NODES_TABLE, Metric

Leaf = tuple[str, str, str]  # node, camera, tier


@dataclass(frozen=True)
class Periods:
    """The anomalous period and the baseline before it, aligned to windows (epoch ms)."""

    baseline_start_ms: int
    baseline_end_ms: int
    start_ms: int
    end_ms: int
    window_s: int = 10

    @classmethod
    def around(cls, start_ms: int, end_ms: int, *, window_s: int = 10, baseline_s: int = 600,
               gap_s: int = 20) -> Periods:
        """``[start, end)`` widened to whole windows; the baseline is the ``baseline_s``
        before it, ending ``gap_s`` before the anomaly (the onset can precede detection)."""
        step = window_s * 1000
        a0 = start_ms - start_ms % step
        a1 = max(-(-end_ms // step) * step, a0 + step)
        b1 = a0 - -(-gap_s * 1000 // step) * step
        b0 = b1 - max(-(-baseline_s * 1000 // step), 2) * step
        return cls(b0, b1, a0, a1, window_s)

    @property
    def step_ms(self) -> int:
        return self.window_s * 1000

    def bounds(self, period: str) -> tuple[int, int]:
        if period == "baseline":
            return self.baseline_start_ms, self.baseline_end_ms
        if period == "anomaly":
            return self.start_ms, self.end_ms
        raise ValueError(f"period must be 'baseline' or 'anomaly'; got {period!r}")

    def which(self, bucket_ms: int) -> str | None:
        if self.baseline_start_ms <= bucket_ms < self.baseline_end_ms:
            return "baseline"
        if self.start_ms <= bucket_ms < self.end_ms:
            return "anomaly"
        return None

    def buckets(self, period: str) -> range:
        lo, hi = self.bounds(period)
        return range(lo, hi, self.step_ms)

    def seconds(self, period: str) -> float:
        lo, hi = self.bounds(period)
        return (hi - lo) / 1000

    def condition(self, period: str) -> str:
        lo, hi = self.bounds(period)
        return f"ts_ms >= {lo} AND ts_ms < {hi}"


def quote(value: str) -> str:
    """A ClickHouse string literal.

    >>> quote("it's")
    "'it\\\\'s'"
    """
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cube_sql(database: str, table: str, periods: Periods) -> str:
    """Per bucket and leaf, the numerator and denominator sums of every metric of ``table``."""
    metrics = [m for m in METRICS.values() if m.table == table]
    keys = ["node"] if table == NODES_TABLE else ["node", "camera", "tier", "model_version"]
    sums = []
    for m in metrics:
        sums.append(f"sum({m.num}) AS {m.name}_num")
        if m.den is not None:
            sums.append(f"count() AS {m.name}_den" if m.den == "1" else
                        f"sum({m.den}) AS {m.name}_den")
    step = periods.step_ms
    cols = ", ".join(keys)
    return (f"SELECT intDiv(ts_ms, {step}) * {step} AS bucket_ms, {cols},\n       "
            + ",\n       ".join(sums)
            + f"\nFROM {database}.{table}\n"
            f"WHERE ts_ms >= {periods.baseline_start_ms} AND ts_ms < {periods.end_ms}\n"
            f"GROUP BY bucket_ms, {cols}\nORDER BY bucket_ms, {cols}")


def slice_filter(dimension: str, value: str, leaves: Sequence[Leaf] | None = None) -> str:
    """``dimension = value``, or, given ``leaves``, the rows of exactly those leaves."""
    if leaves is None:
        return f"{dimension} = {quote(value)}"
    items = ", ".join("(" + ", ".join(quote(p) for p in leaf) + ")" for leaf in sorted(leaves))
    return f"(node, camera, tier) IN ({items})"


def evidence_sql(database: str, metric: Metric, dimension: str, value: str, periods: Periods,
                 leaves: Sequence[Leaf] | None = None, version: str | None = None) -> str:
    """One row: ``baseline`` and ``anomaly`` values of ``metric`` over one slice.

    ``leaves`` and ``version`` describe a model-version slice by the leaves that run
    ``version`` now: their rows in the baseline (whatever version they ran then) against
    their rows of ``version`` in the anomalous period."""
    cond = {p: periods.condition(p) for p in ("baseline", "anomaly")}
    if version is not None:
        cond["anomaly"] += f" AND model_version = {quote(version)}"
    cols = []
    for period in ("baseline", "anomaly"):
        num = f"sumIf({metric.num}, {cond[period]})"
        if metric.den is None:
            den = f"{periods.seconds(period):g}"
        elif metric.den == "1":
            den = f"countIf({cond[period]})"
        else:
            den = f"sumIf({metric.den}, {cond[period]})"
        cols.append(f"{num} / {den} AS {period}")
    return (f"SELECT {cols[0]},\n       {cols[1]}\nFROM {database}.{metric.table}\n"
            f"WHERE {slice_filter(dimension, value, leaves)} AND ts_ms >= "
            f"{periods.baseline_start_ms} AND ts_ms < {periods.end_ms}")
