"""The one interface every anomaly scorer follows: river's ``learn_one`` / ``score_one``.

A scorer maps a dict of numbers to an anomaly score (higher = stranger) and learns
from dicts it is shown. river's own detectors (``river.anomaly.HalfSpaceTrees``) fit
as they are, so any of them can sit inside a :class:`~autosteer.anomaly.Alarm`.

>>> from river import anomaly
>>> isinstance(anomaly.HalfSpaceTrees(), Scorer)
True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

Features = dict[str, float]


@runtime_checkable
class Scorer(Protocol):
    """Something that learns online and scores how unusual a point is."""

    def learn_one(self, x: Features) -> None:
        """Update the model with one point (returns nothing, as in river)."""

    def score_one(self, x: Features) -> float:
        """Anomaly score of ``x``; higher means more anomalous."""
