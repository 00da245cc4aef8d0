"""Adapter for the TF Object Detection API output layout (SSD-MobileNet and friends).

Input: uint8 NHWC RGB of any size (the graph resizes). Outputs: ``detection_boxes``
``[N,100,4]`` as normalised (ymin, xmin, ymax, xmax), ``detection_scores`` ``[N,100]``,
``detection_classes`` ``[N,100]`` as float COCO ids, ``num_detections`` ``[N]``.
Frames of equal size run as one batch; mixed sizes run in groups.

On OpenVINO (2026.4) this graph's boxes and scores match ONNX Runtime's, but
``detection_classes`` does not: inside the converted multi-class NMS loop, some boxes get
another class (car 3 -> 2, truck 8 -> 3 on vtest frames). The adapter repairs it from the
per-anchor class scores the graph computes before NMS (``Postprocessor/convert_scores``,
``[N, anchors, 91]``): a box's class is the one whose score equals the box's score
(:func:`classes_from_scores`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from autosteer.processors.coco import label91
from autosteer.processors.manifest import Manifest
from autosteer.processors.runtime import open_session, runtime_of
from autosteer.topics.records import Box


def boxes_from_ssd(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                   threshold: float, labels: list[str] | None = None) -> list[Box]:
    """One frame's SSD outputs -> Boxes above ``threshold``, best first."""
    out = []
    for (y0, x0, y1, x1), s, c in zip(boxes, scores, classes, strict=True):
        if s < threshold:
            continue
        cid = int(round(float(c)))  # float ids: OpenVINO gives 2.9999998 for car (3)
        label = labels[cid] if labels and 0 <= cid < len(labels) else label91(cid)
        out.append(Box(label=label, class_id=cid, score=round(float(s), 4),
                       x0=float(np.clip(x0, 0, 1)), y0=float(np.clip(y0, 0, 1)),
                       x1=float(np.clip(x1, 0, 1)), y1=float(np.clip(y1, 0, 1))))
    out.sort(key=lambda b: -b.score)
    return out


CLASS_SCORES = "Postprocessor/convert_scores:0"  # [N, anchors, 91], class 0 = background


def classes_from_scores(scores: np.ndarray, class_scores: np.ndarray) -> np.ndarray:
    """One frame's class ids from its detection scores ``[K]`` and per-anchor class scores
    ``[A, C]``: for each score, the class (1..C-1) holding the nearest equal value.

    >>> cs = np.array([[0.0, 0.1, 0.9], [0.0, 0.7, 0.2]])
    >>> classes_from_scores(np.array([0.9, 0.7, 0.0]), cs).tolist()
    [2.0, 1.0, 0.0]
    """
    out = np.zeros(len(scores), dtype=np.float32)
    fg = class_scores[:, 1:]
    for i, s in enumerate(scores):
        if s > 0:
            out[i] = float(np.unravel_index(np.argmin(np.abs(fg - s)), fg.shape)[1] + 1)
    return out


class SsdDetector:
    """:class:`~autosteer.processors.detector.Detector` for the ``ssd-tfod`` layout."""

    def __init__(self, path: Path, manifest: Manifest, *, providers: str = "auto",
                 intra_op_threads: int = 0, score_threshold: float = 0.3) -> None:
        self.path = path
        self.manifest = manifest
        self.model_id = manifest.name
        self.version = manifest.version
        self.score_threshold = score_threshold
        self.session = open_session(path, manifest, providers, intra_op_threads,
                                    openvino_outputs=(CLASS_SCORES,))
        self.runtime = runtime_of(self.session)  # onnxruntime or openvino
        self.input_name = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        self._outputs = [self._pick(names, k) for k in ("boxes", "scores", "classes")]
        self._repair = self.runtime == "openvino" and CLASS_SCORES in names
        self._labels = manifest.labels if isinstance(manifest.labels, list) else None

    @staticmethod
    def _pick(names: list[str], key: str) -> str:
        for n in names:
            if key in n:
                return n
        raise ValueError(f"SSD model has no output containing {key!r}: {names}")

    def run_rgb(self, batch: np.ndarray) -> list[list[Box]]:
        """Run one NHWC RGB uint8 batch of equal-sized frames."""
        if self._repair:
            boxes, scores, _, class_scores = self.session.run(
                [*self._outputs, CLASS_SCORES], {self.input_name: batch})
            classes = np.stack([classes_from_scores(scores[i], class_scores[i])
                                for i in range(batch.shape[0])])
        else:
            boxes, scores, classes = self.session.run(self._outputs, {self.input_name: batch})
        return [boxes_from_ssd(boxes[i], scores[i], classes[i], self.score_threshold, self._labels)
                for i in range(batch.shape[0])]

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Box]]:
        results: list[list[Box] | None] = [None] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(img.shape, []).append(i)
        for idx in groups.values():
            batch = np.stack([cv2.cvtColor(images[i], cv2.COLOR_BGR2RGB) for i in idx])
            for i, boxes in zip(idx, self.run_rgb(batch), strict=True):
                results[i] = boxes
        return [r if r is not None else [] for r in results]
