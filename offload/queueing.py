"""The queueing model: edge queue, uplink queue, cloud queue, as functions of the offload.

Closed forms first (all times in seconds, ``rho`` is utilization, ``ca2``/``cs2`` the
squared coefficients of variation of inter-arrival and service times):

>>> round(float(gg1_wait(0.5, 1.0, 1.0, 0.010)), 6)   # M/M/1: rho s / (1 - rho)
0.01
>>> round(float(gg1_wait(0.5, 1.0, 0.0, 0.010)), 6)   # M/D/1: half of that
0.005
>>> round(float(erlang_c(2, 1.0)), 4)                  # M/M/2 at rho = 0.5
0.3333

:class:`OffloadModel` chains them: ``x[i]`` is the share of camera ``i``'s frames sent
to the cloud; the rest queue at the edge.

>>> from autosteer.offload.profiles import TierProfile
>>> m = OffloadModel(ModelInputs(rates_fps=(8.0,) * 4, sizes_bytes=(80_000.0,) * 4,
...     edge_s=0.040, cloud=TierProfile((0.020, 0.040, 0.056, 0.071), servers=2),
...     bandwidth_Bps=50e6 / 8, delay_s=0.010))
>>> p = m.predict(0.3)
>>> bool(p.stable), round(float(p.edge_util), 3), round(float(p.link_util), 3)
(True, 0.896, 0.123)
>>> bool(m.predict(0.0).stable)   # 32 frames/s on a 25 frames/s edge
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from autosteer.offload.profiles import TierProfile

KNEE = 0.98  # past this utilization, waits grow linearly instead of without bound
SQRT2 = float(np.sqrt(2.0))


def gg1_wait(rho: np.ndarray | float, ca2: float, cs2: float | np.ndarray,
             service_s: np.ndarray | float) -> np.ndarray:
    """Mean wait in a G/G/1 queue (Kingman; exact for M/G/1, Pollaczek-Khinchine).

    Past :data:`KNEE` the wait is extended linearly so optimizers see finite slopes;
    callers check ``rho < 1`` for stability."""
    return ggk_wait(1, rho, ca2, cs2, service_s)


def erlang_c(k: int, offered: np.ndarray | float) -> np.ndarray:
    """Probability that an arrival waits in M/M/k with ``offered`` = lambda * s Erlangs.

    Offered loads at or past ``k`` are clipped to the knee (the queue is unstable)."""
    a = np.minimum(np.asarray(offered, dtype=float), KNEE * k)
    b = np.ones_like(a)
    for j in range(1, k + 1):  # Erlang B recursion, then B -> C
        b = a * b / (j + a * b)
    rho = a / k
    return b / (1.0 - rho * (1.0 - b))


def ggk_wait(k: int, rho: np.ndarray | float, ca2: float | np.ndarray,
             cs2: float | np.ndarray, service_s: np.ndarray | float) -> np.ndarray:
    """Mean wait in G/G/k (Allen-Cunneen): ``C(k, a) s / (k (1 - rho)) (ca2 + cs2) / 2``."""
    rho = np.asarray(rho, dtype=float)
    s = np.asarray(service_s, dtype=float)
    scale = (np.asarray(ca2) + np.asarray(cs2)) / 2.0

    def wait(r: np.ndarray) -> np.ndarray:
        return erlang_c(k, r * k) * s / (k * (1.0 - r)) * scale

    r = np.clip(rho, 0.0, KNEE)
    w = wait(r)
    over = rho > KNEE
    if np.any(over):  # linear extension: slope by a small secant below the knee
        h = 1e-4
        slope = (wait(np.full_like(r, KNEE)) - wait(np.full_like(r, KNEE - h))) / h
        w = np.where(over, w + slope * (rho - KNEE), w)
    return w


def departure_scv(rho: np.ndarray, ca2: float, cs2: float) -> np.ndarray:
    """SCV of a G/G/1 queue's departures (Whitt's linking equation), the next queue's input."""
    r2 = np.clip(rho, 0.0, 1.0) ** 2
    return r2 * cs2 + (1.0 - r2) * ca2


def _log_erfc(x: np.ndarray) -> np.ndarray:
    """log(erfc(x)) with relative accuracy ~1e-7 everywhere (Chebyshev fit, Numerical
    Recipes' erfcc), stable far into the tail where erfc underflows."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    log_pos = np.log(t) - z * z + poly  # log erfc(|x|)
    return np.where(x >= 0, log_pos, np.log(2.0 - np.exp(log_pos)))


def _log_phi(z: np.ndarray) -> np.ndarray:
    """log of the standard normal CDF."""
    return np.log(0.5) + _log_erfc(-z / SQRT2)


def path_cdf(t: np.ndarray, mu: np.ndarray, sigma: np.ndarray, p: np.ndarray,
             theta: np.ndarray) -> np.ndarray:
    """P(T <= t) for T = mu + sigma N + W, N standard normal, W = 0 with probability
    ``1 - p`` and exponential with mean ``theta`` otherwise (an exponentially modified
    Gaussian mixture: the usual heavy-traffic shape of a queue's sojourn time)."""
    sigma = np.maximum(sigma, 1e-5)
    lam = 1.0 / np.maximum(theta, 1e-6)
    z = (t - mu) / sigma
    log_tail = -lam * (t - mu) + 0.5 * (lam * sigma) ** 2 + _log_phi(z - lam * sigma)
    return np.exp(_log_phi(z)) - p * np.exp(np.minimum(log_tail, 50.0))


def mixture_quantile(q: float, weights: np.ndarray, mu: np.ndarray, sigma: np.ndarray,
                     p: np.ndarray, theta: np.ndarray, iters: int = 26) -> np.ndarray:
    """The ``q`` quantile of a weighted mixture of :func:`path_cdf` paths, by bisection
    vectorized over candidates. Arguments are arrays of shape (paths, candidates).

    >>> one = np.ones((1, 1))
    >>> round(float(mixture_quantile(0.95, one, 0 * one, 1e-9 * one, one, one)[0]), 4)
    2.9957
    """
    sigma = np.maximum(sigma, 1e-5)
    lo = np.maximum((mu - 6 * sigma).min(axis=0), 0.0)
    hi = (mu + 8 * sigma + theta * (np.log(1.0 / (1.0 - q)) + 8.0)).max(axis=0)
    f_lo = np.zeros_like(lo)
    f_hi = np.ones_like(hi)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        f = (weights * path_cdf(mid, mu, sigma, p, theta)).sum(axis=0)
        below = f < q
        lo, f_lo = np.where(below, mid, lo), np.where(below, f, f_lo)
        hi, f_hi = np.where(below, hi, mid), np.where(below, f_hi, f)
    frac = np.clip((q - f_lo) / np.maximum(f_hi - f_lo, 1e-12), 0.0, 1.0)
    return lo + frac * (hi - lo)


@dataclass(frozen=True)
class ModelInputs:
    """Everything the model needs, all estimated from live telemetry (plus profiles).

    Rates in frames/s per camera, sizes in bytes, times in seconds. ``delay_s`` is the
    one-way propagation delay (results come back over the same delay); ``jitter_s`` its
    standard deviation. ``cloud`` is the cloud's batch profile scaled to what telemetry
    shows.

    - ``edge_batch``: most frames the edge detector takes at once (each costs ``edge_s``);
      a frame's result waits for its whole batch.
    - ``edge_overhead_s``, ``cloud_overhead_s``: time on each path outside the modelled
      queues (capture -> router, the hop to the edge detector), added to the latency.
    - ``edge_slowdown``, ``cloud_slowdown``: when both tiers share cores, each one's
      service time is its time alone x (1 + slowdown x the frames/s the other tier
      finishes); ``edge_s`` and ``cloud`` are then the times alone. 0 = separate boxes.
    - ``bytes_ratio``, ``encode_s``: cloud frames are re-encoded before the uplink (a
      :class:`~autosteer.offload.profiles.QualityLevel`): ``sizes_bytes`` x ``bytes_ratio``
      go on the wire, after ``encode_s`` seconds in a FIFO encoder of their own on the edge
      box. ``cloud_accuracy`` is then the level's accuracy."""

    rates_fps: tuple[float, ...]
    sizes_bytes: tuple[float, ...]
    edge_s: float
    cloud: TierProfile
    bandwidth_Bps: float
    delay_s: float
    jitter_s: float = 0.0
    arrival_scv: float = 1.0
    edge_scv: float = 0.01
    size_scv: float = 0.01
    edge_accuracy: float = 0.90
    cloud_accuracy: float = 1.0
    edge_batch: int = 1
    edge_overhead_s: float = 0.0
    cloud_overhead_s: float = 0.0
    edge_slowdown: float = 0.0
    cloud_slowdown: float = 0.0
    bytes_ratio: float = 1.0
    encode_s: float = 0.0

    def __post_init__(self) -> None:
        if len(self.rates_fps) != len(self.sizes_bytes) or not self.rates_fps:
            raise ValueError(f"rates_fps and sizes_bytes need one entry per camera; got "
                             f"{len(self.rates_fps)} and {len(self.sizes_bytes)}")
        if self.edge_s <= 0 or self.bandwidth_Bps <= 0 or self.delay_s < 0:
            raise ValueError(f"edge_s and bandwidth_Bps must be > 0 and delay_s >= 0; got "
                             f"{self.edge_s}, {self.bandwidth_Bps}, {self.delay_s}")
        if self.edge_batch < 1 or min(self.edge_overhead_s, self.cloud_overhead_s,
                                      self.edge_slowdown, self.cloud_slowdown) < 0:
            raise ValueError(f"edge_batch must be >= 1 and overheads and slowdowns >= 0; got "
                             f"{self.edge_batch}, {self.edge_overhead_s}, "
                             f"{self.cloud_overhead_s}, {self.edge_slowdown}, "
                             f"{self.cloud_slowdown}")
        if not 0.0 < self.bytes_ratio <= 1.0 or self.encode_s < 0:
            raise ValueError(f"bytes_ratio must be within (0, 1] and encode_s >= 0; got "
                             f"{self.bytes_ratio} and {self.encode_s}")


@dataclass(frozen=True)
class Prediction:
    """The model's view of one offload vector (arrays when several were asked at once)."""

    mean_s: np.ndarray
    p95_s: np.ndarray
    edge_mean_s: np.ndarray
    cloud_mean_s: np.ndarray
    edge_util: np.ndarray
    link_util: np.ndarray
    cloud_util: np.ndarray
    throughput_fps: np.ndarray
    accuracy: np.ndarray
    cloud_batch: np.ndarray
    edge_batch: np.ndarray
    encode_util: np.ndarray

    @property
    def stable(self) -> np.ndarray:
        """True where every queue is below utilization 1."""
        return ((self.edge_util < 1) & (self.link_util < 1) & (self.cloud_util < 1)
                & (self.encode_util < 1))


class OffloadModel:
    """Hierarchical queues: edge G/G/1, then uplink G/G/1 and cloud G/G/k with batching.

    ``predict(x)`` takes the per-camera cloud shares (a scalar applies to every camera; a
    2-D array asks for several candidates at once, one per row)."""

    def __init__(self, inputs: ModelInputs, quantile: float = 0.95) -> None:
        self.inputs = inputs
        self.quantile = quantile
        self._rates = np.asarray(inputs.rates_fps, dtype=float)
        self._sizes = np.asarray(inputs.sizes_bytes, dtype=float)
        self._batch_n = np.arange(1, inputs.cloud.max_batch + 1, dtype=float)
        self._batch_s = np.asarray(inputs.cloud.batch_s, dtype=float)

    def __repr__(self) -> str:
        return f"OffloadModel({self.inputs!r}, quantile={self.quantile})"

    @property
    def total_fps(self) -> float:
        return float(self._rates.sum())

    def loads(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Edge frames/s, cloud frames/s and uplink bytes/s for rows of ``x``."""
        x = np.atleast_2d(x)
        lam_c = x @ self._rates
        return (self._rates.sum() - lam_c, lam_c,
                x @ (self._rates * self._sizes) * self.inputs.bytes_ratio)

    def _rows(self, x: np.ndarray | float) -> np.ndarray:
        x_arr = np.asarray(x, dtype=float)
        if x_arr.ndim == 0:
            x_arr = np.full(len(self._rates), float(x_arr))
        return np.clip(np.atleast_2d(x_arr), 0.0, 1.0)

    def slowdown(self, x: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Edge and cloud service times over their times alone, for rows of ``x``: the
        fixed point of each tier slowing down with the frames/s the other one finishes
        (its arrivals, or its capacity at its slowed-down speed if that is less)."""
        return self._slowdown(*self.loads(self._rows(x))[:2])

    def _slowdown(self, lam_e: np.ndarray, lam_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inp = self.inputs
        f_e, f_c = np.ones_like(lam_e), np.ones_like(lam_c)
        if inp.edge_slowdown == 0 and inp.cloud_slowdown == 0:
            return f_e, f_c
        cap_c = inp.cloud.capacity_fps
        for _ in range(16):  # damped: the finished rates are capped, so it settles
            done_e = np.minimum(lam_e, 1.0 / (inp.edge_s * f_e))
            done_c = np.minimum(lam_c, cap_c / f_c)
            f_e = 0.5 * f_e + 0.5 * (1.0 + inp.edge_slowdown * done_c)
            f_c = 0.5 * f_c + 0.5 * (1.0 + inp.cloud_slowdown * done_e)
        return f_e, f_c

    def predict(self, x: np.ndarray | float) -> Prediction:
        inp = self.inputs
        single = np.asarray(x).ndim <= 1
        x2 = self._rows(x)
        lam_e, lam_c, bytes_c = self.loads(x2)
        total = self._rates.sum()
        ca2 = inp.arrival_scv
        f_e, f_c = self._slowdown(lam_e, lam_c)

        # edge: G/G/1 on batches of n_e frames, n_e * s_e seconds each
        s_e = inp.edge_s * f_e
        rho_e = lam_e * s_e
        n_e = np.ones_like(lam_e)
        for _ in range(8 if inp.edge_batch > 1 else 0):
            w_e = gg1_wait(rho_e, ca2, inp.edge_scv, n_e * s_e)
            n_e = 0.5 * n_e + 0.5 * np.clip(1.0 + lam_e * w_e, 1.0, inp.edge_batch)
        b_e = n_e * s_e
        w_e = gg1_wait(rho_e, ca2, inp.edge_scv, b_e)
        t_e = w_e + b_e + inp.edge_overhead_s

        # re-encoding (quality level): a FIFO encoder of its own before the wire
        s_x = inp.encode_s
        rho_x = lam_c * s_x
        w_x = gg1_wait(rho_x, ca2, 0.01, s_x) if s_x > 0 else np.zeros_like(lam_c)

        # uplink: G/G/1, service = size on the wire / bandwidth
        size_c = np.where(lam_c > 0, bytes_c / np.maximum(lam_c, 1e-12),
                          self._sizes.mean() * inp.bytes_ratio)
        s_l = size_c / inp.bandwidth_Bps
        rho_l = lam_c * s_l
        w_l = gg1_wait(rho_l, ca2, inp.size_scv, s_l)

        # cloud: batches as jobs on k servers; mean batch by fixed point on the queue length
        k = inp.cloud.servers
        cloud_ca2 = departure_scv(rho_l, ca2, inp.size_scv)
        n = np.ones_like(lam_c)
        for _ in range(8):
            b = np.interp(n, self._batch_n, self._batch_s) * f_c
            rho_c = lam_c / n * b / k
            w_c = ggk_wait(k, rho_c, cloud_ca2, inp.cloud.scv, b)
            n = 0.5 * n + 0.5 * np.clip(1.0 + lam_c * w_c, 1.0, inp.cloud.max_batch)
        b = np.interp(n, self._batch_n, self._batch_s) * f_c
        rho_c = lam_c / n * b / k
        w_c = ggk_wait(k, rho_c, cloud_ca2, inp.cloud.scv, b)
        t_c = w_x + s_x + w_l + s_l + 2 * inp.delay_s + w_c + b + inp.cloud_overhead_s

        share_c = lam_c / total
        mean = (1 - share_c) * t_e + share_c * t_c

        # tails: each path is base + Gaussian noise + (wait > 0 with prob p) exponential
        p_e = np.clip(rho_e, 1e-6, 0.999)
        p_c = np.clip(1 - (1 - np.clip(rho_x, 0, 1)) * (1 - np.clip(rho_l, 0, 1))
                      * (1 - erlang_c(k, rho_c * k)), 1e-6, 0.999)
        sig_e = np.sqrt(inp.edge_scv) * b_e
        sig_c = np.sqrt(inp.size_scv * s_l ** 2 + 2 * inp.jitter_s ** 2 + inp.cloud.scv * b ** 2)
        p95 = mixture_quantile(
            self.quantile, np.stack([1 - share_c, share_c]),
            np.stack([b_e + inp.edge_overhead_s,
                      s_x + s_l + 2 * inp.delay_s + b + inp.cloud_overhead_s]),
            np.stack([sig_e, sig_c]), np.stack([p_e, p_c]),
            np.stack([w_e / p_e, (w_x + w_l + w_c) / p_c]))

        cap_c = np.minimum(inp.bandwidth_Bps / size_c, inp.cloud.capacity_fps / f_c)
        if s_x > 0:
            cap_c = np.minimum(cap_c, 1.0 / s_x)
        thr = np.minimum(lam_e, 1.0 / s_e) + np.minimum(lam_c, cap_c)
        acc = (lam_e * inp.edge_accuracy + lam_c * inp.cloud_accuracy) / total
        out = Prediction(mean, p95, t_e, t_c, rho_e, rho_l, rho_c, thr, acc, n, n_e, rho_x)
        if single:
            out = Prediction(*(np.asarray(v)[0] for v in vars(out).values()))
        return out


def drain_mean(ages_s: list[float], free_s: float, tail_s: float, rate_fps: float,
               util: float, steady_s: float, horizon_s: float,
               points: int = 32) -> tuple[float, float]:
    """The transient term for a known backlog on one FIFO path: how many frames finish
    within the next ``horizon_s`` and the sum of their end-to-end latencies (s).

    - **Queued now:** ``ages_s`` (seconds since capture, oldest first) of the ``n``
      frames on the path; its virtual clock is free of them in ``free_s``. The j-th
      (from 0) finishes ``(j + 1) / n * free_s + tail_s`` from now (``tail_s``: what
      follows the queue, e.g. the result's way back), at latency its age plus that.
    - **Arriving:** ``rate_fps`` frames/s, evenly over the horizon. One arriving at ``t``
      finds the residual backlog ``R(t) = max(0, free_s - t (1 - util))`` (the path works
      the backlog off at what its new load ``util`` leaves over) and takes the
      steady-state sojourn ``steady_s`` plus ``R(t)``; it counts if that ends in the
      horizon.

    Without a backlog this is the steady state (a frame arriving now takes ``steady_s``);
    with one, the frames seen back next are the queued ones, old already.

    >>> n, total = drain_mean([0.5, 0.4], free_s=0.2, tail_s=0.0, rate_fps=0.0,
    ...                       util=0.5, steady_s=0.05, horizon_s=1.0)
    >>> n, round(total / n, 3)   # 0.5 + 0.1 and 0.4 + 0.2
    (2.0, 0.6)
    """
    n_old = len(ages_s)
    count, total = 0.0, 0.0
    for j, age in enumerate(ages_s):
        done = (j + 1) / n_old * free_s + tail_s
        if done <= horizon_s:
            count += 1
            total += age + done
    if rate_fps > 0 and math.isfinite(steady_s):
        t = (np.arange(points) + 0.5) * horizon_s / points
        lat = steady_s + np.maximum(0.0, free_s - t * (1.0 - util))
        ok = t + lat <= horizon_s
        weight = rate_fps * horizon_s / points
        count += weight * float(ok.sum())
        total += weight * float(lat[ok].sum())
    return count, total
