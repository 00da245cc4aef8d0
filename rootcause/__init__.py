"""Root-cause analysis of anomalies over the ClickHouse telemetry.

- :class:`RootCauseAnalyzer`: ``analyze(anomaly) -> RootCause`` (queries a telemetry store);
- rankers behind one interface (``rank(cube) -> list[Candidate]``): :class:`RiskRanker`
  (ours) and :class:`ZScoreRanker` (the naive baseline);
- records: :class:`RootCause` with ranked :class:`Cause` s, their evidence and SQL;
- a fault injector and telemetry simulator for benchmarks and tests.
"""

from autosteer.rootcause.analyzer import RootCauseAnalyzer
from autosteer.rootcause.cube import Cube
from autosteer.rootcause.faults import FAULT_KINDS, Fault, Topology, random_fault
from autosteer.rootcause.metrics import METRICS, CauseType, Metric, cause_type
from autosteer.rootcause.queries import Periods, cube_sql, evidence_sql
from autosteer.rootcause.rankers import Candidate, Ranker, RiskRanker, ZScoreRanker
from autosteer.rootcause.records import Cause, RootCause
from autosteer.rootcause.simulate import Telemetry, simulate, write

__all__ = [
    "FAULT_KINDS",
    "METRICS",
    "Candidate",
    "Cause",
    "CauseType",
    "Cube",
    "Fault",
    "Metric",
    "Periods",
    "Ranker",
    "RiskRanker",
    "RootCause",
    "RootCauseAnalyzer",
    "Telemetry",
    "Topology",
    "ZScoreRanker",
    "cause_type",
    "cube_sql",
    "evidence_sql",
    "random_fault",
    "simulate",
    "write",
]
