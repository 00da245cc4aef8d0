"""Watch every telemetry series and return an :class:`Anomaly` when one opens.

:class:`AnomalyMonitor` keeps one :class:`Alarm` per (node, camera, tier, metric) for
window records and per (node, metric) for heartbeats, plus, if asked, one multivariate
detector per series. Plain and synchronous: a Faust agent calls ``update(window)`` for
each window record and ``update_node(heartbeat)`` for each node record, and forwards
what they return.

A camera that stops sending frames sends no windows either, so silence is data: once
other series are ``missing_after`` windows (and at least ``missing_after_s`` seconds)
ahead, each window a series missed is fed
to its ``fps`` alarm as 0 frames per second (for ``forget_after`` windows at most),
and a series silent for ``silence`` windows pages (detector ``"Silence"``) even when its
alarm would not.

>>> from autosteer.topics.records import QuantileSummary, WindowRecord
>>> def window(i, infer_ms):
...     return WindowRecord(ts_ms=i * 10_000, window_s=10, node="edge-1", camera="cam1",
...                         tier="edge", model_id="m", model_version="1", frames=20,
...                         detections=20, sum_total_ms=20 * (infer_ms + 5), max_total_ms=99,
...                         distinct_frames=20, total_ms=QuantileSummary(),
...                         infer_ms=QuantileSummary(values=[infer_ms], weights=[20]),
...                         queue_ms=QuantileSummary(), score=QuantileSummary())
>>> monitor = AnomalyMonitor()
>>> pages = [a for i in range(60) for a in monitor.update(window(i, 40.0 + i % 3 + 25 * (i >= 50)))]
>>> [(a.metric, a.start_ms, a.end_ms, a.metrics) for a in pages]
[('total_ms', 500000, 530000, ['total_ms']), ('infer_ms', 500000, 530000, ['infer_ms'])]
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from autosteer.anomaly.alarm import Alarm
from autosteer.anomaly.features import SeriesKey, node_features, series_key, window_features
from autosteer.anomaly.hst import RobustHalfSpaceTrees
from autosteer.anomaly.records import Anomaly
from autosteer.anomaly.robust import Calibrated, RobustZScore
from autosteer.topics.records import NodeRecord, WindowRecord

log = logging.getLogger(__name__)

AlarmFactory = Callable[[str], Alarm]
MULTIVARIATE = "*"


def robust_detector(metric: str) -> Alarm:
    """The default per-metric detector: robust z over the last 180 points, page at 6 sigma
    for three windows in a row, close below 3 sigma for three. Sigma is at least 1 % of
    the median (0.2 % for memory, whose normal wobble is far smaller than its size)."""
    floor = 0.002 if metric == "rss_bytes" else 0.01
    return Alarm(RobustZScore(window_size=180, rel_floor=floor), threshold=6.0, clear=3.0,
                    warmup=30, enter=3, exit=3)


def multivariate_detector(metric: str) -> Alarm:
    """A per-series multivariate detector: Half-Space Trees on robustly scaled metrics,
    shallow (height 4: one series has only 360 windows an hour) and with a wide squash
    (16 sigmas, so a 6-sigma shift does not land in a sliver next to normal values), its
    score calibrated to robust sigmas of its own recent scores; pages at 6. Opt-in: Half-
    Space Trees split on random features, so a fault that moves one metric of seven moves
    their score little; ``bench/anomaly.py`` prints its event scores next to
    :func:`robust_detector`'s."""
    trees = RobustHalfSpaceTrees(height=4, window_size=60, scale_window=180, squash=16.0,
                                 seed=7)
    return Alarm(Calibrated(trees, skip=120), threshold=6.0, clear=3.0, warmup=180,
                    enter=3, exit=3)


class AnomalyMonitor:
    """Per-series detectors over window records and heartbeats; returns new anomalies."""

    def __init__(self, univariate: AlarmFactory | None = robust_detector,
                 multivariate: AlarmFactory | None = None, window_s: int = 10,
                 involved_z: float = 3.0, missing_after: int = 2, silence: int = 3,
                 forget_after: int = 360, missing_after_s: float = 10.0) -> None:
        if univariate is None and multivariate is None:
            raise ValueError("AnomalyMonitor needs a univariate or a multivariate detector "
                             "factory (or both); got neither")
        self.univariate = univariate
        self.multivariate = multivariate
        self.window_s = window_s
        self.involved_z = involved_z
        self.missing_after = missing_after
        # short windows: another worker's windows may arrive a few seconds late
        self.missing_after_s = missing_after_s
        self.silence = silence
        self.forget_after = forget_after
        self._alarms: dict[tuple[SeriesKey, str], Alarm] = {}
        self._run_start: dict[tuple[SeriesKey, str], int] = {}
        # window series -> (last window seen, last window filled in as silent, window_s)
        self._last: dict[SeriesKey, tuple[int, int, int]] = {}
        self._silenced: set[SeriesKey] = set()
        self._watermark = 0

    def update(self, window: WindowRecord) -> list[Anomaly]:
        """Feed one window record; return the anomalies that opened (on any series)."""
        key = series_key(window)
        out = self._missing(window.ts_ms) if window.ts_ms > self._watermark else []
        self._watermark = max(self._watermark, window.ts_ms)
        last = self._last.get(key)
        if last is None or window.ts_ms > last[0]:
            self._last[key] = (window.ts_ms, max(window.ts_ms, last[1] if last else 0),
                               window.window_s)
            self._silenced.discard(key)
        out += self._observe(key, window_features(window), window.ts_ms, window.window_s)
        return out

    def update_node(self, node: NodeRecord) -> list[Anomaly]:
        """Feed one heartbeat; return the anomalies that opened on the node's series
        (their start and end are those of the ``window_s`` windows around the heartbeats)."""
        start = node.ts_ms - node.ts_ms % (self.window_s * 1000)
        return self._observe(SeriesKey(node.node), node_features(node), start, self.window_s)

    def open(self) -> list[tuple[SeriesKey, str]]:
        """The (series, metric) pairs whose anomaly is still open."""
        return sorted(k for k, d in self._alarms.items() if d.is_anomaly)

    def _missing(self, ts_ms: int) -> list[Anomaly]:
        out: list[Anomaly] = []
        for key, (seen, filled, window_s) in list(self._last.items()):
            step = window_s * 1000
            until = ts_ms - max(self.missing_after * step,
                                -(-int(self.missing_after_s * 1000) // step) * step)
            if filled >= until:
                continue
            if (until - seen) // step > self.forget_after:
                log.info("series %s silent for %d windows; no longer watched", key,
                         self.forget_after)
                del self._last[key]
                continue
            for t in range(filled + step, until + 1, step):
                out += self._observe(key, {"fps": 0.0}, t, window_s)
            self._last[key] = (seen, until, window_s)
            out += self._silence(key, seen + step, until + step, window_s)
        return out

    def _silence(self, key: SeriesKey, start_ms: int, end_ms: int,
                 window_s: int) -> list[Anomaly]:
        """A warm series silent for ``silence`` windows pages even if 0 fps is within its
        detector's threshold (a camera that offloads most frames sends few to each node)."""
        det = self._alarms.get((key, "fps"))
        windows = (end_ms - start_ms) // (window_s * 1000)
        if (det is None or not det.warm or det.is_anomaly or key in self._silenced
                or windows < self.silence):
            return []
        self._silenced.add(key)
        median = getattr(det.scorer, "baseline", None)
        base = median("fps") if median else None
        return [Anomaly(node=key.node, camera=key.camera, tier=key.tier, metric="fps",
                        detector="Silence", start_ms=start_ms, end_ms=end_ms,
                        window_s=window_s, score=float(windows), threshold=float(self.silence),
                        metrics=["fps"], values={"fps": 0.0},
                        baseline={"fps": base} if base is not None else {})]

    def _alarm(self, key: SeriesKey, metric: str) -> Alarm | None:
        factory = self.multivariate if metric == MULTIVARIATE else self.univariate
        if factory is None:
            return None
        det = self._alarms.get((key, metric))
        if det is None:
            det = self._alarms[(key, metric)] = factory(metric)
        return det

    def _observe(self, key: SeriesKey, x: dict[str, float], ts_ms: int,
                 window_s: int) -> list[Anomaly]:
        out = []
        inputs = [(m, {m: v}) for m, v in x.items()]
        if len(x) > 1:
            inputs.append((MULTIVARIATE, x))
        for metric, point in inputs:
            det = self._alarm(key, metric)
            if det is None:
                continue
            det.update(point)
            if det.run == 1:
                self._run_start[(key, metric)] = ts_ms
            if det.started:
                out.append(self._anomaly(key, metric, det, point, ts_ms, window_s))
        return out

    def _anomaly(self, key: SeriesKey, metric: str, det: Alarm, x: dict[str, float],
                 ts_ms: int, window_s: int) -> Anomaly:
        zscores = getattr(det.scorer, "zscores", None)
        z = zscores(x) if zscores else {}
        involved = sorted(m for m, v in z.items() if abs(v) >= self.involved_z)
        if not involved:
            involved = [max(z, key=lambda m: abs(z[m]))] if z else sorted(x)
        median = getattr(det.scorer, "baseline", None)
        base = {m: b for m in involved if median and (b := median(m)) is not None}
        return Anomaly(node=key.node, camera=key.camera, tier=key.tier, metric=metric,
                       detector=type(det.scorer).__name__,
                       start_ms=self._run_start.get((key, metric), ts_ms),
                       end_ms=ts_ms + window_s * 1000, window_s=window_s, score=det.score,
                       threshold=det.threshold, metrics=involved,
                       values={m: x[m] for m in involved}, baseline=base)
