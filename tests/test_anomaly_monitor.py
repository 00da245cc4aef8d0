"""AnomalyMonitor over window records and heartbeats: what pages, what does not."""

from __future__ import annotations

from autosteer.anomaly import Anomaly, AnomalyMonitor, SeriesKey, multivariate_detector
from autosteer.rootcause import Fault, Topology, simulate
from autosteer.topics.records import NodeRecord, QuantileSummary, WindowRecord

T0 = 1_763_000_000_000


def window(i: int, camera: str = "cam1", infer_ms: float = 40.0, frames: int = 20,
           node: str = "edge-1") -> WindowRecord:
    jitter = (i * 7919) % 5 * 0.4  # a deterministic wobble
    return WindowRecord(
        ts_ms=T0 + i * 10_000, window_s=10, node=node, camera=camera, tier="edge", model_id="m",
        model_version="1", frames=frames, detections=frames, sum_total_ms=frames * 50.0,
        max_total_ms=60.0, distinct_frames=frames,
        total_ms=QuantileSummary(values=[50.0], weights=[frames]),
        infer_ms=QuantileSummary(values=[infer_ms + jitter], weights=[frames]),
        queue_ms=QuantileSummary(values=[3.0], weights=[frames]),
        score=QuantileSummary(values=[0.7], weights=[frames]))


def feed(monitor: AnomalyMonitor, records: list[WindowRecord]) -> list[Anomaly]:
    return [a for w in records for a in monitor.update(w)]


def test_a_level_shift_on_one_series_opens_one_anomaly_with_its_onset() -> None:
    records = [window(i, infer_ms=40.0 + 30.0 * (i >= 60)) for i in range(70)]
    found = feed(AnomalyMonitor(), records)
    assert [(a.node, a.camera, a.tier, a.metric) for a in found] == [
        ("edge-1", "cam1", "edge", "infer_ms")]
    a = found[0]
    assert (a.start_ms, a.end_ms) == (T0 + 600_000, T0 + 630_000)
    assert a.metrics == ["infer_ms"] and a.values["infer_ms"] > 69
    assert 40 <= a.baseline["infer_ms"] <= 42 and a.score >= a.threshold
    assert Anomaly.parse(a.dumps()) == a


def test_single_spikes_do_not_page() -> None:
    records = [window(i, infer_ms=400.0 if i in (40, 50, 51) else 40.0) for i in range(70)]
    assert feed(AnomalyMonitor(), records) == []


def test_a_camera_that_goes_silent_pages_on_fps() -> None:
    monitor = AnomalyMonitor()
    found = []
    for i in range(60):
        found += monitor.update(window(i, camera="cam0"))
        if i < 45:  # cam1 stops after window 44
            found += monitor.update(window(i, camera="cam1"))
    assert [(a.camera, a.metric, a.values) for a in found] == [("cam1", "fps", {"fps": 0.0})]
    assert found[0].start_ms == T0 + 450_000
    assert (SeriesKey("edge-1", "cam1", "edge"), "fps") in monitor.open()


def test_a_memory_leak_in_heartbeats_pages_on_rss() -> None:
    monitor = AnomalyMonitor()
    found = []
    for i in range(120):
        leak = max(0, i - 80) * 4 * 2**20  # 4 MB per heartbeat after heartbeat 80
        hb = NodeRecord(ts_ms=T0 + i * 5_000, node="edge-2", roles="detector-edge",
                        cpu_percent=80.0 + i % 3, host_cpu_percent=40.0 + i % 4,
                        rss_bytes=700 * 2**20 + (i * 7919) % 5 * 2**20 + leak,
                        host_mem_percent=5.0, threads=20)
        found += monitor.update_node(hb)
    assert [(a.node, a.camera, a.metric) for a in found] == [("edge-2", "", "rss_bytes")]
    assert found[0].start_ms % 10_000 == 0 and found[0].end_ms - found[0].start_ms >= 10_000


def test_an_hour_of_normal_simulated_telemetry_does_not_page() -> None:
    tel = simulate(Topology(), [], start_ms=T0, seconds=3600, seed=21)
    monitor = AnomalyMonitor()
    found = feed(monitor, tel.windows) + [a for n in tel.nodes for a in monitor.update_node(n)]
    assert found == []


def test_the_monitor_finds_an_injected_slowdown_on_the_right_node() -> None:
    fault = Fault("node_slowdown", "edge-2", T0 + 900_000, T0 + 1_500_000, 0.6,
                  variant="service_delay")
    tel = simulate(Topology(), [fault], start_ms=T0, seconds=1200, seed=22)
    found = feed(AnomalyMonitor(), tel.windows)
    assert found and {a.node for a in found} == {"edge-2"}
    assert min(a.start_ms for a in found) >= fault.start_ms - 10_000


def test_multivariate_only_monitor_pages_when_several_metrics_move_together() -> None:
    def record(i: int) -> WindowRecord:
        bad = i >= 250
        w = window(i, infer_ms=40.0 + 60.0 * bad, frames=20 - 10 * bad)
        return w.model_copy(update={
            "queue_ms": QuantileSummary(values=[3.0 + 30 * bad + i % 3], weights=[w.frames]),
            "score": QuantileSummary(values=[0.7 - 0.2 * bad + i % 4 * 0.01], weights=[w.frames]),
            "sum_total_ms": w.frames * (50.0 + 80 * bad + i % 5)})

    monitor = AnomalyMonitor(univariate=None, multivariate=multivariate_detector)
    found = feed(monitor, [record(i) for i in range(270)])
    assert [(a.metric, a.detector) for a in found] == [("*", "Calibrated")]
    assert T0 + 2_500_000 <= found[0].start_ms <= T0 + 2_520_000
    assert {"infer_ms", "queue_ms", "fps"} <= set(found[0].metrics)


def test_a_quiet_series_that_goes_silent_pages_as_silence_then_is_forgotten() -> None:
    monitor = AnomalyMonitor(forget_after=20)
    found = []
    for i in range(100):
        found += monitor.update(window(i, camera="cam0"))
        if i < 45:  # a trickle of frames (0.1 to 0.3 fps), then nothing
            found += monitor.update(window(i, camera="cam1", frames=1 + i % 3))
    assert [(a.camera, a.metric, a.detector) for a in found] == [("cam1", "fps", "Silence")]
    assert found[0].start_ms == T0 + 450_000 and found[0].score >= 3
    assert SeriesKey("edge-1", "cam1", "edge") not in monitor._last  # forgotten


def test_a_node_whose_short_windows_arrive_late_is_not_taken_for_silent() -> None:
    """1 s windows: node-b's reach the monitor 6 windows after node-a's (its sink and
    timers run late, not its camera). Lateness under ``missing_after_s`` is not silence."""
    def short(i: int, node: str) -> WindowRecord:
        return window(i, node=node).model_copy(update={"ts_ms": T0 + i * 1000, "window_s": 1})

    monitor = AnomalyMonitor(window_s=1)
    found = []
    for i in range(200):
        found += monitor.update(short(i, "node-a"))
        if i >= 6:
            found += monitor.update(short(i - 6, "node-b"))
    assert found == [], [(a.node, a.metric, a.detector) for a in found]
