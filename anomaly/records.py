"""The anomaly record: what a detector found, on which series, over which windows.

It is a :class:`~autosteer.topics.records.Record` (strict JSON in and out), ready to
become a topic's contract.

>>> a = Anomaly(node="edge-2", camera="cam1", tier="edge", metric="infer_ms",
...             detector="RobustZScore", start_ms=1_000_000, end_ms=1_030_000, window_s=10,
...             score=9.5, threshold=5.0, metrics=["infer_ms"], values={"infer_ms": 81.0},
...             baseline={"infer_ms": 40.2})
>>> a.id
'edge-2/cam1/edge/infer_ms@1000000'
>>> Anomaly.parse(a.dumps()) == a
True
"""

from __future__ import annotations

from autosteer.topics.records import Record
from pydantic import Field


class Anomaly(Record):
    """A sustained anomaly on one series. Key: node."""

    node: str
    camera: str = Field("", description="camera of the series; empty for a node's heartbeat series")
    tier: str = Field("", description="edge or cloud; empty for a node's heartbeat series")
    metric: str = Field(description="the series' metric, or '*' for a multivariate detector "
                        "over all of the series' metrics")
    detector: str = Field(description="the scorer's class name, e.g. RobustZScore")
    start_ms: int = Field(description="start of the first anomalous window (epoch ms)")
    end_ms: int = Field(description="end of the last window seen when the anomaly opened "
                        "(epoch ms, exclusive)")
    window_s: int = Field(10, description="window length in seconds")
    score: float = Field(description="the detector's score on the last window")
    threshold: float = Field(description="the score at or above which a window is anomalous")
    metrics: list[str] = Field(default_factory=list, description="metrics involved: those "
                               "whose robust z on the last window is at or above the threshold "
                               "(or the largest, if none is)")
    values: dict[str, float] = Field(default_factory=dict, description="last window's value "
                                     "of each involved metric")
    baseline: dict[str, float] = Field(default_factory=dict, description="rolling median of "
                                       "each involved metric before the anomaly")

    @property
    def id(self) -> str:
        """Stable id: ``node/camera/tier/metric@start_ms``."""
        return f"{self.node}/{self.camera}/{self.tier}/{self.metric}@{self.start_ms}"
