"""One definition of fps (frames answered over the seconds their windows cover) and of
the offload ratio (the cloud share), the same in the view, the UI timeline, the camera
table and ``autosteer report``, on both stores."""

from __future__ import annotations

import pytest
from autosteer.streams.web.cluster import cluster_cameras, timeline
from autosteer.telemetry.report import build_report
from autosteer.telemetry.schema import (
    NODES,
    VIEWS,
    WINDOWS,
    fps,
    offload_ratio,
    throughput,
)
from autosteer.telemetry.store import TelemetryStore
from autosteer.topics.records import NodeRecord, QuantileSummary, WindowRecord
from helpers import Message

MINUTE_MS = 1_763_000_040_000  # a minute boundary (epoch ms)


def test_fps_counts_each_covered_window_once() -> None:
    assert fps(60, [0, 0, 10_000], 10) == 3.0  # two nodes' rows in the first window
    assert fps(60, [0], 10) == 6.0  # a bucket narrower than a window: still the window
    assert fps(5, [], 10) == 0.0


def test_throughput_of_the_tiers_adds_up_to_the_stream() -> None:
    rows = [(0, "cloud", 6, [20_000], 10), (0, "edge", 54, [0, 10_000, 20_000], 10),
            (60, "edge", 10, [60_000], 10)]
    got = {(t, tier): rate for t, tier, rate in throughput(rows)}
    assert got[(0, "cloud")] + got[(0, "edge")] == pytest.approx(60 / 30)
    assert got[(0, "cloud")] == pytest.approx(0.2)  # not 0.6: the cloud shares the 30 s
    assert got[(60, "edge")] == pytest.approx(1.0)


def test_offload_ratio_is_the_cloud_share() -> None:
    assert offload_ratio({"edge": 3, "cloud": 1}) == 0.25
    assert offload_ratio({"edge": 4}) == 0.0
    assert offload_ratio({}) == 0.0


def window(start_ms: int, tier: str, frames: int, camera: str = "cam1",
           reused: int = 0) -> WindowRecord:
    summary = QuantileSummary(values=[30.0], weights=[frames])
    return WindowRecord(ts_ms=start_ms, window_s=10, node="n1", camera=camera, tier=tier,
                        model_id="m", model_version="1", frames=frames, reused=reused,
                        detections=frames,
                        sum_total_ms=30.0 * frames, max_total_ms=30.0, distinct_frames=frames,
                        total_ms=summary, infer_ms=summary, queue_ms=summary, score=summary)


# one minute in which the worker ran for 3 windows: 30 s covered, 60 frames, 15 on cloud
# (and 7 reused, which count in no rate); cam2 ran for one window only
WINDOWS_OF_A_RUN = [window(MINUTE_MS, "edge", 20), window(MINUTE_MS + 10_000, "edge", 15),
                    window(MINUTE_MS + 10_000, "cloud", 5),
                    window(MINUTE_MS + 20_000, "edge", 10, reused=7),
                    window(MINUTE_MS + 20_000, "cloud", 10),
                    window(MINUTE_MS + 20_000, "edge", 8, camera="cam2")]


@pytest.mark.integration
def test_view_timeline_cameras_and_report_agree(store: TelemetryStore) -> None:
    db = store.database
    rows = [WINDOWS.to_row(w) + ("t", 0, i) for i, w in enumerate(WINDOWS_OF_A_RUN)]
    store.insert(WINDOWS.name, WINDOWS.columns, rows)
    cols, share = store.query(f"SELECT * FROM {db}.cloud_share_per_minute")
    assert cols == ["minute", "n_frames", "cloud_frames", "offload_ratio"]
    assert [tuple(r[1:]) for r in share] == [(68, 15, pytest.approx(15 / 68))]
    _, per_camera = store.query(f"SELECT camera, fps FROM {db}.fps_per_camera_minute")
    assert dict(per_camera) == {"cam1": pytest.approx(60 / 30), "cam2": pytest.approx(8 / 10)}
    assert "60" not in VIEWS["fps_per_camera_minute"]  # no fixed bucket width
    _, reused = store.query(f"SELECT sum(reused), sum(frames) FROM {db}.telemetry_windows")
    assert tuple(reused[0]) == (7, 68)  # reused frames are stored apart, not in fps

    cams = cluster_cameras(store.query, db, MINUTE_MS)
    assert {c: v["fps"] for c, v in cams.items()} == {"cam1": 2.0, "cam2": 0.8}
    tl = timeline(store.query, db, MINUTE_MS, 60)
    rates = {r["tier"]: r["fps"] for r in tl["throughput"]}
    assert rates == {"cloud": pytest.approx(15 / 30), "edge": pytest.approx(53 / 30)}
    assert [o["ratio"] for o in tl["offload"]] == [pytest.approx(15 / 68)]

    page = build_report(store.query, db, MINUTE_MS, 60)
    assert "share of frames on the cloud" in page and "cloud share" in page
    assert "edge share" not in page
    assert "1.77 fps" in page  # edge: 53 frames / 30 s covered (not 0.883 = 53 / 60 s)


@pytest.mark.integration
def test_heartbeats_store_the_reused_frames_apart(store: TelemetryStore) -> None:
    beat = NodeRecord(ts_ms=MINUTE_MS, node="n1", roles="router", cpu_percent=10.0,
                      host_cpu_percent=20.0, rss_bytes=1, host_mem_percent=5.0, threads=4,
                      routed_edge=30, routed_cloud=10, frames_reused=12)
    store.insert(NODES.name, NODES.columns, [NODES.to_row(beat) + ("t", 0, 0)])
    _, rows = store.query(f"SELECT routed_edge + routed_cloud, frames_reused "
                          f"FROM {store.database}.telemetry_nodes")
    assert tuple(rows[0]) == (40, 12)


def test_the_loader_keeps_good_rows_and_says_why_a_row_is_bad() -> None:
    import json

    from autosteer.errors import RecordError
    from autosteer.telemetry.loader import parse_batch
    from autosteer.telemetry.schema import FRAMES
    from autosteer.topics.records import TelemetryRecord

    rec = TelemetryRecord(
        ts_ms=1, node="n1", camera="cam1", seq=0, tier="edge", model_id="m",
        model_version="1", batch_size=1, queue_depth=0, ingest_ms=1, route_ms=1, queue_ms=1,
        decode_ms=1, infer_ms=10, total_ms=20, n_detections=2, max_score=0.9, mean_score=0.7)
    bad = json.dumps(rec.model_dump(mode="json") | {"tier": "moon"}).encode()
    msgs = [Message(v, offset=i) for i, v in enumerate((rec.dumps(), bad, None, rec.dumps()))]
    by_table, failed = parse_batch(msgs, {"t": FRAMES})
    rows, positions = by_table[FRAMES.name]
    assert rows == [FRAMES.to_row(rec)] * 2 and positions.offsets == [0, 3]
    assert rows[0][:2] == (1, "n1") and len(rows[0]) == len(FRAMES.columns) - 3
    assert [m.offset() for m, _ in failed] == [1, 2]
    assert all(isinstance(exc, RecordError) for _, exc in failed)
    assert "tier" in str(failed[0][1]) and "empty message" in str(failed[1][1])
