"""Streaming anomaly detection over telemetry series.

- scorers (river's ``learn_one`` / ``score_one``): :class:`RobustZScore` (median and
  robust sigma per metric) and :class:`RobustHalfSpaceTrees` (multivariate);
  :class:`Calibrated` turns any scorer's score into robust sigmas of its own history;
- :class:`Alarm`: a scorer with warm-up and hysteresis (``update(x)`` then
  ``is_anomaly`` / ``started``);
- :class:`AnomalyMonitor`: one detector per (node, camera, tier, metric); consumes
  ``WindowRecord`` and ``NodeRecord`` and returns :class:`Anomaly` records.
"""

from autosteer.anomaly.alarm import Alarm
from autosteer.anomaly.base import Scorer
from autosteer.anomaly.features import (
    NODE_METRICS,
    WINDOW_METRICS,
    SeriesKey,
    node_features,
    window_features,
)
from autosteer.anomaly.hst import RobustHalfSpaceTrees
from autosteer.anomaly.monitor import AnomalyMonitor, multivariate_detector, robust_detector
from autosteer.anomaly.records import Anomaly
from autosteer.anomaly.robust import Calibrated, RobustZScore
from autosteer.anomaly.rolling import RollingSample

__all__ = [
    "NODE_METRICS",
    "WINDOW_METRICS",
    "Anomaly",
    "Alarm",
    "AnomalyMonitor",
    "Calibrated",
    "RobustHalfSpaceTrees",
    "RobustZScore",
    "RollingSample",
    "Scorer",
    "SeriesKey",
    "multivariate_detector",
    "node_features",
    "robust_detector",
    "window_features",
]
