"""Agreement between two detectors' boxes on one frame: F1 of a greedy same-label match.

The edge tier's boxes are compared with the cloud tier's (the teacher). Boxes are
matched greedily, highest edge score first, each to the unmatched cloud box of the same
label with the largest IoU at or above ``iou``. Agreement is the F1 of that match:
``2 TP / (edge boxes + cloud boxes)``, and 1.0 when both lists are empty.

>>> from autosteer.topics.records import Box
>>> cloud = [Box(label="person", class_id=1, score=0.9, x0=0.1, y0=0.1, x1=0.3, y1=0.5)]
>>> edge = [Box(label="person", class_id=1, score=0.6, x0=0.11, y0=0.1, x1=0.3, y1=0.52),
...         Box(label="car", class_id=3, score=0.4, x0=0.5, y0=0.5, x1=0.9, y1=0.9)]
>>> round(agreement(edge, cloud), 3)
0.667
>>> agreement([], [])
1.0
>>> match_counts(edge, cloud)
(1, 1, 0)
"""

from __future__ import annotations

from collections.abc import Sequence

from autosteer.topics.records import Box


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (normalised coordinates)."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter
    return inter / union if union > 0 else 0.0


def match(edge: Sequence[Box], cloud: Sequence[Box], iou_min: float = 0.5) -> list[bool]:
    """For each edge box (in the order given), whether it matches a cloud box.

    Edge boxes are visited highest score first, so a box's outcome depends only on the
    boxes scored above it: filtering the edge list by a score threshold afterwards gives
    the same flags as matching the filtered list."""
    taken = [False] * len(cloud)
    flags = [False] * len(edge)
    for i in sorted(range(len(edge)), key=lambda k: -edge[k].score):
        best, best_iou = -1, iou_min
        for j, c in enumerate(cloud):
            if taken[j] or c.label != edge[i].label:
                continue
            v = iou(edge[i], c)
            if v >= best_iou:
                best, best_iou = j, v
        if best >= 0:
            taken[best] = True
            flags[i] = True
    return flags


def match_counts(edge: Sequence[Box], cloud: Sequence[Box],
                 iou_min: float = 0.5) -> tuple[int, int, int]:
    """``(true positives, false positives, false negatives)`` of edge against cloud."""
    tp = sum(match(edge, cloud, iou_min))
    return tp, len(edge) - tp, len(cloud) - tp


def f1(tp: int, fp: int, fn: int) -> float:
    """F1 from counts; 1.0 when there is nothing to find and nothing was found."""
    denom = 2 * tp + fp + fn
    return 1.0 if denom == 0 else 2 * tp / denom


def agreement(edge_boxes: Sequence[Box], cloud_boxes: Sequence[Box], iou: float = 0.5) -> float:
    """F1 of the edge boxes against the cloud boxes on one frame (1.0 when both are empty)."""
    return f1(*match_counts(edge_boxes, cloud_boxes, iou))
