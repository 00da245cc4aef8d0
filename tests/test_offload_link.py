"""The emulated link, and estimating it back from measured transits only."""

from __future__ import annotations

import random

import pytest
from autosteer.offload.estimate import Ewma, LinkEstimator, RateMeter, Slowdown, Window
from autosteer.offload.link import EmulatedLink


def test_one_frame_is_wire_plus_delay() -> None:
    link = EmulatedLink(bandwidth_bps=50e6, delay_s=0.010)
    assert link.transit_s(80_000, 0.0) == pytest.approx(80_000 * 8 / 50e6 + 0.010)
    assert link.rtt_s == pytest.approx(0.020)


def test_frames_queue_fifo_on_the_wire() -> None:
    link = EmulatedLink(bandwidth_bps=8e6, delay_s=0.0)  # 1 MB/s: 10 ms per 10 kB
    got = [link.transit_s(10_000, 0.0) for _ in range(3)]
    assert got == pytest.approx([0.010, 0.020, 0.030])
    assert link.backlog_s(0.005) == pytest.approx(0.025)
    assert link.transit_s(10_000, 1.0) == pytest.approx(0.010)  # idle again


def test_settings_change_at_run_time() -> None:
    link = EmulatedLink(bandwidth_bps=10e6, delay_s=0.050)
    before = link.transit_s(10_000, 0.0)
    link.set(delay_s=0.250, bandwidth_bps=20e6)
    after = link.transit_s(10_000, 5.0)
    assert after == pytest.approx(10_000 * 8 / 20e6 + 0.250)
    assert after > before


def test_jitter_is_seeded_and_non_negative() -> None:
    a = EmulatedLink(10e6, 0.05, jitter_s=0.005, seed=3)
    b = EmulatedLink(10e6, 0.05, jitter_s=0.005, seed=3)
    ta = [a.transit_s(1000, i * 1.0) for i in range(50)]
    assert ta == [b.transit_s(1000, i * 1.0) for i in range(50)]
    assert min(ta) >= 1000 * 8 / 10e6 + 0.05


def test_bad_settings_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="bandwidth_bps > 0"):
        EmulatedLink(0, 0.01)
    link = EmulatedLink(1e6, 0.01)
    with pytest.raises(ValueError, match="delay_s >= 0"):
        link.set(delay_s=-1)
    with pytest.raises(ValueError, match="size_bytes"):
        link.transit_s(-5, 0.0)


@pytest.mark.parametrize("bw,delay,jitter", [(50e6, 0.010, 0.001), (10e6, 0.050, 0.005)])
def test_estimator_recovers_the_link_from_transits(bw: float, delay: float,
                                                  jitter: float) -> None:
    link = EmulatedLink(bw, delay, jitter_s=jitter, seed=1)
    est = LinkEstimator()
    rng = random.Random(2)
    t = 0.0
    for i in range(400):  # a loaded link: frames often queue behind each other
        t += rng.expovariate(0.6 * bw / 8 / 80_000)
        size = int(80_000 * rng.uniform(0.9, 1.1))
        est.sent(i, size, t)
        est.learn(i, link.transit_s(size, t))
    assert est.bandwidth_Bps * 8 == pytest.approx(bw, rel=0.08)
    assert est.delay_s == pytest.approx(delay + jitter, abs=max(0.003, 0.5 * jitter))


def test_estimator_is_conservative_before_any_pair() -> None:
    est = LinkEstimator()
    for i in range(5):  # far apart: no frame ever queues
        est.sent(i, 80_000, i * 10.0)
        est.learn(i, 0.064 + 0.050)
    assert est.bandwidth_Bps <= 80_000 / 0.064  # a lower bound on the bandwidth
    est.learn("unknown", 1.0)  # frames it never saw sent are ignored
    assert est.samples == 5


def test_ewma_window_and_rate_meter() -> None:
    e = Ewma(0.5)
    assert e.get(7.0) == 7.0
    for v in (1.0, 3.0):
        e.update(v)
    assert e.value == 2.0 and e.scv > 0
    w = Window(3)
    for v in (5.0, 1.0, 2.0, 3.0):
        w.update(v)
    assert len(w) == 3 and w.mean == pytest.approx(2.0)
    m = RateMeter(window_s=1.0)
    for i in range(30):
        m.update(i * 0.1)
    assert m.rate(2.9) == pytest.approx(10.0, rel=0.15)
    bursty = RateMeter(window_s=10.0)
    for k in range(5):
        for _ in range(20):
            bursty.update(k * 2.0)
    assert bursty.dispersion(0.25) > 5
    with pytest.raises(ValueError, match="alpha"):
        Ewma(0.0)


def test_a_dumped_backlog_is_not_a_sustained_rate() -> None:
    m = RateMeter(window_s=10.0, min_span_s=2.0)
    for _ in range(8):
        m.update(5.0)  # eight frames at once
    assert m.rate(5.1) == pytest.approx(4.0)  # over the least span, not 0.1 s
    assert m.rate(9.0) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="min_span_s"):
        RateMeter(window_s=1.0, min_span_s=2.0)


def test_slowdown_learns_shared_cores_and_ignores_a_flat_load() -> None:
    sd = Slowdown()
    for _ in range(100):
        sd.update(3.0, 0.050)  # the other tier always at 3 frames/s: nothing to learn
    assert sd.k == 0.0
    for i in range(256):
        u = float(i % 8)
        sd.update(u, 0.050 * (1 + 0.1 * u))
    assert sd.k == pytest.approx(0.1, rel=0.1)
    for i in range(256):
        sd.update(float(i % 8), 0.050)  # separate boxes: no slowdown
    assert sd.k == pytest.approx(0.0, abs=0.01)
