"""Rankers: score every (slice, metric) candidate cause from a :class:`Cube`.

One narrow interface, ``rank(cube) -> list[Candidate]`` (best first), two rankers:

- :class:`RiskRanker` (ours): multi-dimensional localization in the manner of
  Adtributor and RiskLoc, on robust (BARO-style) per-window scores, with the pipeline's
  metric graph deciding which of the metrics that moved is the root;
- :class:`ZScoreRanker` (the naive baseline): every slice and metric by the plain
  z-score of its anomalous mean against its baseline windows.

A candidate is a triple (dimension, value, metric), e.g. ``("node", "edge-2",
"infer_ms")``: "the rows of node edge-2 got worse in model time".
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from autosteer.rootcause.cube import Cube
from autosteer.rootcause.metrics import DIMENSIONS, METRICS, Metric
from autosteer.rootcause.queries import Leaf

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Candidate:
    """One scored cause: the rows of ``dimension = value`` moved in ``metric``."""

    dimension: str
    value: str
    metric: str
    score: float
    baseline: float | None
    anomaly: float | None
    evidence: dict[str, float] = field(default_factory=dict)
    leaves: tuple[Leaf, ...] | None = None  # set: the slice is exactly these leaves
    version: str | None = None  # set: anomalous-period rows of this model version only
    new_version: bool = False
    same_as: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        return self.dimension, self.value, self.metric


class Ranker(Protocol):
    def rank(self, cube: Cube) -> list[Candidate]:
        """Candidates, best first."""


def robust_z(baseline: Sequence[float], anomaly: Sequence[float], *, rel_floor: float = 0.01,
             abs_floor: float = 1e-9) -> float:
    """How unusual the median of ``anomaly`` is among medians of equally long stretches
    of ``baseline``: (median - centre) / robust sigma of the stretch medians.

    Comparing like with like makes the score honest for series that wander (people
    counts over a day, a load wave): their stretch medians spread, white noise's do not.

    >>> noise = [10.9, 8.6, 9.3, 10.4, 9.0, 9.9, 10.2, 9.2, 8.7, 10.2, 11.0, 9.4, 9.7, 11.6]
    >>> round(robust_z(noise, [13.0, 13.5, 12.5]), 1)
    5.6
    >>> wander = [10, 11, 12, 13, 14, 15, 16, 15, 14, 13, 12, 11, 10, 11]
    >>> round(robust_z(wander, [13.0, 13.5, 12.5]), 1)
    0.0
    >>> robust_z([], [1.0])
    0.0
    """
    m = len(anomaly)
    if not baseline or not m:
        return 0.0
    if len(baseline) >= m + 4:
        blocks = [statistics.median(baseline[i:i + m]) for i in range(len(baseline) - m + 1)]
    else:
        blocks = list(baseline)
    med = statistics.median(blocks)
    mad = statistics.median(abs(v - med) for v in blocks) * MAD_TO_SIGMA
    sigma = max(mad, rel_floor * abs(med), abs_floor)
    return (statistics.median(anomaly) - med) / sigma


def plain_z(baseline: Sequence[float], anomaly: Sequence[float]) -> float:
    """(mean of ``anomaly`` - mean of ``baseline``) / standard deviation of ``baseline``."""
    if len(baseline) < 2 or not anomaly:
        return 0.0
    sd = statistics.pstdev(baseline)
    mean = statistics.fmean(baseline)
    return (statistics.fmean(anomaly) - mean) / max(sd, 1e-9 * abs(mean), 1e-12)


def _seen_in(metric: Metric) -> str | None:
    """Slices worth scoring have data in the anomalous period, except for a rate: a
    camera that went silent has rows only in the baseline."""
    return None if metric.den is None else "anomaly"


def _label(dimension: str, value: str) -> str:
    return f"{dimension}={value}"


class ZScoreRanker:
    """The naive baseline: every plain slice ``dimension = value`` and metric, by ``|z|``."""

    def __init__(self, top: int = 10) -> None:
        self.top = top

    def __repr__(self) -> str:
        return f"ZScoreRanker(top={self.top})"

    def rank(self, cube: Cube) -> list[Candidate]:
        out = []
        for metric in METRICS.values():
            for dimension in (("node",) if metric.node_level else DIMENSIONS):
                for value in cube.slice_values(dimension, metric.name, _seen_in(metric)):
                    plain = dimension == "model_version"
                    leaves = cube.slice_leaves(dimension, value, metric.name)
                    version = value if plain else None
                    base = cube.stats(metric.name, leaves, "baseline", version)
                    anom = cube.stats(metric.name, leaves, "anomaly", version)
                    # no rows in the baseline: no z (a new version's frame rate is not news)
                    z = plain_z(base.series, anom.series) if base.num or base.den else 0.0
                    out.append(Candidate(dimension, value, metric.name, abs(z), base.value,
                                         anom.value, {"z": z}))
        out.sort(key=lambda c: -c.score)
        return out[:self.top]


class RiskRanker:
    """Localize, then pick the root metric.

    For each metric, every leaf gets a robust z (median of its anomalous windows against
    its baseline windows, in the direction that is worse) and a *contribution* (how much
    of the slice-wide worsening it carries). Each slice is scored

        score = explained x purity x significance x rootness

    - *explained* (Adtributor's explanatory power): the slice's share of all positive
      contributions;
    - *purity* (RiskLoc's risk): the share of the slice's volume in anomalous leaves
      (each leaf counts ``min(1, z / leaf_z)``), so a tier does not win over the one node
      inside it that moved;
    - *significance*: ``z / (z + half_z)`` of the slice's own robust z;
    - *rootness*: 1, or down to ``1 - parent_discount`` where the slice's contribution
      sits in leaves where a parent metric (``Metric.parents``) is anomalous too.

    A model version seen in the anomalous period but not in the baseline is a deploy: its
    slice is the leaves that run it now, compared with what those leaves did before.
    Slices holding exactly the same leaves (for a ratio metric: the same leaves with rows
    in both periods) are one candidate, named by the new version, else by the metric's
    home dimension; the others are listed in ``same_as``.
    """

    def __init__(self, leaf_z: float = 3.0, half_z: float = 10.0, parent_discount: float = 0.75,
                 top: int = 10) -> None:
        self.leaf_z = leaf_z
        self.half_z = half_z
        self.parent_discount = parent_discount
        self.top = top

    def __repr__(self) -> str:
        return (f"RiskRanker(leaf_z={self.leaf_z}, half_z={self.half_z}, "
                f"parent_discount={self.parent_discount}, top={self.top})")

    def rank(self, cube: Cube) -> list[Candidate]:
        leaf_stats = {m: self._leaves(cube, METRICS[m]) for m in METRICS}
        out: list[Candidate] = []
        for metric in METRICS.values():
            out += self._slices(cube, metric, leaf_stats)
        out.sort(key=lambda c: (-c.score, c.key))
        return out[:self.top]

    def _leaves(self, cube: Cube, m: Metric) -> dict[Leaf, tuple[float, float, float]]:
        """Per leaf: (robust z, contribution, volume), worse-oriented."""
        both = {leaf: (cube.stats(m.name, [leaf], "baseline"),
                       cube.stats(m.name, [leaf], "anomaly")) for leaf in cube.leaves(m.name)}
        total_den = sum(a.den for _, a in both.values())
        out = {}
        for leaf, (b, a) in both.items():
            if not b.series or not a.series or b.value is None or a.value is None:
                continue
            z = m.worse * robust_z(b.series, a.series, rel_floor=m.rel_floor)
            if m.den is None:  # a rate: contribution in units per second
                contribution, volume = m.worse * (a.value - b.value), b.value
            else:
                share = a.den / total_den if total_den > 0 else 0.0
                contribution = m.worse * (a.value - b.value) * share
                volume = (b.den / cube.periods.seconds("baseline")
                          + a.den / cube.periods.seconds("anomaly"))
            out[leaf] = (z, contribution, volume)
        return out

    def _weight(self, stat: tuple[float, float, float]) -> float:
        """How anomalous a leaf is, 0..1: 1 at ``z >= leaf_z``, ``(z / leaf_z) ** 4`` below,
        0 if it did not get worse."""
        return min(1.0, max(0.0, stat[0]) / self.leaf_z) ** 4 if stat[1] > 0 else 0.0

    def _anomalous(self, stats: dict[Leaf, tuple[float, float, float]], leaf: Leaf) -> bool:
        s = stats.get(leaf)
        return s is not None and s[0] >= self.leaf_z and s[1] > 0

    def _parent_hot(self, m: Metric, leaf: Leaf,
                    leaf_stats: dict[str, dict[Leaf, tuple[float, float, float]]]) -> bool:
        for p in m.parents:
            key = (leaf[0], "", "") if METRICS[p].node_level else leaf
            if self._anomalous(leaf_stats[p], key):
                return True
        return False

    def _slices(self, cube: Cube, m: Metric,
                leaf_stats: dict[str, dict[Leaf, tuple[float, float, float]]]) -> list[Candidate]:
        stats = leaf_stats[m.name]
        positive = sum(max(0.0, c) for _, c, _ in stats.values())
        if positive <= 0:
            return []
        groups: dict[frozenset[Leaf], list[Candidate]] = {}
        for dimension in (("node",) if m.node_level else DIMENSIONS):
            for value in cube.slice_values(dimension, m.name, _seen_in(m)):
                period = "anomaly" if dimension == "model_version" else None
                leaves = cube.slice_leaves(dimension, value, m.name, period)
                version = value if dimension == "model_version" else None
                new = version is not None and not any(
                    version in cube.versions(leaf, "baseline") for leaf in cube.leaves("fps"))
                cand = self._score(cube, m, dimension, value, leaves, version, new, stats,
                                   positive, leaf_stats)
                if cand is not None:
                    # one candidate per set of leaves that carry the metric: for a ratio,
                    # a leaf with no rows in the anomalous period adds nothing (a sampled
                    # metric's sparse leaf must not split tier=cloud from its one version)
                    key = leaves if m.den is None else frozenset(
                        leaf for leaf in leaves if leaf in stats)
                    groups.setdefault(key, []).append(cand)
        out = []
        for same in groups.values():
            same.sort(key=lambda c: (not c.new_version, c.dimension != m.home,
                                     DIMENSIONS.index(c.dimension)))
            out.append(replace(same[0], same_as=tuple(_label(c.dimension, c.value)
                                                      for c in same[1:])))
        return out

    def _score(self, cube: Cube, m: Metric, dimension: str, value: str,
               leaves: frozenset[Leaf], version: str | None, new: bool,
               stats: dict[Leaf, tuple[float, float, float]], positive: float,
               leaf_stats: dict[str, dict[Leaf, tuple[float, float, float]]]) -> Candidate | None:
        mine = [leaf for leaf in leaves if leaf in stats]
        plus = {leaf: max(0.0, stats[leaf][1]) for leaf in mine}
        explained = sum(plus.values()) / positive
        volume = sum(stats[leaf][2] for leaf in mine)
        purity = (sum(stats[leaf][2] * self._weight(stats[leaf]) for leaf in mine) / volume
                  if volume > 0 else 0.0)
        if explained <= 0 or purity <= 0:
            return None
        base = cube.stats(m.name, leaves, "baseline")
        anom = cube.stats(m.name, leaves, "anomaly", version)
        z = m.worse * robust_z(base.series, anom.series, rel_floor=m.rel_floor)
        significance = max(0.0, z) / (max(0.0, z) + self.half_z)
        hot = sum(plus[leaf] for leaf in mine if self._parent_hot(m, leaf, leaf_stats))
        rootness = 1 - self.parent_discount * (hot / sum(plus.values()) if plus else 0.0)
        score = explained * purity * significance * rootness
        if score <= 0:
            return None
        exact = tuple(sorted(leaves)) if dimension == "model_version" else None
        return Candidate(
            dimension, value, m.name, score, base.value, anom.value,
            {"z": z, "explained": explained, "purity": purity, "significance": significance,
             "rootness": rootness, "leaves": float(len(leaves))},
            leaves=exact, version=version, new_version=new)
