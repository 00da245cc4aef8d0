"""Adapter for YOLO ONNX exports: YOLOv5 ``[N, A, 5+C]`` and YOLOv8 ``[N, 4+C, A]``.

Preprocessing letterboxes to the model's square input (default 640), RGB, float32 in
[0, 1], NCHW. Postprocessing takes boxes as (cx, cy, w, h) in input pixels, scores as
objectness x class score (v5) or class score (v8), then class-wise NMS, and maps boxes
back to the original frame, normalised to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from autosteer.processors.coco import COCO80, coco80_to_91
from autosteer.processors.manifest import Manifest
from autosteer.processors.runtime import open_session, runtime_of
from autosteer.topics.records import Box


def letterbox(img: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize keeping aspect, pad to ``size``x``size`` with grey; return image, scale, pad."""
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    nh, nw = round(h * r), round(w * r)
    resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = (size - nh) / 2, (size - nw) / 2
    out = cv2.copyMakeBorder(resized, int(round(top - 0.1)), int(round(size - nh - top + 0.1)),
                             int(round(left - 0.1)), int(round(size - nw - left + 0.1)),
                             cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return out, r, (left, top)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS over (x0, y0, x1, y1) boxes; returns kept indices, best first.

    >>> b = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=float)
    >>> nms(b, np.array([0.9, 0.8, 0.7]), 0.5).tolist()
    [0, 2]
    """
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        xx0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = (xx1 - xx0).clip(0) * (yy1 - yy0).clip(0)
        union = areas[i] + areas[rest] - inter
        order = rest[inter / np.maximum(union, 1e-9) <= iou]
    return np.asarray(keep, dtype=np.int64)


def decode_yolo(pred: np.ndarray, layout: str, conf: float, iou: float,
                max_det: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw YOLO output -> (xyxy boxes in input pixels, scores, class indices).

    ``layout`` is ``"yolov5"`` (``[A, 5+C]``), ``"yolov8"`` (``[4+C, A]``) or ``"yolo"``
    (guess: channels-first when rows < columns).
    """
    if layout == "yolo":
        layout = "yolov8" if pred.shape[0] < pred.shape[1] else "yolov5"
    if layout == "yolov8":
        p = pred.T
        cls_scores = p[:, 4:]
    else:
        p = pred
        cls_scores = p[:, 5:] * p[:, 4:5]
    cls = cls_scores.argmax(axis=1)
    score = cls_scores[np.arange(len(cls)), cls]
    m = score >= conf
    p, cls, score = p[m], cls[m], score[m]
    if not len(p):
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    cx, cy, w, h = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    # class-wise NMS in one pass: offset boxes by class so classes never overlap
    offset = cls[:, None].astype(xyxy.dtype) * (xyxy.max() + 1.0)
    keep = nms(xyxy + offset, score, iou)[:max_det]
    return xyxy[keep], score[keep], cls[keep]


class YoloDetector:
    """:class:`~autosteer.processors.detector.Detector` for YOLOv5/v8 ONNX exports."""

    def __init__(self, path: Path, manifest: Manifest, *, providers: str = "auto",
                 intra_op_threads: int = 0, score_threshold: float = 0.3,
                 iou_threshold: float = 0.45) -> None:
        self.manifest = manifest
        self.model_id = manifest.name
        self.version = manifest.version
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.session = open_session(path, manifest, providers, intra_op_threads)
        self.runtime = runtime_of(self.session)  # onnxruntime or openvino
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        side = inp.shape[2] if len(inp.shape) == 4 else None
        self.size = int(side) if isinstance(side, int) else int(manifest.input.get("size", 640))
        self.labels = manifest.labels if isinstance(manifest.labels, list) else COCO80

    def _label(self, idx: int) -> tuple[str, int]:
        if self.labels is COCO80 and idx < 80:
            return COCO80[idx], coco80_to_91(idx)
        return (self.labels[idx] if idx < len(self.labels) else f"class{idx}"), idx

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Box]]:
        if not images:
            return []
        prepped, metas = [], []
        for img in images:
            lb, r, pad = letterbox(img, self.size)
            prepped.append(cv2.cvtColor(lb, cv2.COLOR_BGR2RGB))
            metas.append((r, pad, img.shape[1], img.shape[0]))
        x = np.stack(prepped).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})[0]
        results = []
        for pred, (r, (px, py), w, h) in zip(out, metas, strict=True):
            xyxy, scores, cls = decode_yolo(pred, self.manifest.layout, self.score_threshold,
                                            self.iou_threshold)
            boxes = []
            for (x0, y0, x1, y1), s, c in zip(xyxy, scores, cls, strict=True):
                label, cid = self._label(int(c))
                boxes.append(Box(
                    label=label, class_id=cid, score=round(float(min(s, 1.0)), 4),
                    x0=float(np.clip((x0 - px) / r / w, 0, 1)), y0=float(np.clip((y0 - py) / r / h, 0, 1)),
                    x1=float(np.clip((x1 - px) / r / w, 0, 1)), y1=float(np.clip((y1 - py) / r / h, 0, 1)),
                ))
            results.append(boxes)
        return results
