"""Scorers and the Alarm: river's contract, warm-up, hysteresis, no poisoning."""

from __future__ import annotations

import random

import pytest
from autosteer.anomaly import Alarm, RobustHalfSpaceTrees, RobustZScore, Scorer
from river import anomaly


def scorers() -> list[Scorer]:
    return [RobustZScore(window_size=50), RobustHalfSpaceTrees(window_size=50, seed=3),
            anomaly.HalfSpaceTrees(window_size=50, seed=3)]


def normal(rng: random.Random) -> dict[str, float]:
    return {"a": rng.gauss(0.5, 0.05), "b": rng.gauss(0.3, 0.05)}


@pytest.mark.parametrize("scorer", scorers(), ids=lambda s: type(s).__name__)
def test_every_scorer_follows_the_river_contract(scorer: Scorer) -> None:
    rng = random.Random(0)
    assert isinstance(scorer, Scorer)
    for _ in range(200):
        assert scorer.learn_one(normal(rng)) is None
    inlier = scorer.score_one({"a": 0.5, "b": 0.3})
    outlier = scorer.score_one({"a": 0.99, "b": 0.01})
    assert isinstance(inlier, float) and isinstance(outlier, float)
    assert outlier > inlier


@pytest.mark.parametrize("scorer", scorers()[:2], ids=lambda s: type(s).__name__)
def test_constructors_keep_their_arguments_so_repr_rebuilds_the_scorer(scorer: Scorer) -> None:
    ns = {"RobustZScore": RobustZScore, "RobustHalfSpaceTrees": RobustHalfSpaceTrees}
    clone = eval(repr(scorer), ns)  # our own repr, nothing else
    assert repr(clone) == repr(scorer)
    rng_a, rng_b = random.Random(5), random.Random(5)
    for _ in range(120):
        scorer.learn_one(normal(rng_a))
        clone.learn_one(normal(rng_b))
    x = {"a": 0.8, "b": 0.1}
    assert scorer.score_one(x) == clone.score_one(x)


def level(values: list[float], det: Alarm) -> list[int]:
    """Indices at which ``det`` opened an anomaly."""
    opened = []
    for i, v in enumerate(values):
        det.update({"m": v})
        if det.started:
            opened.append(i)
    return opened


def steady(n: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [40.0 + rng.gauss(0, 1.0) for _ in range(n)]


def test_no_page_during_warm_up_even_on_wild_values() -> None:
    det = Alarm(RobustZScore(), threshold=5.0, warmup=30)
    assert level([40.0, 400.0, 4000.0, 40.0, 400.0] * 6, det) == []
    assert det.warm and not det.is_anomaly


def test_one_spike_does_not_page_and_is_not_learned() -> None:
    scorer = RobustZScore(window_size=40)
    det = Alarm(scorer, threshold=5.0, warmup=20, enter=3)
    values = steady(40) + [200.0] + steady(10, seed=2) + [200.0, 200.0] + steady(10, seed=3)
    assert level(values, det) == []
    assert max(scorer._windows["m"]._sorted) < 50  # the spikes never entered the baseline


def test_a_level_shift_pages_on_its_enter_th_window_and_closes_after_exit_calm_ones() -> None:
    det = Alarm(RobustZScore(), threshold=5.0, clear=3.0, warmup=20, enter=3, exit=2)
    shift = steady(40) + [60.0] * 5
    assert level(shift, det) == [42]
    assert det.is_anomaly and det.run == 5
    det.update({"m": 40.5})
    assert det.is_anomaly and not det.ended
    det.update({"m": 39.8})
    assert det.ended and not det.is_anomaly


def test_a_lasting_shift_becomes_the_new_normal_after_adapt_after() -> None:
    det = Alarm(RobustZScore(window_size=40), threshold=5.0, clear=3.0, warmup=20,
                   adapt_after=10)
    opened = level(steady(40) + [60.0 + v - 40 for v in steady(80, seed=4)], det)
    assert opened == [42]
    assert not det.is_anomaly  # closed once the new level filled the window


def test_detector_rejects_settings_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="clear .* must not exceed threshold"):
        Alarm(RobustZScore(), threshold=3.0, clear=4.0)
    with pytest.raises(ValueError, match="enter and exit must be at least 1"):
        Alarm(RobustZScore(), threshold=3.0, enter=0)


def test_robust_zscore_reports_signed_z_and_the_median() -> None:
    z = RobustZScore(window_size=20, min_samples=5)
    assert z.score_one({"m": 1.0}) == 0.0  # nothing learned yet
    for v in [10, 11, 9, 10, 12, 8, 10, 11, 9, 10]:
        z.learn_one({"m": float(v)})
    assert z.baseline("m") == 10.0 and z.baseline("other") is None
    scores = z.zscores({"m": 5.0})
    assert scores["m"] < -3
    assert z.score_one({"m": 5.0}) == pytest.approx(-scores["m"])
