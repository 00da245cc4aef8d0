"""The detector plug-in point: one narrow interface, several output layouts.

A :class:`Detector` takes decoded BGR frames (as OpenCV gives them) and returns one
list of :class:`~autosteer.topics.Box` per frame. Adapters:

- :class:`~autosteer.processors.ssd.SsdDetector` - TF Object Detection API layout
  (``detection_boxes/scores/classes``), e.g. SSD-MobileNet-v2 COCO.
- :class:`~autosteer.processors.yolo.YoloDetector` - YOLOv5 ``[N, anchors, 5+C]`` and
  YOLOv8 ``[N, 4+C, anchors]`` layouts, with NMS.

:func:`load_detector` picks the adapter from the model's ``manifest.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from autosteer.errors import ModelError
from autosteer.processors.manifest import Manifest
from autosteer.topics.records import Box


@runtime_checkable
class Detector(Protocol):
    model_id: str
    version: str

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Box]]:
        """Detect objects in BGR uint8 images of shape (H, W, 3)."""
        ...


def load_detector(model_dir: Path, name: str, *, providers: str = "auto",
                  intra_op_threads: int = 0, score_threshold: float = 0.3) -> Detector:
    """Load ``<model_dir>/<name>/`` (model.onnx + manifest.json) behind its adapter."""
    folder = model_dir / name
    manifest = Manifest.load(folder)
    if manifest.layout == "ssd-tfod":
        from autosteer.processors.ssd import SsdDetector

        return SsdDetector(folder / manifest.file, manifest, providers=providers,
                           intra_op_threads=intra_op_threads, score_threshold=score_threshold)
    if manifest.layout in ("yolov5", "yolov8", "yolo"):
        from autosteer.processors.yolo import YoloDetector

        return YoloDetector(folder / manifest.file, manifest, providers=providers,
                            intra_op_threads=intra_op_threads, score_threshold=score_threshold)
    raise ModelError(f"{folder}/manifest.json: unknown layout {manifest.layout!r}; "
                     "expected 'ssd-tfod', 'yolov5' or 'yolov8'")
