"""Which runtime runs a model: ONNX Runtime (with TensorRT > CUDA > CPU providers) or
OpenVINO, and the calibration that makes ``AUTOSTEER_PROVIDERS=auto`` pick the fastest.

``providers`` (the ``AUTOSTEER_PROVIDERS`` setting) is one of:

- ``"auto"``: the runtime the model's manifest recorded as fastest on this machine
  (:func:`autosteer.processors.calibrate.calibrate`, run by ``autosteer models prepare``); without a calibration that
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
        _warn_if_disagrees(manifest, OPENVINO)
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


def _warn_if_disagrees(manifest: Manifest, runtime: str) -> None:
    """Log a warning when ``runtime`` is forced although this machine's calibration
    measured its boxes disagreeing with ONNX Runtime's (``auto`` never picks it then)."""
    cal = manifest.runtimes
    agreement = cal.get("agreement_vs_onnxruntime", {}).get(runtime)
    if (agreement is not None and agreement < MIN_AGREEMENT
            and cal.get("sha256") == manifest.sha256 and cal.get("machine") == machine()):
        log.warning("%s: AUTOSTEER_PROVIDERS=%s forces a runtime whose boxes agree with ONNX "
                    "Runtime's at F1 %.3f on this machine (below %.2f); set "
                    "AUTOSTEER_PROVIDERS=auto to use the fastest runtime that agrees",
                    manifest.name, runtime, agreement, MIN_AGREEMENT)


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


def calibrated(folder: Path) -> bool:
    """Whether ``folder``'s manifest holds a runtime calibration that fits this machine
    and its model file."""
    try:
        m = Manifest.load(folder)
    except ModelError:
        return False
    cal = m.runtimes
    return bool(cal.get("pick")) and cal.get("sha256") == m.sha256 and cal.get("machine") == machine()
