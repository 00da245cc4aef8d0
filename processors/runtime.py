"""Which runtime runs a model: ONNX Runtime (with TensorRT > CUDA > CPU providers) or
OpenVINO, and the calibration that makes ``AUTOSTEER_PROVIDERS=auto`` pick the fastest.

``providers`` (the ``AUTOSTEER_PROVIDERS`` setting) is one of:

- ``"auto"``: the runtime the model's manifest recorded as fastest on this machine
  (:func:`calibrate`, run by ``autosteer models prepare``); without a calibration that
  fits this machine and this model file, ONNX Runtime with its best providers.
- ``"onnxruntime"``: ONNX Runtime with its best providers (TensorRT > CUDA > CPU).
- ``"openvino"``: OpenVINO's CPU plugin.
- a comma list of ONNX Runtime providers, e.g. ``"CUDAExecutionProvider,CPUExecutionProvider"``.

The calibration is stored in ``manifest.json`` under ``runtimes``: ms per frame of each
runtime at batch 1 and 4, each one's agreement (F1 of :mod:`autosteer.retrain.agreement`)
with ONNX Runtime's boxes on the same frames, the pick, the model's sha256 and the
machine it was measured on. A runtime whose boxes disagree (F1 below
:data:`MIN_AGREEMENT`) is never picked.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from autosteer.errors import ModelError
from autosteer.processors.manifest import Manifest

log = logging.getLogger(__name__)

ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
RUNTIMES = (ONNXRUNTIME, OPENVINO)
MIN_AGREEMENT = 0.97  # a runtime is a candidate only when its boxes agree this well with ORT's
CALIBRATION_BATCHES = (1, 4)


def machine() -> dict[str, Any]:
    """What a calibration depends on: CPU model, cores, ORT providers, OpenVINO version."""
    import onnxruntime as ort
    from autosteer.processors.openvino_session import openvino_available

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    ov_version = None
    if openvino_available():
        import openvino

        ov_version = openvino.__version__.split("-")[0]
    return {"cpu": cpu, "cores": os.cpu_count() or 1,
            "onnxruntime": ort.__version__, "ort_providers": sorted(ort.get_available_providers()),
            "openvino": ov_version}


def resolve(manifest: Manifest, providers: str) -> tuple[str, str]:
    """``(runtime, ort_providers)`` for ``manifest``'s model under ``providers``."""
    p = providers.strip()
    if p.lower() == OPENVINO:
        return OPENVINO, "auto"
    if p.lower() == ONNXRUNTIME:
        return ONNXRUNTIME, "auto"
    if p.lower() != "auto":
        return ONNXRUNTIME, p
    cal = manifest.runtimes
    pick = cal.get("pick")
    if not pick:
        return ONNXRUNTIME, "auto"
    if cal.get("sha256") != manifest.sha256:
        log.info("%s: the runtime calibration is for another model file; using ONNX Runtime "
                 "(`autosteer models prepare` measures again)", manifest.name)
        return ONNXRUNTIME, "auto"
    if cal.get("machine") != machine():
        log.info("%s: the runtime calibration was measured on another machine; using ONNX "
                 "Runtime (`autosteer models prepare` measures again)", manifest.name)
        return ONNXRUNTIME, "auto"
    if pick not in RUNTIMES:
        raise ModelError(f"{manifest.name}: manifest.json picks runtime {pick!r}; expected one "
                         f"of {RUNTIMES} (run `autosteer models prepare` again)")
    return pick, "auto"


def open_session(path: Path, manifest: Manifest, providers: str = "auto",
                 intra_op_threads: int = 0, *, openvino_outputs: Sequence[str] = ()) -> Any:
    """A session for ``path`` on the runtime :func:`resolve` names: an ONNX Runtime
    ``InferenceSession`` or an :class:`~autosteer.processors.openvino_session.OpenVinoSession`
    (same interface; ``openvino_outputs``: inner tensors it exposes as outputs too)."""
    runtime, ort_providers = resolve(manifest, providers)
    if runtime == OPENVINO:
        from autosteer.processors.openvino_session import OpenVinoSession

        return OpenVinoSession(path, intra_op_threads, extra_outputs=openvino_outputs)
    from autosteer.processors.onnx_session import make_session

    return make_session(path, ort_providers, intra_op_threads)


def runtime_of(session: Any) -> str:
    """``"openvino"`` or ``"onnxruntime"``: which runtime ``session`` is."""
    return OPENVINO if type(session).__name__ == "OpenVinoSession" else ONNXRUNTIME


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
    from autosteer.processors.detector import load_detector
    from autosteer.processors.openvino_session import openvino_available
    from autosteer.retrain.agreement import f1, match_counts

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


def calibrated(folder: Path) -> bool:
    """Whether ``folder``'s manifest holds a runtime calibration that fits this machine
    and its model file."""
    try:
        m = Manifest.load(folder)
    except ModelError:
        return False
    cal = m.runtimes
    return bool(cal.get("pick")) and cal.get("sha256") == m.sha256 and cal.get("machine") == machine()
