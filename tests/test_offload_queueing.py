"""The queueing model's math: closed forms, monotonicity, the stability boundary."""

from __future__ import annotations

import math

import numpy as np
import pytest
from autosteer.offload.profiles import TierProfile
from autosteer.offload.queueing import (
    KNEE,
    ModelInputs,
    OffloadModel,
    departure_scv,
    drain_mean,
    erlang_c,
    gg1_wait,
    ggk_wait,
    mixture_quantile,
)

CLOUD = TierProfile((0.020, 0.040, 0.056, 0.071), servers=2)


def inputs(**kw) -> ModelInputs:
    base = dict(rates_fps=(8.0,) * 4, sizes_bytes=(80_000.0,) * 4, edge_s=0.040, cloud=CLOUD,
                bandwidth_Bps=50e6 / 8, delay_s=0.010, jitter_s=0.001, arrival_scv=1.0)
    base.update(kw)
    return ModelInputs(**base)


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.8, 0.95])
def test_mm1_and_md1_mean_wait(rho: float) -> None:
    s = 0.02
    assert gg1_wait(rho, 1.0, 1.0, s) == pytest.approx(rho * s / (1 - rho))
    assert gg1_wait(rho, 1.0, 0.0, s) == pytest.approx(rho * s / (2 * (1 - rho)))


def test_mg1_is_pollaczek_khinchine() -> None:
    rho, s, cs2 = 0.7, 0.03, 0.4
    assert gg1_wait(rho, 1.0, cs2, s) == pytest.approx(rho * s * (1 + cs2) / (2 * (1 - rho)))


@pytest.mark.parametrize("k,a", [(1, 0.5), (2, 1.0), (3, 2.1), (4, 3.5)])
def test_erlang_c_matches_the_textbook_sum(k: int, a: float) -> None:
    rho = a / k
    head = sum(a ** n / math.factorial(n) for n in range(k))
    tail = a ** k / math.factorial(k) / (1 - rho)
    assert erlang_c(k, a) == pytest.approx(tail / (head + tail))


def test_mmk_wait_and_k1_equals_gg1() -> None:
    k, lam, s = 2, 60.0, 0.02
    rho = lam * s / k
    expected = erlang_c(k, lam * s) * s / (k * (1 - rho))
    assert ggk_wait(k, rho, 1.0, 1.0, s) == pytest.approx(expected)
    assert ggk_wait(1, 0.6, 0.5, 0.2, 0.01) == pytest.approx(gg1_wait(0.6, 0.5, 0.2, 0.01))


def test_wait_grows_with_load_and_without_bound_towards_one() -> None:
    rhos = np.linspace(0.05, 0.99, 40)
    w = gg1_wait(rhos, 1.0, 0.0, 0.04)
    assert np.all(np.diff(w) > 0)
    assert gg1_wait(0.97, 1.0, 0.0, 0.04) > 10 * gg1_wait(0.7, 1.0, 0.0, 0.04)


def test_past_the_knee_the_wait_is_finite_and_still_rising() -> None:
    w = gg1_wait(np.array([KNEE, 1.0, 1.5, 3.0]), 1.0, 1.0, 0.04)
    assert np.all(np.isfinite(w)) and np.all(np.diff(w) > 0)


def test_departure_scv_interpolates_between_arrivals_and_service() -> None:
    assert departure_scv(np.array(0.0), 1.0, 0.0) == pytest.approx(1.0)
    assert departure_scv(np.array(1.0), 1.0, 0.0) == pytest.approx(0.0)


def test_mixture_quantile_closed_forms() -> None:
    one = np.ones((1, 1))
    theta = 0.05  # always waits, exponential: q-quantile = theta ln(1 / (1 - q))
    q = mixture_quantile(0.95, one, 0 * one, 1e-9 * one, one, theta * one)
    assert q[0] == pytest.approx(theta * math.log(20), rel=1e-4)
    normal = mixture_quantile(0.95, one, 0.1 * one, 0.01 * one, 0 * one, one)
    assert normal[0] == pytest.approx(0.1 + 1.6449 * 0.01, rel=1e-4)
    # two point masses, 90% at 10 ms and 10% at 100 ms: p95 sits on the slow one
    two = mixture_quantile(0.95, np.array([[0.9], [0.1]]), np.array([[0.01], [0.1]]),
                           np.full((2, 1), 1e-5), np.zeros((2, 1)), np.ones((2, 1)))
    assert two[0] == pytest.approx(0.1, abs=1e-4)


def test_model_mean_latency_rises_with_arrival_rate() -> None:
    means = [float(OffloadModel(inputs(rates_fps=(r,) * 4)).predict(0.5).mean_s)
             for r in (2.0, 5.0, 8.0, 10.0, 11.0)]
    assert means == sorted(means)


def test_model_paths_add_up() -> None:
    inp = inputs(arrival_scv=0.0, jitter_s=0.0)
    p = OffloadModel(inp).predict(1.0)  # all cloud, a light load: no waits to speak of
    wire = 80_000 / inp.bandwidth_Bps
    assert p.cloud_mean_s == pytest.approx(wire + 2 * inp.delay_s + CLOUD.service_s(1), rel=0.02)
    edge = OffloadModel(inputs(rates_fps=(1.0,), sizes_bytes=(1.0,))).predict(0.0)
    assert edge.edge_mean_s == pytest.approx(0.040, rel=0.05)
    assert float(edge.mean_s) == pytest.approx(float(edge.edge_mean_s))


def test_stability_boundary_per_queue() -> None:
    m = OffloadModel(inputs())  # 32 frames/s; the edge serves 25, the wire 78
    x = np.linspace(0, 1, 101)
    p = m.predict(np.repeat(x[:, None], 4, axis=1))
    edge_ok = (1 - x) * 32 * 0.040 < 1
    assert np.array_equal(p.stable, edge_ok)
    assert float(m.predict(0.0).throughput_fps) == pytest.approx(25.0)
    assert float(m.predict(0.5).throughput_fps) == pytest.approx(32.0)
    slow = OffloadModel(inputs(bandwidth_Bps=10e6 / 8))  # wire: 15.6 frames/s
    assert not bool(slow.predict(0.6).stable) and bool(slow.predict(0.4).stable)


def test_vectorized_rows_match_single_calls() -> None:
    m = OffloadModel(inputs())
    rows = np.array([[0.3, 0.3, 0.3, 0.3], [0.2, 0.5, 0.7, 0.9]])
    both = m.predict(rows)
    for i, r in enumerate(rows):
        one = m.predict(r)
        assert float(one.p95_s) == pytest.approx(float(both.p95_s[i]), rel=1e-9)
        assert float(one.mean_s) == pytest.approx(float(both.mean_s[i]), rel=1e-9)


def test_accuracy_is_the_share_weighted_mean() -> None:
    assert float(OffloadModel(inputs()).predict(0.25).accuracy) == pytest.approx(0.925)


def test_bad_inputs_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="one entry per camera"):
        inputs(rates_fps=(1.0, 2.0))
    with pytest.raises(ValueError, match="bandwidth_Bps"):
        inputs(bandwidth_Bps=0.0)
    with pytest.raises(ValueError, match="batch_s"):
        TierProfile(())


def test_shared_cores_make_offloading_slow_the_edge() -> None:
    alone = OffloadModel(inputs())
    shared = OffloadModel(inputs(edge_slowdown=0.05, cloud_slowdown=0.02))
    f_e, f_c = shared.slowdown(np.array([[0.0] * 4, [0.5] * 4]))
    assert f_e[0] == pytest.approx(1.0) and f_e[1] > 1.5  # the cloud's 16 frames/s cost
    assert f_c[1] > 1.0
    assert float(shared.predict(0.5).edge_util) > float(alone.predict(0.5).edge_util)
    assert float(shared.predict(0.0).edge_util) == pytest.approx(
        float(alone.predict(0.0).edge_util), rel=0.05)  # nothing on the cloud, no slowdown


def test_edge_batches_and_overheads_add_latency() -> None:
    base = OffloadModel(inputs())
    batched = OffloadModel(inputs(edge_batch=4, edge_overhead_s=0.030, cloud_overhead_s=0.010))
    p0, p1 = base.predict(0.3), batched.predict(0.3)
    assert float(p1.edge_batch) > 1.0 and float(p0.edge_batch) == 1.0
    assert float(p1.edge_mean_s) > float(p0.edge_mean_s) + 0.030
    assert float(p1.cloud_mean_s) == pytest.approx(float(p0.cloud_mean_s) + 0.010)
    with pytest.raises(ValueError, match="edge_batch"):
        inputs(edge_batch=0)


def test_drain_mean_queued_frames_come_back_first_and_old() -> None:
    # 10 frames, all 0.1 s old, drained over 0.5 s: the j-th back at 0.05 (j + 1) s
    n, total = drain_mean([0.1] * 10, free_s=0.5, tail_s=0.0, rate_fps=0.0, util=0.5,
                          steady_s=0.05, horizon_s=1.0)
    assert n == 10 and total / n == pytest.approx(0.1 + 0.275)
    # only those finishing within the horizon count
    assert drain_mean([0.0] * 10, 2.0, 0.0, 0.0, 0.5, 0.05, 1.0)[0] == 5
    # no backlog: new frames take the steady state
    n, total = drain_mean([], 0.0, 0.0, 10.0, 0.5, 0.05, 1.0)
    assert n == pytest.approx(10 * 30 / 32) and total / n == pytest.approx(0.05)  # t <= 0.95
    # a backlog delays the new frames by what is left of it when they arrive
    n2, total2 = drain_mean([], 0.4, 0.0, 10.0, 0.5, 0.05, 1.0)
    assert total2 / n2 > 0.05
