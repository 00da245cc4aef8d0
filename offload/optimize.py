"""Projected gradient descent on offload shares in ``[0, 1]^n`` under linear constraints.

Every constraint the controller uses is linear in the shares (stability of each queue,
an accuracy floor), so the feasible set is a box cut by half-spaces ``a . x <= b``.

>>> h = Halfspace(np.array([1.0, 1.0]), 1.0, "sum <= 1")
>>> project(np.array([0.9, 0.7]), [h]).round(3).tolist()
[0.6, 0.4]
>>> f = lambda X: ((X - 0.8) ** 2).sum(axis=1)          # minimum outside the set
>>> x, fx, steps = pgd(f, [np.array([0.0, 0.0])], [h])
>>> x.round(3).tolist(), steps > 0
([0.5, 0.5], True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Objective = Callable[[np.ndarray], np.ndarray]  # rows of candidates -> one value per row


@dataclass(frozen=True)
class Halfspace:
    """The constraint ``a . x <= b``, named for decision records."""

    a: np.ndarray
    b: float
    name: str = ""

    def slack(self, x: np.ndarray) -> float:
        """``b - a . x``: negative when violated."""
        return float(self.b - self.a @ x)


def _project_one(y: np.ndarray, h: Halfspace, lo: float, hi: float) -> np.ndarray:
    """Exact projection onto ``[lo, hi]^n`` cut by one half-space: ``x(t) = clip(y - t a)``
    with the smallest ``t >= 0`` where ``a . x(t) <= b``; ``a . x(t)`` is piecewise linear
    and falling in ``t``, so evaluate it at its breakpoints and interpolate."""
    x = np.clip(y, lo, hi)
    if h.a @ x <= h.b:
        return x
    nz = h.a != 0
    ts = np.concatenate([[0.0], (y[nz] - hi) / h.a[nz], (y[nz] - lo) / h.a[nz]])
    ts = np.unique(ts[ts >= 0])
    g = np.clip(y[None, :] - ts[:, None] * h.a[None, :], lo, hi) @ h.a
    k = int(np.argmax(g <= h.b)) if np.any(g <= h.b) else len(ts) - 1
    if k == 0 or g[k] > h.b:  # the set is empty: the closest the box gets
        return np.clip(y - ts[k] * h.a, lo, hi)
    t = ts[k - 1] + (g[k - 1] - h.b) / (g[k - 1] - g[k]) * (ts[k] - ts[k - 1])
    return np.clip(y - t * h.a, lo, hi)


def uniform_interval(halfspaces: Sequence[Halfspace], lo: float = 0.0,
                     hi: float = 1.0) -> tuple[float, float] | None:
    """The range of ``t`` for which the point ``(t, ..., t)`` keeps every constraint, or
    None: a cheap feasibility test (and a feasible start) for the controller.

    >>> uniform_interval([Halfspace(np.array([1.0, 1.0]), 1.0)])
    (0.0, 0.5)
    """
    t_lo, t_hi = lo, hi
    for h in halfspaces:
        s = float(h.a.sum())
        if s > 0:
            t_hi = min(t_hi, h.b / s)
        elif s < 0:
            t_lo = max(t_lo, h.b / s)
        elif h.b < 0:
            return None
    return (t_lo, t_hi) if t_lo <= t_hi + 1e-12 else None


def project(y: np.ndarray, halfspaces: Sequence[Halfspace], lo: float = 0.0,
            hi: float = 1.0, iters: int = 200, tol: float = 1e-9) -> np.ndarray:
    """Euclidean projection of ``y`` onto the box cut by every half-space (Dykstra's
    alternating projections). If the set is empty the result violates some constraint;
    check with :func:`violation`."""
    x = np.clip(y, lo, hi)
    if violation(x, halfspaces) <= tol:
        return x
    x = np.asarray(y, dtype=float).copy()
    incr = [np.zeros_like(x) for _ in halfspaces]
    for _ in range(iters):
        before = x
        for j, h in enumerate(halfspaces):
            z = _project_one(x + incr[j], h, lo, hi)
            incr[j] = x + incr[j] - z
            x = z
        if np.max(np.abs(x - before)) < tol:
            break
    return x


def violation(x: np.ndarray, halfspaces: Sequence[Halfspace]) -> float:
    """The largest amount by which ``x`` breaks a constraint (0 when it keeps them all)."""
    return max([0.0] + [-h.slack(x) for h in halfspaces])


def pgd(f: Objective, starts: Sequence[np.ndarray], halfspaces: Sequence[Halfspace],
        lo: float = 0.0, hi: float = 1.0, max_steps: int = 10, step: float = 0.1,
        h: float = 1e-3, tol: float = 1e-4) -> tuple[np.ndarray, float, int]:
    """Minimize ``f`` over the feasible set; return (x, f(x), steps taken).

    The starts are projected and scored in one batched call of ``f``; descent runs from
    the best (list the warm start first: it wins ties). Each step takes a central-
    difference gradient (one batched call), then tries a ladder of step lengths along it,
    each projected, in a second batched call, and keeps the best if it improves ``f`` by
    more than ``tol``.
    """
    pts = np.array([project(np.asarray(x0, dtype=float), halfspaces, lo, hi) for x0 in starts])
    vals = f(pts)
    i = int(np.argmin(vals))
    x, fx = pts[i], float(vals[i])
    n = len(x)
    eye = np.eye(n)
    lr, taken = step, 0
    for _ in range(max_steps):
        probe = np.vstack([np.clip(x + h * eye, lo, hi), np.clip(x - h * eye, lo, hi)])
        vals = f(probe)
        width = probe[:n].diagonal() - probe[n:].diagonal()
        grad = np.where(width > 0, (vals[:n] - vals[n:]) / np.maximum(width, 1e-12), 0.0)
        norm = float(np.linalg.norm(grad))
        if norm < 1e-12:
            break
        lrs = lr * np.array([4.0, 1.0, 0.25, 1 / 16])
        cands = np.array([project(x - a * grad / norm, halfspaces, lo, hi) for a in lrs])
        cvals = f(cands)
        j = int(np.argmin(cvals))
        if cvals[j] >= fx - tol:
            break
        taken += 1
        x, fx, lr = cands[j], float(cvals[j]), min(max(float(lrs[j]), 1e-3), 0.5)
    return x, fx, taken
