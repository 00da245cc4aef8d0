"""The runtime calibration behind ``AUTOSTEER_PROVIDERS=auto``: time each runtime on real
frames for one model, check its boxes against ONNX Runtime's, and record the fastest that
agrees in the model's manifest (``runtimes``; :func:`autosteer.processors.runtime.resolve`
reads it back). Its own module because it loads whole detectors, which themselves open
their sessions through :mod:`autosteer.processors.runtime`.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from autosteer.processors.detector import load_detector
from autosteer.processors.manifest import Manifest
from autosteer.processors.openvino_session import openvino_available
from autosteer.processors.runtime import (
    CALIBRATION_BATCHES,
    MIN_AGREEMENT,
    ONNXRUNTIME,
    OPENVINO,
    machine,
)
from autosteer.retrain.agreement import f1, match_counts

log = logging.getLogger(__name__)


def time_detector(detect: Callable[[list[np.ndarray]], Any], frames: Sequence[np.ndarray],
                  batch: int, repeats: int) -> list[float]:
    """``repeats`` timings (ms per frame) of ``detect`` on consecutive batches of ``frames``,
    after one untimed warm-up batch."""
    batches = [list(frames[i:i + batch]) for i in range(0, len(frames) - batch + 1, batch)]
    if not batches:
        raise ValueError(f"need at least {batch} frames to time batch {batch}")
    detect(batches[0])
    out = []
    for r in range(repeats):
        b = batches[r % len(batches)]
        t0 = time.perf_counter()
        detect(b)
        out.append((time.perf_counter() - t0) * 1000 / len(b))
    return out


def calibrate(folder: Path, frames: Sequence[np.ndarray], *, threads: int = 0,
              repeats: int = 6, score_threshold: float = 0.3) -> Manifest:
    """Measure each runtime on ``frames`` (BGR) for the model in ``folder``, record the
    fastest that agrees with ONNX Runtime in its manifest, and return the new manifest.

    Repetitions of the runtimes are interleaved (one batch of each in turn), so a burst
    of load on the shared cores hits all of them alike."""
    manifest = Manifest.load(folder)
    threads = threads or (os.cpu_count() or 1)
    names = [ONNXRUNTIME] + ([OPENVINO] if openvino_available() else [])
    dets = {n: load_detector(folder.parent, folder.name, providers=n, intra_op_threads=threads,
                             score_threshold=score_threshold) for n in names}
    boxes = {n: d.detect(list(frames)) for n, d in dets.items()}
    agreement = {}
    for n in names:
        counts = [match_counts(c, r) for c, r in zip(boxes[n], boxes[ONNXRUNTIME], strict=True)]
        agreement[n] = round(f1(*(sum(x) for x in zip(*counts, strict=True))), 4)
    ms: dict[str, dict[str, list[float]]] = {n: {str(b): [] for b in CALIBRATION_BATCHES}
                                             for n in names}
    for b in CALIBRATION_BATCHES:
        for _ in range(repeats):  # interleaved: one timing of each runtime in turn
            for n in names:
                ms[n][str(b)] += time_detector(dets[n].detect, frames, b, 1)
    medians = {n: {b: round(statistics.median(v), 2) for b, v in per.items()}
               for n, per in ms.items()}
    score = {n: statistics.mean(medians[n].values()) for n in names}
    candidates = [n for n in names if agreement[n] >= MIN_AGREEMENT]
    pick = min(candidates, key=lambda n: score[n])
    precision = {n: d.session.inference_precision if n == OPENVINO else "f32"
                 for n, d in dets.items()}  # what the ops not quantized are computed in
    cal = {"pick": pick, "sha256": manifest.sha256, "machine": machine(), "threads": threads,
           "ms_per_frame": medians, "agreement_vs_onnxruntime": agreement,
           "inference_precision": precision, "frames": len(frames), "repeats": repeats,
           "score_threshold": score_threshold,
           "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    log.info("%s: runtime calibration %s -> %s", manifest.name, medians, pick)
    new = manifest.model_copy(update={"runtimes": cal})
    new.save(folder)
    return new
