"""``/metrics`` is valid Prometheus text, and the UI's live view reads what agents publish.

The unit tests build a real :class:`Worker` (no broker needed until it starts) and feed
its UI sensor the bytes agents would consume and publish; the integration test asks a
real worker.
"""

from __future__ import annotations

import asyncio
import doctest
import json
import math
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from autosteer.errors import StoreError
from autosteer.processors.decode import decode_jpeg, encode_jpeg
from autosteer.settings import Settings
from autosteer.streams import web
from autosteer.streams.worker import Worker as PipelineWorker
from autosteer.topics.names import TopicNames
from autosteer.topics.records import Box, Detection, FrameRecord, Latency, NodeRecord, now_ms
from helpers import Worker, produce, wait_for
from prometheus_client.parser import text_string_to_metric_families


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def detection(camera: str, seq: int, tier: str = "edge", total_ms: float = 80.0,
              version: str = "v1") -> bytes:
    return Detection(
        camera=camera, seq=seq, ts_ms=now_ms(), tier=tier, node="n1", model_id=f"m-{tier}",
        model_version=version, width=64, height=48,
        boxes=[Box(label="person", class_id=1, score=0.9, x0=0.1, y0=0.1, x1=0.5, y1=0.9)],
        latency=Latency(ingest_ms=1, route_ms=1, queue_ms=5, decode_ms=1, infer_ms=20,
                        total_ms=total_ms)).dumps()


@pytest.fixture
def pipeline(tmp_path: Path) -> PipelineWorker:
    return PipelineWorker(Settings(state_dir=tmp_path, chdb_path=tmp_path / "chdb", node="n1",
                                   topic_prefix="unit"))


def ui_of(p: PipelineWorker) -> web.LiveView:
    return next(s for s in p.app.sensors if isinstance(s, web.LiveView))


def metric_families(p: PipelineWorker, live: web.LiveView) -> list[web.Family]:
    return web.metric_families(p.view(), p.app, live, web.CounterRates())


def test_web_doctests() -> None:
    import importlib
    import pkgutil

    attempted = 0
    for mod in pkgutil.iter_modules(web.__path__):
        result = doctest.testmod(importlib.import_module(f"{web.__name__}.{mod.name}"),
                                 optionflags=doctest.ELLIPSIS)
        assert result.failed == 0
        attempted += result.attempted
    assert attempted >= 10


def test_metrics_text_parses_with_histograms_models_and_escaped_labels(
        pipeline: PipelineWorker) -> None:
    live = ui_of(pipeline)
    names = TopicNames("unit")
    cam = 'cam-"quoted"\\x'
    for seq, ms in enumerate((3.0, 40.0, 700.0)):
        live.frame_in(names.frames_edge, b"camA", FrameRecord(
            camera="camA", seq=seq, ts_ms=1, jpeg=b"\xff\xd8").dumps())
        live.detection_out(detection("camA", seq, total_ms=ms))
    live.detection_out(detection("camA", 9, tier="cloud", version="v2"))
    live.cameras[cam] = web.CameraLive(detected=2)  # label values need escaping
    assert pipeline.router is not None
    pipeline.router.routed.update(edge=3, cloud=1)
    pipeline.detectors["edge"].detected = 3
    pipeline.detectors["cloud"].detected = 1

    text = web.exposition(metric_families(pipeline, live))
    fams = families(text)

    routed = {s.labels["tier"]: s.value for s in fams["autosteer_frames_routed"].samples}
    assert routed == {"edge": 3.0, "cloud": 1.0}
    assert fams["autosteer_frames_routed"].type == "counter"
    hist = fams["autosteer_detection_latency_seconds"]
    assert hist.type == "histogram"
    edge_total = [s for s in hist.samples if s.labels.get("tier") == "edge"
                  and s.labels.get("stage") == "total"]
    buckets = {s.labels["le"]: s.value for s in edge_total if s.name.endswith("_bucket")}
    assert buckets["0.005"] == 1 and buckets["0.05"] == 2 and buckets["+Inf"] == 3
    count = next(s.value for s in edge_total if s.name.endswith("_count"))
    total = next(s.value for s in edge_total if s.name.endswith("_sum"))
    assert count == 3 and total == pytest.approx(0.743)
    models = {(s.labels["tier"], s.labels["model_version"]) for s in
              fams["autosteer_model_info"].samples}
    assert models == {("edge", "v1"), ("cloud", "v2")}
    assert fams["autosteer_offload_ratio"].samples[0].value == pytest.approx(0.25)
    per_cam = {s.labels["camera"]: s.value for s in
               fams["autosteer_camera_frames_detected"].samples}
    assert per_cam == {"camA": 4.0, cam: 2.0}
    agents = {s.labels["agent"] for s in fams["autosteer_queue_depth"].samples}
    assert {"router", "detect-edge", "detect-cloud"} <= agents
    assert fams["autosteer_node_info"].samples[0].labels["node"] == "n1"


def test_metrics_before_any_frame_say_nan_for_the_offload_ratio(pipeline: PipelineWorker) -> None:
    fams = families(web.exposition(metric_families(pipeline, ui_of(pipeline))))
    assert math.isnan(fams["autosteer_offload_ratio"].samples[0].value)
    assert fams["autosteer_detection_latency_seconds"].samples == []


def test_an_unprobed_worker_says_at_least_once_and_has_no_broker_lag(
        pipeline: PipelineWorker) -> None:
    fams = families(web.exposition(metric_families(pipeline, ui_of(pipeline))))
    info = fams["autosteer_delivery_info"].samples
    assert [(x.labels["guarantee"], x.value) for x in info] == [("at-least-once", 1.0)]
    assert fams["autosteer_broker_consumer_lag"].samples == []  # tansu: no real watermarks
    assert "not probed" in pipeline.view().delivery.reason


def test_the_thumbnail_is_the_frame_of_the_last_detection_with_its_boxes(
        pipeline: PipelineWorker) -> None:
    live = ui_of(pipeline)
    names = TopicNames("unit")
    img = np.full((96, 128, 3), 200, np.uint8)
    frames = {seq: FrameRecord(camera="c", seq=seq, ts_ms=1, jpeg=encode_jpeg(img, 95)).dumps()
              for seq in range(4)}
    for seq in range(4):  # the detector took four frames; two are detected so far
        live.frame_in(names.frames_cloud, b"c", frames[seq])
    live.detection_out(detection("c", 0, tier="cloud"))
    live.detection_out(detection("c", 1, tier="cloud"))
    shown_frame, shown_det = live.cameras["c"].shown
    assert shown_frame == frames[1] and shown_det.seq == 1
    assert list(live._pending[("cloud", "c")]) == [2, 3]

    thumb = decode_jpeg(web.render_thumbnail(shown_frame, shown_det, width=64))
    assert thumb.shape[:2] == (48, 64)
    drawn = np.abs(thumb.astype(int) - 200).sum(axis=2) > 60  # the box outline
    assert drawn[:, 6:8].any() and not drawn[20:30, 20:25].any()


def test_shed_results_count_apart_and_keep_the_last_thumbnail(pipeline: PipelineWorker) -> None:
    live = ui_of(pipeline)
    names = TopicNames("unit")
    for seq in range(3):
        live.frame_in(names.frames_edge, b"c", FrameRecord(camera="c", seq=seq, ts_ms=1,
                                                           jpeg=b"\xff\xd8").dumps())
    live.detection_out(detection("c", 0))
    shed = json.loads(detection("c", 2, total_ms=9000.0))
    shed.update(boxes=[], status="shed")
    live.detection_out(json.dumps(shed).encode())
    cam = live.cameras["c"]
    assert (cam.detected, cam.shed) == (1, 1)
    assert cam.shown[1].seq == 0 and not live._pending[("edge", "c")]
    assert live.latency[("edge", "total")].count == 1


def test_events_and_markers_come_from_the_worker_feed(pipeline: PipelineWorker) -> None:
    feed = pipeline.view().events
    assert web.events(feed)["anomalies"] == []
    feed.extend([
        {"kind": "anomaly", "ts_ms": 2_000, "title": "p95 up", "camera": "c"},
        {"kind": "root_cause", "ts_ms": 3_000, "title": "queue", "sql": "SELECT 1"},
        {"kind": "retrain_request", "ts_ms": 4_000, "title": "drift on c"},
        {"kind": "anomaly", "ts_ms": 1, "title": "old"}, "junk"])  # type: ignore[list-item]
    feeds = web.events(feed)
    assert [e["title"] for e in feeds["anomalies"]] == ["old", "p95 up"]
    assert feeds["root_causes"][0]["sql"] == "SELECT 1"
    assert [m["title"] for m in web.markers(feed, since_ms=1_000)] == ["p95 up", "queue"]


def test_graph_and_node_health_from_heartbeat_rows() -> None:
    now = 100_000
    rows = [("a", "router,edge", now - 500, 50.0, 1 << 27, 10.0, -1.0, 0, 0, 0),
            ("b", "cloud", now - 30_000, 40.0, 1 << 27, 10.0, -1.0, 0, 0, 0)]
    recent = [("a", now - 2500, 0, 0, 0, 0, 0), ("a", now - 1500, 5, 5, 5, 5, 0),
              ("a", now - 500, 10, 10, 10, 10, 0)]

    def query(sql: str) -> tuple[list[str], list[tuple]]:
        return [], rows if "GROUP BY node" in sql else recent

    latest, history = web.cluster_heartbeats(query, "db", now, default_period_s=5.0)
    nodes, rates = web.node_health(latest, history, now, default_period_s=5.0, grace_s=2.0)
    assert [(n["node"], n["state"], n["heartbeat_s"]) for n in nodes] == [
        ("a", "ok", 1.0), ("b", "dead", 5.0)]
    assert rates["routed_edge"] == pytest.approx(5.0)
    g = web.graph(nodes, rates)
    states = {s["id"]: s["state"] for s in g["stages"]}
    assert states == {"cameras": "ok", "router": "ok", "edge": "ok", "cloud": "dead",
                      "results": "none"}
    assert g["offload_ratio"] == pytest.approx(0.5)


@pytest.mark.integration
def test_a_worker_serves_metrics_ready_and_the_ui(
        make_settings: Callable[..., Settings], start_worker: Callable[[Settings], Worker],
        frames: list[np.ndarray]) -> None:
    s = make_settings(store="embedded", edge_ratio=0.5)
    start_worker(s)
    base = f"http://127.0.0.1:{s.web_port}"
    jpegs = [encode_jpeg(f, 85) for f in frames[:6]]
    produce(s, TopicNames(s.topic_prefix).frames, [(b"camM", FrameRecord(
        camera="camM", seq=i, ts_ms=now_ms(), jpeg=j).dumps()) for i, j in enumerate(jpegs)])

    def get(path: str) -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=10) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, "", exc.read().decode()

    def detected() -> dict[str, Any] | None:
        fams = families(get("/metrics")[2])
        n = sum(s.value for s in fams["autosteer_frames_detected"].samples)
        return fams if n >= 6 else None

    fams = wait_for(detected, 90, "six detections in /metrics", every=1.0)
    status, ctype, _ = get("/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    counts = [s.value for s in fams["autosteer_detection_latency_seconds"].samples
              if s.name.endswith("_count") and s.labels["stage"] == "total"]
    assert sum(counts) >= 6
    assert {s.labels["tier"] for s in fams["autosteer_model_info"].samples} == {"edge", "cloud"}
    assert 0.0 < fams["autosteer_offload_ratio"].samples[0].value < 1.0

    status, _, body = get("/ready")
    assert status == 200, body
    assert json.loads(body)["checks"]["store"]["ok"]
    delivery = json.loads(get("/status")[2])["delivery"]
    assert delivery["guarantee"] == ("exactly-once" if s.broker == "kafka"
                                     else "at-least-once"), delivery
    status, ctype, page = get("/ui/")
    assert status == 200 and "app.js" in page
    assert get("/ui")[0] == 200 and get("/ui/static/app.js")[0] == 200
    cams = json.loads(get("/api/cameras")[2])["cameras"]
    cam = next(c for c in cams if c["camera"] == "camM")
    assert cam["frames_detected"] == 6 and cam["p95_ms"] > 0 and cam["thumbnail"]
    with urllib.request.urlopen(base + cam["thumbnail"], timeout=10) as r:
        assert r.headers["Content-Type"] == "image/jpeg"
        assert decode_jpeg(r.read()).shape[1] == 360


class DownStore:
    database = "autosteer"

    def query(self, sql: str, *, readonly: bool = False) -> Any:
        raise StoreError("ClickHouse at clickhouse://nowhere:9000/autosteer: refused")


def test_without_the_store_the_graph_shows_heartbeats_this_worker_consumed(
        tmp_path: Path) -> None:
    p = PipelineWorker(Settings(state_dir=tmp_path, node="me", topic_prefix="unit",
                                heartbeat_s=1.0, sink_flush_s=0.5), store=DownStore())
    ui = web.Web(p.view(), p.app)
    now = now_ms()

    def beat(node: str, age_ms: int, routed: int) -> tuple[float, NodeRecord]:
        return 0.0, NodeRecord(ts_ms=now - age_ms, node=node, roles="edge", cpu_percent=1,
                               host_cpu_percent=1, rss_bytes=1, host_mem_percent=1, threads=1,
                               routed_edge=routed)

    p.telemetry.nodes.update({"old": beat("old", 60_000, 0), "other": beat("other", 2_000, 0)})
    ui.sample()
    p.telemetry.nodes["other"] = beat("other", 0, 8)
    ui.sample()
    g = asyncio.run(ui.graph())
    assert g["source"] == "local" and "refused" in g["error"]
    assert {n["node"]: n["state"] for n in g["nodes"]} == {"me": "ok", "old": "dead",
                                                          "other": "ok"}
    assert g["rates"]["routed_edge"] == pytest.approx(4.0)
    assert web.inprocess_heartbeats(object()) == {}
