"""The benchmarks count only the work they claim: frames shed for their age, given an
earlier frame's boxes (reused) or dead-lettered are counted apart and never raise a
throughput or a ratio. Unit level: each bench's own counting function, fed a case where
shedding happens."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from autosteer.settings import Settings
from autosteer.topics.records import Detection, Latency

BENCH = Path(__file__).resolve().parent.parent / "bench"


def bench(name: str) -> ModuleType:
    """Import ``bench/<name>.py`` (bench/ is scripts, not a package)."""
    key = f"bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, BENCH / f"{name}.py")
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod  # dataclasses look their module up while the class is built
        spec.loader.exec_module(mod)
    return sys.modules[key]


def detection(camera: str, seq: int, status: str = "ok", ts_ms: int = 1_000) -> Detection:
    return Detection(camera=camera, seq=seq, ts_ms=ts_ms, tier="cloud", node="n",
                     model_id="m", model_version="1", width=640, height=480, boxes=[],
                     latency=Latency(ingest_ms=0, route_ms=0, queue_ms=0, decode_ms=0,
                                     infer_ms=10, total_ms=50), status=status)


def test_pipeline_overhead_counts_shed_frames_apart() -> None:
    po = bench("pipeline_overhead")
    detected = [detection("c", i) for i in range(20)]
    shed = [detection("c", i, "shed") for i in range(20, 80)]
    honest = po.tally(detected, "c")
    flooded = po.tally(detected + shed + [detection("other", 0)], "c", dead_letters=3)
    assert flooded.processed == honest.processed == 20
    assert flooded.shed == 60 and flooded.dead_letters == 3
    assert flooded.answered() == 83
    # the same seconds, more shed results: the ratio must not rise
    bare_fps = 25.0
    assert po.overhead_ratio(flooded, 2.0, bare_fps) == po.overhead_ratio(honest, 2.0, bare_fps)
    assert po.overhead_ratio(flooded, 2.0, bare_fps) == pytest.approx(20 / 2.0 / bare_fps)


def test_pipeline_overhead_never_counts_a_shed_frame_that_also_came_back_ok() -> None:
    po = bench("pipeline_overhead")
    t = po.tally([detection("c", 0, "shed"), detection("c", 0), detection("c", 1, "shed")], "c")
    assert (t.processed, t.shed, t.answered()) == (1, 1, 2)


def test_pipeline_overhead_turns_shedding_off_for_its_worker(tmp_path: Path) -> None:
    po = bench("pipeline_overhead")
    s = po.bench_settings(Settings(), "127.0.0.1:1", tmp_path, threads=2)
    assert s.max_frame_age_ms == 0
    assert s.to_env()["AUTOSTEER_MAX_FRAME_AGE_MS"] == "0"


def test_offload_real_run_serves_only_detected_frames() -> None:
    off = bench("offload")
    t0 = 0.0
    frames = [off.Frame("c", i, 10.0 + i * 0.1, 1000) for i in range(40)]
    ok = [detection("c", i, ts_ms=int((10.0 + i * 0.1) * 1000)) for i in range(10)]
    shed = [detection("c", i, "shed", ts_ms=int((10.0 + i * 0.1) * 1000))
            for i in range(10, 40)]

    def run(dets: list[Detection]) -> object:
        return off.RealRun("p", frames, off.detected_results(dets, t0), [], 20.0, 1.0,
                           (0.0, 0.0), dets)

    honest = off.summarize_real(run(ok), warmup_s=5.0, duration_s=20.0)
    flooded = off.summarize_real(run(ok + shed), warmup_s=5.0, duration_s=20.0)
    assert flooded["fps"] == honest["fps"] == pytest.approx(10 / 15.0)
    assert flooded["shed"] == 30 and honest["shed"] == 0
    assert flooded["unfinished"] == 0 and honest["unfinished"] == 30
    assert flooded["p95"] >= honest["p95"] - 1e-9, "a shed frame waited as long as an unserved one"


def test_soak_reports_shed_frames_apart() -> None:
    soak = bench("soak")
    counts = soak.result_counts({"ok": {0, 1, 2}, "shed": {3, 4, 2}, "reused": {5}})
    assert counts == {"frames_detected": 3, "frames_shed": 2, "frames_reused": 1}
