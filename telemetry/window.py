"""Per-window counters and sketches, kept on each node and emitted when a window closes.

One :class:`WindowAggregator` per worker. ``update(result)`` for every detected frame
(never sampled); ``flush(now_ms)`` returns a :class:`~autosteer.topics.WindowRecord` for
every (window, node, camera, tier, model) whose window has ended.

- exact: frames, boxes, sum and max of end-to-end latency, max queue depth, and
  ``reused`` frames (answered by the motion gate, not detected: in no other figure);
- REQ sketch (high-rank accuracy) of end-to-end latency, for p95/p99;
- KLL sketches of model time, queue time and box confidence;
- HLL of ``camera:seq``, so reprocessed frames show (frames - distinct);
- frequent items of box labels.

>>> agg = WindowAggregator("n1", window_s=10)
>>> for seq in range(50):
...     agg.update(Sample(ts_ms=1_000 + seq, camera="c", seq=seq, tier="edge", model_id="m",
...                       model_version="1", total_ms=float(seq), infer_ms=1.0, queue_ms=0.0,
...                       queue_depth=0, labels=("person",), scores=(0.9,)))
>>> agg.flush(5_000)
[]
>>> [(w.frames, w.detections, w.max_total_ms, round(w.distinct_frames)) for w in agg.flush(20_000)]
[(50, 50, 49.0, 50)]
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field

import datasketches as ds
from autosteer.topics.records import QuantileSummary, WindowRecord

Key = tuple[int, str, str, str, str]  # window start, camera, tier, model id, model version


@dataclass(frozen=True)
class Sample:
    """What the aggregator needs from one detected frame."""

    ts_ms: int
    camera: str
    seq: int
    tier: str
    model_id: str
    model_version: str
    total_ms: float
    infer_ms: float
    queue_ms: float
    queue_depth: int
    labels: Sequence[str] = ()
    scores: Sequence[float] = ()
    reused: bool = False  # a carried-forward result (motion gate): counted apart, no sketches


def summary(sketch: ds.kll_floats_sketch | ds.req_floats_sketch) -> QuantileSummary:
    """Retained items and weights of a sketch (SQL merges them with quantileExactWeighted)."""
    pairs = sorted(sketch) if not sketch.is_empty() else []
    return QuantileSummary(values=[float(v) for v, _ in pairs], weights=[int(w) for _, w in pairs])


@dataclass
class _Window:
    req_k: int
    kll_k: int
    frames: int = 0
    detections: int = 0
    sum_total: float = 0.0
    max_total: float = 0.0
    max_depth: int = 0
    reused: int = 0
    total: ds.req_floats_sketch = field(init=False)
    infer: ds.kll_floats_sketch = field(init=False)
    queue: ds.kll_floats_sketch = field(init=False)
    score: ds.kll_floats_sketch = field(init=False)
    frames_hll: ds.hll_sketch = field(init=False)
    labels: ds.frequent_strings_sketch = field(init=False)

    def __post_init__(self) -> None:
        self.total = ds.req_floats_sketch(self.req_k, True)  # high ranks accurate: tails
        self.infer = ds.kll_floats_sketch(self.kll_k)
        self.queue = ds.kll_floats_sketch(self.kll_k)
        self.score = ds.kll_floats_sketch(self.kll_k)
        self.frames_hll = ds.hll_sketch(12)
        self.labels = ds.frequent_strings_sketch(6)


class WindowAggregator:
    """Tumbling windows of ``window_s`` seconds, closed ``grace_s`` after they end."""

    def __init__(self, node: str, window_s: int = 10, grace_s: float = 1.0,
                 req_k: int = 12, kll_k: int = 200) -> None:
        self.node = node
        self.window_s = window_s
        self.grace_s = grace_s
        self.req_k = req_k
        self.kll_k = kll_k
        self._open: dict[Key, _Window] = {}

    def update(self, s: Sample) -> None:
        start = s.ts_ms - s.ts_ms % (self.window_s * 1000)
        key = (start, s.camera, s.tier, s.model_id, s.model_version)
        w = self._open.get(key)
        if w is None:
            w = self._open[key] = _Window(self.req_k, self.kll_k)
        if s.reused:  # not detected: no latency or score of its own to add
            w.reused += 1
            return
        w.frames += 1
        w.detections += len(s.labels)
        w.sum_total += s.total_ms
        w.max_total = max(w.max_total, s.total_ms)
        w.max_depth = max(w.max_depth, s.queue_depth)
        w.total.update(s.total_ms)
        w.infer.update(s.infer_ms)
        w.queue.update(s.queue_ms)
        for score in s.scores:
            w.score.update(float(score))
        for label in s.labels:
            w.labels.update(label)
        w.frames_hll.update(f"{s.camera}:{s.seq}")

    def flush(self, now_ms: int, *, force: bool = False) -> list[WindowRecord]:
        """Close and return the windows that ended ``grace_s`` before ``now_ms``."""
        limit = now_ms - self.window_s * 1000 - self.grace_s * 1000
        done = [k for k in self._open if force or k[0] <= limit]
        return [self._record(k, self._open.pop(k)) for k in sorted(done)]

    def _record(self, key: Key, w: _Window) -> WindowRecord:
        start, camera, tier, model_id, version = key
        top = w.labels.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)[:16]

        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        return WindowRecord(
            ts_ms=start, window_s=self.window_s, node=self.node, camera=camera, tier=tier,
            model_id=model_id, model_version=version, frames=w.frames, detections=w.detections,
            sum_total_ms=w.sum_total, max_total_ms=w.max_total, max_queue_depth=w.max_depth,
            reused=w.reused,
            distinct_frames=w.frames_hll.get_estimate(),
            total_ms=summary(w.total), infer_ms=summary(w.infer), queue_ms=summary(w.queue),
            score=summary(w.score),
            labels=[t[0] for t in top], label_counts=[int(t[1]) for t in top],
            sketches={"total_ms_req": b64(w.total.serialize()),
                      "infer_ms_kll": b64(w.infer.serialize()),
                      "queue_ms_kll": b64(w.queue.serialize()),
                      "score_kll": b64(w.score.serialize()),
                      "frames_hll": b64(w.frames_hll.serialize_compact()),
                      "labels_fi": b64(w.labels.serialize())},
        )
