"""The built-in retrainer: from a RetrainRequest and teacher-labelled frames to a
validated ModelUpdate, or a reasoned refusal.

1. Split the frames (interleaved) into a training half and a held-out half.
2. Run the edge version serving the camera (``request.model_version``: a registry
   version or the prepared model; if empty, the registry's latest) once on all frames
   at a low threshold.
3. Candidates, each with its threshold calibrated on the training frames
   (:func:`~autosteer.retrain.calibrate.calibrate_threshold`): the serving weights, and
   (unless ``requantize=False``) the FP32 model re-quantized to INT8 on the training
   frames, its first ``fp32_head`` Conv layers (the stem) kept in FP32. The one with the
   best training F1 wins (the serving weights on a tie).
4. Validate on the held-out frames: the candidate's agreement with the teacher against
   the serving version at its serving threshold. Publish to the registry only when the
   candidate is better by ``margin``; the update applies to the request's camera.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autosteer.errors import ModelError
from autosteer.processors.detector import load_detector
from autosteer.processors.manifest import Manifest
from autosteer.processors.prepare import FP32, INT8, INT8_RECIPE
from autosteer.retrain.calibrate import GRID, calibrate_threshold, evaluate, requantize
from autosteer.retrain.records import ModelUpdate, RetrainRequest
from autosteer.retrain.registry import ModelRegistry
from autosteer.retrain.teacher import TeacherFrame, split, teacher_frames
from autosteer.topics.records import Box

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainResult:
    """What a run did: ``published`` with its ``update``, or not, and why."""

    published: bool
    update: ModelUpdate | None
    metrics_before: dict[str, float] = field(default_factory=dict)
    metrics_after: dict[str, float] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class _Candidate:
    name: str
    folder: Path
    manifest: Manifest
    boxes: list[list[Box]]


class Retrainer:
    """Calibrate (and re-quantize) the edge model of one camera from teacher labels."""

    def __init__(self, registry: ModelRegistry, model_dir: Path, edge: str = INT8,
                 fp32: str = FP32, default_threshold: float = 0.3, requantize: bool = True,
                 margin: float = 0.01, holdout: float = 0.5, grid: Sequence[float] = GRID,
                 canary: float = 0.1, min_frames: int = 8, iou: float = 0.5,
                 providers: str = "auto", intra_op_threads: int = 0,
                 fp32_head: int = 2) -> None:
        self.registry = registry
        self.model_dir = model_dir
        self.edge = edge
        self.fp32 = fp32
        self.default_threshold = default_threshold
        self.requantize = requantize
        self.margin = margin
        self.holdout = holdout
        self.grid = grid
        self.canary = canary
        self.min_frames = min_frames
        self.iou = iou
        self.providers = providers
        self.intra_op_threads = intra_op_threads
        self.fp32_head = fp32_head

    def __repr__(self) -> str:
        return (f"Retrainer({self.registry!r}, {str(self.model_dir)!r}, edge={self.edge!r}, "
                f"requantize={self.requantize}, fp32_head={self.fp32_head}, margin={self.margin})")

    def serving(self, version: str = "") -> tuple[Path, Manifest]:
        """Folder and manifest of the edge version ``version`` (the one serving the camera,
        as the request says): a registry version or the prepared model; without one, the
        registry's latest, else the prepared model."""
        base = self.model_dir / self.edge
        if version:
            if version == Manifest.load(base).version:
                return base, Manifest.load(base)
            entry = self.registry.get(self.edge, version)  # ModelError names the versions
            return entry.folder, entry.manifest
        entry = self.registry.latest(self.edge)
        if entry is not None:
            return entry.folder, entry.manifest
        return base, Manifest.load(base)

    def _detect(self, folder: Path, frames: Sequence[TeacherFrame]) -> list[list[Box]]:
        det = load_detector(folder.parent, folder.name, providers=self.providers,
                            intra_op_threads=self.intra_op_threads,
                            score_threshold=min(min(self.grid), self.default_threshold))
        out: list[list[Box]] = []
        for start in range(0, len(frames), 8):
            out += det.detect([f.image for f in frames[start:start + 8]])
        return out

    def run(self, request: RetrainRequest, frames: Sequence[Any]) -> RetrainResult:
        """Learn from ``frames`` (teacher-labelled: see :func:`teacher_frames`); publish a
        new version if it agrees with the teacher better than the serving one."""
        if request.model != self.edge:
            return RetrainResult(False, None, reason=f"this retrainer learns {self.edge!r}; the "
                                 f"request is for {request.model!r} (another trainer's)")
        labelled = teacher_frames(frames)
        if len(labelled) < self.min_frames:
            return RetrainResult(False, None, reason=f"need at least {self.min_frames} "
                                 f"teacher-labelled frames; got {len(labelled)}")
        train, held = split(labelled, self.holdout)
        ordered = train + held
        n = len(train)
        teacher = [f.boxes for f in ordered]
        try:
            folder, manifest = self.serving(request.model_version)
        except ModelError as exc:  # an unknown version: refuse, do not stop the caller
            return RetrainResult(False, None, reason=f"cannot find the serving version: {exc}")
        current_t = float((manifest.model_extra or {}).get("thresholds", {}).get(
            request.camera, self.default_threshold))
        serving = _Candidate("serving weights", folder, manifest, self._detect(folder, ordered))
        with tempfile.TemporaryDirectory(prefix=".retrain-", dir=self._scratch()) as tmp:
            candidates = [serving]
            if self.requantize:
                out = Path(tmp) / "requantized"
                source = self.model_dir / self.fp32
                requantize(source / "model.onnx", out / "model.onnx",
                           [f.image for f in train], fp32_head=self.fp32_head,
                           pre_cache=self._scratch() / (
                               f".quant-pre-{Manifest.load(source).sha256[:16]}.onnx"))
                manifest.save(out)  # same layout and labels; the registry re-derives the rest
                candidates.append(_Candidate("re-quantized", out, manifest,
                                             self._detect(out, ordered)))
            fits = [calibrate_threshold(c.boxes[:n], teacher[:n], current_t, self.grid,
                                        self.iou) for c in candidates]
            best = max(range(len(candidates)), key=lambda i: (fits[i].f1, -i))
            chosen, fit = candidates[best], fits[best]
            before = evaluate(serving.boxes[n:], teacher[n:], current_t, self.iou)
            after = evaluate(chosen.boxes[n:], teacher[n:], fit.threshold, self.iou)
            log.info("%s: %s at %.3f: held-out agreement %.3f -> %.3f", request.camera,
                     chosen.name, fit.threshold, before["agreement"], after["agreement"])
            if after["agreement"] < before["agreement"] + self.margin:
                return RetrainResult(
                    False, None, before, after,
                    reason=f"{chosen.name} at threshold {fit.threshold:.3f}: held-out agreement "
                    f"{after['agreement']:.3f} on {len(held)} frames is not above the serving "
                    f"{before['agreement']:.3f} + margin {self.margin}")
            thresholds = {**((manifest.model_extra or {}).get("thresholds") or {}),
                          request.camera: fit.threshold}
            metrics = {"agreement_before": before["agreement"],
                       "agreement_after": after["agreement"], "f1_before": before["f1"],
                       "f1_after": after["f1"], "train_f1": fit.f1,
                       "train_frames": float(n), "held_out_frames": float(len(held)),
                       "requantized": float(chosen is not serving)}
            fields = manifest.model_dump()
            if chosen is not serving:
                fields.update(precision="int8-qdq-static", calibration={
                    "frames": n, "camera": request.camera, **INT8_RECIPE,
                    "fp32_head": self.fp32_head,
                    "source": "teacher-labelled shadow frames"})
            entry = self.registry.publish(
                chosen.folder / chosen.manifest.file, fields,
                parent=f"{manifest.name}@{manifest.version}",
                training_window={"camera": request.camera, "request_id": request.id,
                                 "start_ms": request.window_start_ms,
                                 "end_ms": request.window_end_ms, "frames": len(labelled),
                                 "method": chosen.name},
                metrics=metrics, thresholds=thresholds)
        update = entry.update(tier=request.tier, canary=self.canary, cameras=[request.camera],
                              request_id=request.id)
        return RetrainResult(True, update, before, after,
                             reason=f"{chosen.name} at threshold {fit.threshold:.3f}: held-out "
                             f"agreement {before['agreement']:.3f} -> {after['agreement']:.3f}")

    def _scratch(self) -> Path:
        self.registry.root.mkdir(parents=True, exist_ok=True)
        return self.registry.root
