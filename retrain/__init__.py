"""Closed-loop retraining: the edge tier learns from the cloud tier.

- records: :class:`Drift`, :class:`RetrainRequest` (topic ``retrain.requests``) and
  :class:`ModelUpdate` (topic ``models.updates``) - the contract any trainer speaks;
- :class:`ModelRegistry`: versioned ``model.onnx`` + ``manifest.json`` in a directory;
- :func:`agreement`: F1 of edge boxes against cloud boxes on one frame;
- :class:`Retrainer`: per-camera threshold calibration and INT8 re-quantization from
  teacher-labelled shadow frames, published only when held-out agreement improves.

See ``docs/retraining.md``.
"""

from autosteer.retrain.agreement import agreement, iou, match_counts
from autosteer.retrain.calibrate import ThresholdFit, calibrate_threshold, evaluate, requantize
from autosteer.retrain.records import TOPIC_RECORDS, Drift, ModelUpdate, RetrainRequest
from autosteer.retrain.registry import Entry, ModelRegistry
from autosteer.retrain.retrainer import Retrainer, RetrainResult
from autosteer.retrain.teacher import TeacherFrame, label, split, teacher_frames

__all__ = [
    "TOPIC_RECORDS",
    "Drift",
    "Entry",
    "ModelRegistry",
    "ModelUpdate",
    "RetrainRequest",
    "RetrainResult",
    "Retrainer",
    "TeacherFrame",
    "ThresholdFit",
    "agreement",
    "calibrate_threshold",
    "evaluate",
    "iou",
    "label",
    "match_counts",
    "requantize",
    "split",
    "teacher_frames",
]
