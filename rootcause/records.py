"""The root-cause record: ranked causes, their numbers, and the SQL that shows them.

>>> c = Cause(rank=1, dimension="node", value="edge-2", metric="infer_ms",
...           cause_type="node_overload", score=0.93, baseline=41.0, anomaly=88.5,
...           sql="SELECT 1 AS baseline, 2 AS anomaly")
>>> c.key, c.change
(('node', 'edge-2', 'infer_ms'), 2.158...)
>>> RootCause.parse(RootCause(anomaly_id="a", database="db", start_ms=0, end_ms=1,
...     baseline_start_ms=0, baseline_end_ms=0, cause_type="unknown",
...     ranker="RiskRanker()").dumps()).causes
[]
"""

from __future__ import annotations

from typing import Literal

from autosteer.rootcause.metrics import CauseType
from autosteer.topics.records import Record
from pydantic import Field


class Cause(Record):
    """One candidate cause: the rows of ``dimension = value`` got worse in ``metric``."""

    rank: int = Field(ge=1, description="1 = most likely")
    dimension: Literal["node", "camera", "tier", "model_version"]
    value: str
    metric: str = Field(description="e.g. infer_ms, queue_ms, fps, score, host_cpu_percent")
    cause_type: CauseType
    score: float = Field(description="the ranker's score (RiskRanker: 0..1)")
    baseline: float | None = Field(description="the metric over the slice in the baseline "
                                   "period: the first column `sql` returns")
    anomaly: float | None = Field(description="the metric over the slice in the anomalous "
                                  "period: the second column `sql` returns")
    evidence: dict[str, float] = Field(default_factory=dict, description="the ranker's "
                                       "numbers: z, explained, purity, rootness, ...")
    same_as: list[str] = Field(default_factory=list, description="other slices with exactly "
                               "the same rows, e.g. ['tier=cloud']")
    sql: str = Field(description="read-only SELECT returning one row (baseline, anomaly)")

    @property
    def key(self) -> tuple[str, str, str]:
        """The cause as scored by ``bench/rca.py``: (dimension, value, metric)."""
        return self.dimension, self.value, self.metric

    @property
    def change(self) -> float | None:
        """anomaly / baseline (None when either is missing or the baseline is 0)."""
        if self.baseline is None or self.anomaly is None or self.baseline == 0:
            return None
        return self.anomaly / self.baseline


class RootCause(Record):
    """The analysis of one anomaly. Key: the anomaly's node."""

    anomaly_id: str
    database: str
    start_ms: int = Field(description="anomalous period start (epoch ms, window-aligned)")
    end_ms: int = Field(description="anomalous period end (exclusive)")
    baseline_start_ms: int
    baseline_end_ms: int = Field(description="baseline end (exclusive); a gap may separate "
                                 "it from start_ms")
    cause_type: CauseType = Field(description="the top cause's type")
    causes: list[Cause] = Field(default_factory=list, description="best first")
    ranker: str = Field(description="repr of the ranker that scored the causes")
    sql: list[str] = Field(default_factory=list, description="the read-only queries the "
                           "analysis ran (per-window sums per leaf)")
