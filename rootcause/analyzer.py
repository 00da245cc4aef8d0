"""``RootCauseAnalyzer(store).analyze(anomaly) -> RootCause``.

On each anomaly: query the telemetry store for per-window sums of every metric per leaf
(node, camera, tier, model version) over the anomalous period and a baseline before it
(three read-only SELECTs, one per table), rank the candidate causes with a
:class:`~autosteer.rootcause.rankers.Ranker`, and attach to each cause a read-only SQL
that returns its baseline and anomalous numbers. Blocking (it queries the store): call
it from a thread pool in an agent.
"""

from __future__ import annotations

import logging

from autosteer.anomaly.records import Anomaly
from autosteer.rootcause.cube import Cube
from autosteer.rootcause.metrics import (
    FRAMES_TABLE,
    METRICS,
    NODES_TABLE,
    WINDOWS_TABLE,
    cause_type,
)
from autosteer.rootcause.queries import Periods, cube_sql, evidence_sql
from autosteer.rootcause.rankers import Candidate, Ranker, RiskRanker
from autosteer.rootcause.records import Cause, RootCause
from autosteer.telemetry.store import TelemetryStore

log = logging.getLogger(__name__)

TABLES = (WINDOWS_TABLE, FRAMES_TABLE, NODES_TABLE)


class RootCauseAnalyzer:
    """Rank the likely causes of an anomaly from the telemetry in ``store``.

    ``baseline_s`` of telemetry ending ``gap_s`` before the anomaly is the reference;
    the anomalous period is the anomaly's windows, at least ``min_anomaly_s`` long
    (counted back from its end). ``ranker`` defaults to :class:`RiskRanker`."""

    def __init__(self, store: TelemetryStore, ranker: Ranker | None = None,
                 baseline_s: int = 600, gap_s: int = 60, min_anomaly_s: int = 30) -> None:
        self.store = store
        self.ranker = ranker
        self.baseline_s = baseline_s
        self.gap_s = gap_s
        self.min_anomaly_s = min_anomaly_s

    def __repr__(self) -> str:
        return (f"RootCauseAnalyzer({self.store!r}, ranker={self.ranker!r}, "
                f"baseline_s={self.baseline_s}, gap_s={self.gap_s}, "
                f"min_anomaly_s={self.min_anomaly_s})")

    def periods(self, anomaly: Anomaly, until_ms: int | None = None) -> Periods:
        """The anomaly's windows, extended with the whole windows that ended by
        ``until_ms``. A window still open then, or not yet in the store, would read as
        silence (0 frames/s on every leaf): pass the time by which windows have landed."""
        window_s = anomaly.window_s or 10
        step = window_s * 1000
        until = (until_ms or 0) - (until_ms or 0) % step
        end = max(anomaly.end_ms, until)
        start = min(anomaly.start_ms, end - self.min_anomaly_s * 1000)
        return Periods.around(start, end, window_s=window_s,
                              baseline_s=self.baseline_s, gap_s=self.gap_s)

    def cube(self, periods: Periods) -> tuple[Cube, list[str]]:
        """Run the three cube queries (read-only); return the cube and the SQL."""
        cube, sqls = Cube(periods), []
        for table in TABLES:
            sql = cube_sql(self.store.database, table, periods)
            cols, rows = self.store.query(sql, readonly=True)
            cube.load(table, cols, rows)
            sqls.append(sql)
        return cube, sqls

    def analyze(self, anomaly: Anomaly, until_ms: int | None = None) -> RootCause:
        """Rank causes for ``anomaly``; ``until_ms`` extends its period with the later
        windows that ended by then (see :meth:`periods`)."""
        periods = self.periods(anomaly, until_ms)
        cube, sqls = self.cube(periods)
        ranker = self.ranker or RiskRanker()
        causes = [self._cause(i + 1, c, cube, periods) for i, c in enumerate(ranker.rank(cube))]
        log.info("root cause of %s: %s", anomaly.id,
                 ", ".join(f"{c.dimension}={c.value}/{c.metric}" for c in causes[:3]) or "none")
        return RootCause(
            anomaly_id=anomaly.id, database=self.store.database, start_ms=periods.start_ms,
            end_ms=periods.end_ms, baseline_start_ms=periods.baseline_start_ms,
            baseline_end_ms=periods.baseline_end_ms,
            cause_type=causes[0].cause_type if causes else "unknown", causes=causes,
            ranker=repr(ranker), sql=sqls)

    def _cause(self, rank: int, c: Candidate, cube: Cube, periods: Periods) -> Cause:
        metric = METRICS[c.metric]
        leaves = c.leaves or sorted(cube.slice_leaves(c.dimension, c.value, c.metric))
        tiers = {leaf[2] for leaf in leaves if leaf[2]}
        if metric.node_level:  # a node's tiers are those of the windows it produced
            tiers = {leaf[2] for leaf in cube.leaves("fps") if leaf[0] == c.value}
        sql = evidence_sql(self.store.database, metric, c.dimension, c.value, periods,
                           leaves=c.leaves, version=c.version)
        return Cause(rank=rank, dimension=c.dimension, value=c.value, metric=c.metric,
                     cause_type=cause_type(c.dimension, c.metric, tiers=tiers,
                                           new_version=c.new_version),
                     score=c.score, baseline=c.baseline, anomaly=c.anomaly,
                     evidence=c.evidence, same_as=list(c.same_as), sql=sql)
