"""The detector plug-in point: one narrow interface, several output layouts.

A :class:`Detector` takes decoded BGR frames (as OpenCV gives them) and returns one
list of :class:`~autosteer.topics.Box` per frame. Adapters:

- :class:`~autosteer.processors.ssd.SsdDetector` - TF Object Detection API layout
  (``detection_boxes/scores/classes``), e.g. SSD-MobileNet-v2 COCO.
- :class:`~autosteer.processors.yolo.YoloDetector` - YOLOv5 ``[N, anchors, 5+C]`` and
  YOLOv8 ``[N, 4+C, anchors]`` layouts, with NMS.

Each adapter runs its model on ONNX Runtime or OpenVINO behind one session interface
(:mod:`autosteer.processors.runtime`): ``providers="auto"`` takes the runtime that
``autosteer models prepare`` measured fastest for that model on this machine, recorded in
its manifest; ``"onnxruntime"``, ``"openvino"`` or a comma list of ONNX Runtime providers
choose one.

:func:`load_detector` picks the adapter from the model's ``manifest.json`` and runs one
inference on a blank frame before it returns (:func:`warm_up`): on TensorRT a session's
first run builds the engine, which the first frame of a stream would pay otherwise, and a
model that cannot run fails at load, not on that frame.
"""

from __future__ import annotations

import time
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


WARM_UP_SHAPE = (480, 640, 3)  # the blank frame warm_up runs (any size works: models resize)


def load_detector(model_dir: Path, name: str, *, providers: str = "auto",
                  intra_op_threads: int = 0, score_threshold: float = 0.3,
                  warm: bool = True) -> Detector:
    """Load ``<model_dir>/<name>/`` (model.onnx + manifest.json) behind its adapter, on
    the runtime ``providers`` names (:func:`autosteer.processors.runtime.resolve`);
    ``warm`` runs one inference first (:func:`warm_up`)."""
    folder = model_dir / name
    manifest = Manifest.load(folder)
    det: Detector
    if manifest.layout == "ssd-tfod":
        from autosteer.processors.ssd import SsdDetector

        det = SsdDetector(folder / manifest.file, manifest, providers=providers,
                          intra_op_threads=intra_op_threads, score_threshold=score_threshold)
    elif manifest.layout in ("yolov5", "yolov8", "yolo"):
        from autosteer.processors.yolo import YoloDetector

        det = YoloDetector(folder / manifest.file, manifest, providers=providers,
                           intra_op_threads=intra_op_threads, score_threshold=score_threshold)
    else:
        raise ModelError(f"{folder}/manifest.json: unknown layout {manifest.layout!r}; "
                         "expected 'ssd-tfod', 'yolov5' or 'yolov8'")
    if warm:
        warm_up(det)
    return det


def warm_up(detector: Detector, shape: tuple[int, int, int] = WARM_UP_SHAPE) -> float:
    """Run ``detector`` once on a blank frame; returns the seconds it took (the cold
    start that the first real frame no longer pays)."""
    t0 = time.perf_counter()
    try:
        detector.detect([np.zeros(shape, np.uint8)])
    except Exception as exc:  # a model that cannot run should fail here, not on frame 1
        raise ModelError(f"{detector.model_id}@{detector.version}: the warm-up inference "
                         f"failed: {exc}") from exc
    return time.perf_counter() - t0
