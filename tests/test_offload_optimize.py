"""Projection onto the feasible set and projected gradient descent."""

from __future__ import annotations

import numpy as np
import pytest
from autosteer.offload.optimize import Halfspace, pgd, project, uniform_interval, violation


def feasible_samples(hs: list[Halfspace], n: int, rng: np.random.Generator) -> np.ndarray:
    pts = rng.uniform(0, 1, size=(20_000, n))
    ok = np.all([pts @ h.a <= h.b for h in hs], axis=0)
    return pts[ok]


@pytest.mark.parametrize("seed", range(8))
def test_projection_is_feasible_and_nearest(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 5))
    hs = [Halfspace(rng.uniform(0.2, 1.0, n), float(rng.uniform(0.5, 1.5))),
          Halfspace(-rng.uniform(0.2, 1.0, n), -float(rng.uniform(0.0, 0.3)))]
    pts = feasible_samples(hs, n, rng)
    assert len(pts) > 0
    for _ in range(5):
        y = rng.normal(0.5, 1.0, n)
        x = project(y, hs)
        assert violation(x, hs) < 1e-6 and np.all((x >= -1e-9) & (x <= 1 + 1e-9))
        nearest = np.min(np.linalg.norm(pts - y, axis=1))
        assert np.linalg.norm(x - y) <= nearest + 1e-6


def test_projection_keeps_feasible_points_and_is_idempotent() -> None:
    h = [Halfspace(np.array([1.0, 1.0]), 1.0)]
    inside = np.array([0.2, 0.3])
    assert np.allclose(project(inside, h), inside)
    once = project(np.array([2.0, -1.0]), h)
    assert np.allclose(project(once, h), once)


def test_projection_respects_a_lower_bound() -> None:
    x = project(np.array([-1.0, 0.5]), [], lo=0.1)
    assert x.tolist() == [0.1, 0.5]


def test_stability_constraint_as_a_halfspace() -> None:
    # edge: 32 frames/s * 40 ms * (1 - x) <= 0.9  <=>  -1.28 x <= 0.9 - 1.28
    h = Halfspace(np.array([-1.28]), 0.9 - 1.28, "edge util")
    assert project(np.array([0.0]), [h])[0] == pytest.approx(1 - 0.9 / 1.28)
    assert h.slack(np.array([0.5])) > 0 > h.slack(np.array([0.1]))


def test_uniform_interval() -> None:
    hs = [Halfspace(np.array([1.0, 1.0]), 1.0), Halfspace(np.array([-1.0, -1.0]), -0.4)]
    assert uniform_interval(hs) == pytest.approx((0.2, 0.5))
    assert uniform_interval(hs + [Halfspace(np.array([1.0, 1.0]), 0.2)]) is None
    assert uniform_interval([Halfspace(np.zeros(2), -1.0)]) is None


def test_pgd_finds_the_constrained_minimum() -> None:
    h = [Halfspace(np.array([1.0, 1.0]), 1.0)]
    target = np.array([0.9, 0.8])

    def f(X: np.ndarray) -> np.ndarray:
        return ((X - target) ** 2).sum(axis=1)

    x, fx, steps = pgd(f, [np.zeros(2)], h, tol=1e-9, max_steps=50)
    assert x == pytest.approx([0.55, 0.45], abs=2e-3)
    assert violation(x, h) < 1e-9 and steps > 0


def test_pgd_warm_start_wins_ties_and_never_worsens() -> None:
    def flat(X: np.ndarray) -> np.ndarray:
        return np.zeros(len(X))

    warm = np.array([0.3])
    x, _, steps = pgd(flat, [warm, np.array([1.0])], [])
    assert x.tolist() == [0.3] and steps == 0


def test_pgd_picks_the_better_basin_among_starts() -> None:
    def two_wells(X: np.ndarray) -> np.ndarray:  # local min at 0.1, global at 0.9
        x = X[:, 0]
        return np.minimum((x - 0.1) ** 2 + 0.05, (x - 0.9) ** 2)

    x, _, _ = pgd(two_wells, [np.array([0.1]), np.array([1.0])], [], tol=1e-9, max_steps=50)
    assert x[0] == pytest.approx(0.9, abs=0.01)
