"""Rankers on hand-built cubes (no servers): localization, root metric, deploys, silence."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import pytest
from autosteer.rootcause import (
    METRICS,
    Cube,
    Periods,
    RiskRanker,
    ZScoreRanker,
    cause_type,
    evidence_sql,
)
from autosteer.rootcause.queries import cube_sql, quote
from autosteer.telemetry.store import check_read_only

PERIODS = Periods(baseline_start_ms=0, baseline_end_ms=600_000, start_ms=620_000,
                  end_ms=680_000, window_s=10)
NODES = {"edge-1": ["cam0", "cam1"], "edge-2": ["cam2", "cam3"], "edge-3": ["cam4", "cam5"]}
Effect = Callable[[str, str, str, int], float]  # (node, camera, metric, bucket) -> multiplier


def wobble(*parts: object) -> float:
    """Deterministic noise in [-1, 1]."""
    return math.sin(zlib.crc32(repr(parts).encode()) % 10_000)


def build(effect: Effect | None = None, version: Callable[[str, int], str] | None = None,
          silent: str | None = None) -> Cube:
    """Three edge nodes, two cameras each; per window: 20 frames, infer 40 ms, queue 3 ms,
    score 0.7, 2 boxes per frame, CPU 40 %, RSS 700 MB, times ``effect``."""
    cube = Cube(PERIODS)
    effect = effect or (lambda node, cam, metric, bucket: 1.0)
    anomalous = range(PERIODS.start_ms, PERIODS.end_ms, 10_000)
    for bucket in range(0, PERIODS.end_ms, 10_000):
        for node, cams in NODES.items():
            def m(metric: str, cam: str = "", node: str = node, bucket: int = bucket) -> float:
                return effect(node, cam, metric, bucket)
            hb = (node, "", "")
            cube.add("host_cpu_percent", hb, "", bucket, 2 * 40 * m("host_cpu_percent")
                     * (1 + 0.03 * wobble(node, bucket)), 2)
            cube.add("cpu_percent", hb, "", bucket, 2 * 80.0 * (1 + 0.03 * wobble(bucket)), 2)
            cube.add("rss_bytes", hb, "", bucket, 2 * 7e8 * m("rss_bytes"), 2)
            for cam in cams:
                if silent == cam and bucket in anomalous:
                    continue
                leaf = (node, cam, "edge")
                v = version(node, bucket) if version else "1"
                n = 20
                noise = 1 + 0.03 * wobble(cam, bucket)
                cube.add("fps", leaf, v, bucket, n, 0)
                cube.add("infer_ms", leaf, v, bucket, n * 40 * noise * m("infer_ms", cam), n)
                cube.add("queue_ms", leaf, v, bucket, n * 3 * noise * m("queue_ms", cam), n)
                cube.add("total_ms", leaf, v, bucket, n * 50 * noise * m("infer_ms", cam), n)
                cube.add("score", leaf, v, bucket, 2 * n * 0.7 * noise * m("score", cam), 2 * n)
                cube.add("boxes_per_frame", leaf, v, bucket, 2 * n * noise * m("score", cam), n)
    return cube


def during(metric: str, factor: float, node: str | None = None,
           camera: str | None = None) -> Effect:
    def effect(n: str, cam: str, m: str, bucket: int) -> float:
        hit = (m == metric and bucket >= PERIODS.start_ms and (node is None or n == node)
               and (camera is None or cam == camera))
        return factor if hit else 1.0
    return effect


def both(*effects: Effect) -> Effect:
    return lambda *a: math.prod(e(*a) for e in effects)


def keys(cube: Cube, ranker: RiskRanker | ZScoreRanker | None = None) -> list[tuple]:
    return [c.key for c in (ranker or RiskRanker()).rank(cube)]


def test_a_slow_node_is_blamed_not_its_tier_or_cameras() -> None:
    ranked = keys(build(during("infer_ms", 2.0, node="edge-2")))
    assert ranked[0] == ("node", "edge-2", "infer_ms")
    assert ranked.index(("camera", "cam2", "infer_ms")) > 0


def test_the_upstream_metric_wins_over_what_it_drove() -> None:
    cube = build(both(during("host_cpu_percent", 2.0, node="edge-3"),
                      during("infer_ms", 1.8, node="edge-3")))
    top = RiskRanker().rank(cube)
    assert top[0].key == ("node", "edge-3", "host_cpu_percent")
    infer = next(c for c in top if c.key == ("node", "edge-3", "infer_ms"))
    assert infer.evidence["rootness"] == pytest.approx(0.25)


def test_a_new_model_version_is_a_deploy_and_names_the_same_node_as_an_alias() -> None:
    cube = build(during("score", 0.7, node="edge-1"),
                 version=lambda node, bucket: "2" if node == "edge-1"
                 and bucket >= PERIODS.start_ms else "1")
    top = RiskRanker().rank(cube)[0]
    assert top.key == ("model_version", "2", "score") and top.new_version
    assert top.same_as == ("node=edge-1",)
    assert top.leaves == (("edge-1", "cam0", "edge"), ("edge-1", "cam1", "edge"))
    assert top.baseline == pytest.approx(0.7, rel=0.02)
    assert top.anomaly == pytest.approx(0.49, rel=0.02)
    assert cause_type("model_version", "score", tiers={"edge"}, new_version=True) == "bad_deploy"
    # the naive ranker cannot score a version that has no baseline rows
    naive = ZScoreRanker(top=100).rank(cube)
    assert all(c.score == 0 for c in naive if c.dimension == "model_version" and c.value == "2")


def test_a_silent_camera_is_blamed_on_fps() -> None:
    ranked = RiskRanker().rank(build(silent="cam4"))
    assert ranked[0].key == ("camera", "cam4", "fps")
    assert (ranked[0].baseline, ranked[0].anomaly) == (2.0, 0.0)


def test_lighting_on_one_camera_is_blamed_on_its_score_not_its_box_count() -> None:
    ranked = keys(build(during("score", 0.75, camera="cam1")))
    assert ranked[0] == ("camera", "cam1", "score")


def test_nothing_moved_means_weak_scores() -> None:
    assert all(c.score < 0.2 for c in RiskRanker().rank(build()))


def test_zscore_ranker_orders_by_absolute_z() -> None:
    ranked = ZScoreRanker(top=50).rank(build(during("queue_ms", 3.0, node="edge-1")))
    assert ranked[0].metric == "queue_ms"
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)


def test_periods_align_to_windows_and_leave_a_gap() -> None:
    p = Periods.around(1_005_000, 1_012_000, window_s=10, baseline_s=600, gap_s=20)
    assert (p.start_ms, p.end_ms) == (1_000_000, 1_020_000)
    assert (p.baseline_start_ms, p.baseline_end_ms) == (380_000, 980_000)
    assert p.which(979_999) == "baseline" and p.which(985_000) is None
    with pytest.raises(ValueError, match="period must be 'baseline' or 'anomaly'"):
        p.bounds("gap")


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_all_generated_sql_is_read_only(metric: str) -> None:
    m = METRICS[metric]
    check_read_only(evidence_sql("db", m, "node", "edge-1", PERIODS))
    check_read_only(evidence_sql("db", m, "model_version", "2", PERIODS,
                                 leaves=[("n", "c'1", "edge")], version="2"))
    check_read_only(cube_sql("db", m.table, PERIODS))


def test_values_are_quoted() -> None:
    assert quote("a'b\\c") == "'a\\'b\\\\c'"
    assert "'x\\' OR 1'" in evidence_sql("db", METRICS["fps"], "camera", "x' OR 1", PERIODS)


def test_windows_still_open_when_analyzed_stay_out_of_the_anomalous_period() -> None:
    """An open (or not yet stored) window has no rows: inside the period it would read
    as 0 frames/s on every leaf. The period takes only whole windows ended by ``until``."""
    from autosteer.anomaly import Anomaly
    from autosteer.rootcause import RootCauseAnalyzer

    a = Anomaly(node="edge-1", camera="cam1", tier="edge", metric="infer_ms",
                detector="RobustZScore", start_ms=620_000, end_ms=650_000, window_s=10,
                score=9.0, threshold=6.0)
    analyzer = RootCauseAnalyzer(store=None, min_anomaly_s=30)  # type: ignore[arg-type]
    assert analyzer.periods(a).end_ms == 650_000
    assert analyzer.periods(a, until_ms=655_000).end_ms == 650_000  # 650-660 s still open
    assert analyzer.periods(a, until_ms=671_000).end_ms == 670_000
    assert analyzer.periods(a, until_ms=640_000).end_ms == 650_000  # never shorter
