"""Window sketches: exact counters, and quantiles merged by SQL alone that match the
exact quantiles of the raw rows within the sketch's rank error, on both stores."""

from __future__ import annotations

import base64

import datasketches as ds
import numpy as np
import pytest
from autosteer.telemetry.schema import FRAMES, WINDOWS
from autosteer.telemetry.sink import Position, Sink
from autosteer.telemetry.store import TelemetryStore
from autosteer.telemetry.window import Sample, WindowAggregator
from autosteer.topics.records import TelemetryRecord, WindowRecord

T0 = 1_763_000_040_000  # a minute boundary (epoch ms)
RANK_ERROR = 0.01


def samples(n: int, seed: int = 3) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        tier = "edge" if i % 3 else "cloud"
        mu = 3.5 if tier == "edge" else 4.2
        out.append(Sample(ts_ms=T0 + int(i * 360_000 / n), camera=f"cam{i % 4}", seq=i,
                          tier=tier, model_id="m", model_version="1",
                          total_ms=float(rng.lognormal(mu, 0.6)), infer_ms=20.0,
                          queue_ms=float(rng.exponential(5)), queue_depth=i % 9,
                          labels=("person",) * (i % 3), scores=(0.8,) * (i % 3)))
    return out


def windows(data: list[Sample]) -> list[WindowRecord]:
    agg = WindowAggregator("n1", window_s=10)
    for s in data:
        agg.update(s)
    return agg.flush(0, force=True)


def test_counters_are_exact_and_sketches_deserialize() -> None:
    data = samples(6000)
    ws = windows(data)
    assert sum(w.frames for w in ws) == 6000
    assert sum(w.detections for w in ws) == sum(len(s.labels) for s in data)
    assert max(w.max_total_ms for w in ws) == pytest.approx(max(s.total_ms for s in data))
    w = ws[0]
    req = ds.req_floats_sketch.deserialize(base64.b64decode(w.sketches["total_ms_req"]))
    assert req.n == w.frames == sum(w.total_ms.weights)
    assert abs(w.distinct_frames - w.frames) <= 0.05 * w.frames


def test_python_merge_of_serialized_sketches() -> None:
    data = samples(6000)
    merged = ds.kll_floats_sketch(200)
    for w in windows(data):
        merged.merge(ds.kll_floats_sketch.deserialize(base64.b64decode(w.sketches["queue_ms_kll"])))
    exact = np.array([s.queue_ms for s in data])
    q = merged.get_quantile(0.95)
    assert abs((exact <= q).mean() - 0.95) <= RANK_ERROR



@pytest.mark.integration
def test_p95_per_tier_per_minute_from_sketches_matches_raw_rows(store: TelemetryStore) -> None:
    data = samples(30_000)
    sink = Sink(store)
    ws = windows(data)
    sink.write(WINDOWS, [WINDOWS.to_row(w) for w in ws],
               [Position("w", 0, i) for i in range(len(ws))])
    raw = [TelemetryRecord(ts_ms=s.ts_ms, node="n1", camera=s.camera, seq=s.seq, tier=s.tier,
                           model_id="m", model_version="1", batch_size=1, queue_depth=0,
                           ingest_ms=0, route_ms=0, queue_ms=0, decode_ms=0, infer_ms=0,
                           total_ms=s.total_ms, n_detections=0, max_score=0, mean_score=0)
           for s in data]
    sink.write(FRAMES, [FRAMES.to_row(r) for r in raw], [Position("f", 0, i) for i in range(len(raw))])

    db = store.database
    _, sketch = store.query(f"SELECT minute, tier, p95_ms FROM {db}.p95_latency_per_tier_minute")
    _, counts = store.query(f"SELECT toStartOfMinute(ts) AS minute, tier, sum(frames) "
                            f"FROM {db}.telemetry_windows GROUP BY minute, tier")
    _, exact = store.query(f"SELECT toStartOfMinute(ts) AS minute, tier, count() "
                           f"FROM {db}.telemetry_frames GROUP BY minute, tier")
    assert sorted(map(tuple, counts)) == sorted(map(tuple, exact)), "exact counters"
    assert len(sketch) == 12  # 6 minutes x 2 tiers
    for minute, tier, p95 in sketch:
        start = int(minute.timestamp() * 1000) if hasattr(minute, "timestamp") else None
        values = np.array([s.total_ms for s in data if s.tier == tier and
                           (start is None or start <= s.ts_ms < start + 60_000)])
        rank = float((values <= p95 * (1 + 1e-6)).mean())
        assert abs(rank - 0.95) <= RANK_ERROR, f"{minute} {tier}: rank {rank:.4f}"
