"""What the edge learns from the cloud without a GPU: a score threshold per camera, and
the INT8 model's static quantization ranges on the camera's recent frames.

**Threshold.** The edge boxes of some frames (found at a low threshold) are matched to
the teacher's boxes once: greedily, best score first, same label, IoU >= 0.5. Since a
box's match depends only on the boxes scored above it, the pooled F1 at every candidate
threshold follows from one sort. :func:`calibrate_threshold` takes the threshold with
the best F1; among thresholds within ``tol`` of it, the one nearest the current one (a
flat optimum does not move the threshold).

>>> from autosteer.topics.records import Box
>>> def b(s, x):
...     return Box(label="person", class_id=1, score=s, x0=x, y0=0.1, x1=x + 0.1, y1=0.5)
>>> cloud = [[b(0.9, 0.1), b(0.9, 0.4)]]
>>> edge = [[b(0.8, 0.1), b(0.6, 0.4), b(0.5, 0.7), b(0.45, 0.85)]]  # two false positives
>>> fit = calibrate_threshold(edge, cloud, current=0.3, grid=[0.3, 0.4, 0.5, 0.55, 0.7])
>>> fit.threshold, round(fit.f1, 3)
(0.55, 1.0)
>>> evaluate(edge, cloud, 0.3)["agreement"]
0.6666666666666666

**Quantization.** :func:`requantize` re-runs the static INT8 (QDQ) calibration of
``processors.prepare`` on the recent frames, from the FP32 model, so the activation
ranges fit today's light (about 10 to 60 s on a CPU), optionally with the first
``fp32_head`` Conv layers left in FP32: on vtest at night (contrast x0.12) re-calibrating
alone does not help (held-out agreement with the FP32 teacher 0.67 -> 0.66), keeping the
two stem layers in FP32 does (0.94, at about the INT8 model's speed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from autosteer.retrain.agreement import agreement, f1, match
from autosteer.topics.records import Box

log = logging.getLogger(__name__)

GRID: tuple[float, ...] = tuple(round(0.05 + 0.025 * i, 3) for i in range(37))  # 0.05..0.95


@dataclass(frozen=True)
class ThresholdFit:
    """The chosen threshold and its pooled scores on the frames it was fitted on."""

    threshold: float
    f1: float
    precision: float
    recall: float


def _pooled(edge: Sequence[Sequence[Box]], cloud: Sequence[Sequence[Box]],
            iou: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Scores and match flags of all edge boxes, and the number of teacher boxes."""
    scores: list[float] = []
    hits: list[bool] = []
    for e, c in zip(edge, cloud, strict=True):
        scores += [x.score for x in e]
        hits += match(e, c, iou)
    return np.asarray(scores, float), np.asarray(hits, bool), sum(len(c) for c in cloud)


def calibrate_threshold(edge: Sequence[Sequence[Box]], cloud: Sequence[Sequence[Box]],
                        current: float, grid: Sequence[float] = GRID, iou: float = 0.5,
                        tol: float = 0.005) -> ThresholdFit:
    """The edge score threshold in ``grid`` with the best pooled F1 against ``cloud``."""
    if not grid:
        raise ValueError("grid is empty: give at least one candidate threshold")
    scores, hits, n_teacher = _pooled(edge, cloud, iou)
    fits = []
    for t in grid:
        keep = scores >= t
        tp = int(hits[keep].sum())
        fp = int(keep.sum()) - tp
        fn = n_teacher - tp
        fits.append(ThresholdFit(float(t), f1(tp, fp, fn), tp / (tp + fp) if tp + fp else 1.0,
                                 tp / n_teacher if n_teacher else 1.0))
    best = max(f.f1 for f in fits)
    return min((f for f in fits if f.f1 >= best - tol), key=lambda f: abs(f.threshold - current))


def evaluate(edge: Sequence[Sequence[Box]], cloud: Sequence[Sequence[Box]], threshold: float,
             iou: float = 0.5) -> dict[str, float]:
    """``agreement`` (mean per-frame F1, as the pipeline measures it), pooled ``f1``,
    ``precision``, ``recall`` and ``frames`` of edge boxes at ``threshold``."""
    kept = [[x for x in e if x.score >= threshold] for e in edge]
    per_frame = [agreement(e, c, iou) for e, c in zip(kept, cloud, strict=True)]
    scores, hits, n_teacher = _pooled(kept, cloud, iou)
    tp = int(hits.sum())
    return {"agreement": float(np.mean(per_frame)) if per_frame else 1.0,
            "f1": f1(tp, len(scores) - tp, n_teacher - tp),
            "precision": tp / len(scores) if len(scores) else 1.0,
            "recall": tp / n_teacher if n_teacher else 1.0,
            "frames": float(len(kept)), "threshold": float(threshold)}


def requantize(fp32_model: Path, out: Path, frames_bgr: Sequence[np.ndarray],
               fp32_head: int = 0, pre_cache: Path | None = None) -> Path:
    """Static INT8 quantization of ``fp32_model`` calibrated on ``frames_bgr``, the first
    ``fp32_head`` Conv layers left in FP32; returns ``out``. Uses
    :func:`autosteer.processors.prepare.quantize_int8`."""
    import cv2
    from autosteer.processors.prepare import quantize_int8

    if not frames_bgr:
        raise ValueError("requantize needs at least one calibration frame")
    rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames_bgr]
    log.info("re-quantizing %s on %d recent frames", fp32_model, len(rgb))
    quantize_int8(fp32_model, out, rgb, fp32_head=fp32_head, pre_cache=pre_cache)
    return out
