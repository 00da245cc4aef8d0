"""Per-window sums of every metric for each leaf, rolled up to any slice in Python.

A *leaf* is one (node, camera, tier) stream; its rows also carry the model version
they ran. A *slice* is a set of leaves: ``node = 'edge-2'``, ``camera = 'cam3'``,
``tier = 'cloud'`` or ``model_version = '1.5'``. Because every metric is a ratio of
sums, a slice's value in a window is the ratio of its leaves' summed sums: exact.

>>> p = Periods(0, 20_000, 30_000, 40_000, window_s=10)
>>> cube = Cube(p)
>>> for bucket, frames in [(0, 20), (10_000, 20), (30_000, 5)]:
...     cube.add("fps", ("edge-1", "cam1", "edge"), "1", bucket, frames, 0.0)
>>> leaves = cube.slice_leaves("camera", "cam1", "fps")
>>> cube.series("fps", leaves, "baseline"), cube.series("fps", leaves, "anomaly")
([2.0, 2.0], [0.5])
>>> cube.pooled("fps", leaves, "baseline"), cube.pooled("fps", leaves, "anomaly")
(2.0, 0.5)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from autosteer.rootcause.metrics import METRICS, NODES_TABLE
from autosteer.rootcause.queries import Leaf, Periods

CellKey = tuple[str, int]  # model version ('' for heartbeats), bucket start (epoch ms)
DIMENSION_INDEX = {"node": 0, "camera": 1, "tier": 2}


class SliceStats(NamedTuple):
    series: list[float]  # value per window
    value: float | None  # pooled over the period
    num: float
    den: float


class Cube:
    """Sums (numerator, denominator) per metric, leaf, model version and window."""

    def __init__(self, periods: Periods) -> None:
        self.periods = periods
        # metric -> leaf -> period -> (version, bucket) -> [num, den]
        self._cells: dict[str, dict[Leaf, dict[str, dict[CellKey, list[float]]]]] = {
            m: {} for m in METRICS}

    def add(self, metric: str, leaf: Leaf, version: str, bucket_ms: int, num: float,
            den: float) -> None:
        period = self.periods.which(bucket_ms)
        if period is None:
            return
        cells = self._cells[metric].setdefault(leaf, {"baseline": {}, "anomaly": {}})[period]
        cell = cells.setdefault((version, bucket_ms), [0.0, 0.0])
        cell[0] += num
        cell[1] += den

    def load(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Add the rows of a :func:`~autosteer.rootcause.queries.cube_sql` query on ``table``."""
        idx = {c: i for i, c in enumerate(columns)}
        metrics = [m for m in METRICS.values() if m.table == table]
        for row in rows:
            bucket = int(row[idx["bucket_ms"]])
            if table == NODES_TABLE:
                leaf, version = (str(row[idx["node"]]), "", ""), ""
            else:
                leaf = (str(row[idx["node"]]), str(row[idx["camera"]]), str(row[idx["tier"]]))
                version = str(row[idx["model_version"]])
            for m in metrics:
                num = _number(row[idx[f"{m.name}_num"]])
                den = _number(row[idx[f"{m.name}_den"]]) if m.den is not None else 0.0
                self.add(m.name, leaf, version, bucket, num, den)

    def leaves(self, metric: str) -> list[Leaf]:
        return sorted(self._cells[metric])

    def versions(self, leaf: Leaf, period: str) -> set[str]:
        """Model versions ``leaf`` ran in ``period`` (from the window rows)."""
        cells = self._cells["fps"].get(leaf)
        return {v for v, _ in cells[period]} if cells else set()

    def slice_values(self, dimension: str, metric: str, period: str | None = None) -> list[str]:
        """Values of ``dimension`` seen with data for ``metric`` (in ``period``, if given)."""
        out: set[str] = set()
        for leaf, by_period in self._cells[metric].items():
            for p in (period,) if period else ("baseline", "anomaly"):
                if dimension == "model_version":
                    out.update(v for v, _ in by_period[p])
                elif by_period[p]:
                    out.add(leaf[DIMENSION_INDEX[dimension]])
        return sorted(out)

    def slice_leaves(self, dimension: str, value: str, metric: str,
                     period: str | None = None) -> frozenset[Leaf]:
        """Leaves of the slice ``dimension = value`` (for a model version: the leaves that
        ran it, in ``period`` if given)."""
        if dimension == "model_version":
            periods = (period,) if period else ("baseline", "anomaly")
            return frozenset(leaf for leaf, by_period in self._cells[metric].items()
                             if any(v == value for p in periods for v, _ in by_period[p]))
        i = DIMENSION_INDEX[dimension]
        return frozenset(leaf for leaf in self._cells[metric] if leaf[i] == value)

    def totals(self, metric: str, leaves: Iterable[Leaf], period: str,
               version: str | None = None) -> dict[int, list[float]]:
        """Per window of ``period``: the summed (numerator, denominator) of ``leaves``."""
        out: dict[int, list[float]] = {}
        cells = self._cells[metric]
        for leaf in leaves:
            by_period = cells.get(leaf)
            if by_period is None:
                continue
            for (v, bucket), (num, den) in by_period[period].items():
                if version is not None and v != version:
                    continue
                acc = out.get(bucket)
                if acc is None:
                    out[bucket] = [num, den]
                else:
                    acc[0] += num
                    acc[1] += den
        return out

    def stats(self, metric: str, leaves: Iterable[Leaf], period: str,
              version: str | None = None) -> SliceStats:
        """A slice over one period: per-window values, pooled value and summed mass."""
        tot = self.totals(metric, leaves, period, version)
        num = sum(v[0] for v in tot.values())
        den = sum(v[1] for v in tot.values())
        if METRICS[metric].den is None:
            w = self.periods.window_s
            series = [tot[b][0] / w if b in tot else 0.0 for b in self.periods.buckets(period)]
            return SliceStats(series, num / self.periods.seconds(period), num, den)
        series = [n / d for _, (n, d) in sorted(tot.items()) if d > 0]
        return SliceStats(series, num / den if den > 0 else None, num, den)

    def series(self, metric: str, leaves: Iterable[Leaf], period: str,
               version: str | None = None) -> list[float]:
        """The slice's value in each window of ``period`` (a rate is 0 in a silent window;
        a ratio skips windows with no denominator)."""
        return self.stats(metric, leaves, period, version).series

    def pooled(self, metric: str, leaves: Iterable[Leaf], period: str,
               version: str | None = None) -> float | None:
        """The slice's value over the whole period (what the evidence SQL returns)."""
        return self.stats(metric, leaves, period, version).value


def _number(v: Any) -> float:
    """chdb returns NaN and infinities as null; sums of nothing are 0."""
    return 0.0 if v is None else float(v)
