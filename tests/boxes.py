"""Box matching used by the detector tests."""

from __future__ import annotations

from autosteer.topics.records import Box


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = ix * iy
    union = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter
    return inter / union if union > 0 else 0.0


def matched(reference: list[Box], candidate: list[Box], *, min_iou: float) -> int:
    """How many reference boxes have a same-label candidate box overlapping by ``min_iou``
    (each candidate used once, best score first)."""
    used: set[int] = set()
    hits = 0
    for r in sorted(reference, key=lambda b: -b.score):
        best, best_i = 0.0, -1
        for i, c in enumerate(candidate):
            if i in used or c.label != r.label:
                continue
            v = iou(r, c)
            if v > best:
                best, best_i = v, i
        if best >= min_iou:
            used.add(best_i)
            hits += 1
    return hits


def same_boxes(expected: list[Box], actual: list[Box], *, threshold: float,
               margin: float = 0.05) -> str | None:
    """None if ``actual`` equals ``expected`` up to float noise; else what differs.

    Boxes within ``margin`` of the score threshold may be on either side of it."""
    sure_e = [b for b in expected if b.score >= threshold + margin]
    sure_a = [b for b in actual if b.score >= threshold + margin]
    if matched(sure_e, actual, min_iou=0.9) != len(sure_e):
        return f"expected {sure_e} within {actual}"
    if matched(sure_a, expected, min_iou=0.9) != len(sure_a):
        return f"unexpected boxes in {sure_a} vs {expected}"
    return None
