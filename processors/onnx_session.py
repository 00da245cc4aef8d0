"""ONNX Runtime sessions with execution-provider selection: TensorRT > CUDA > CPU."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from autosteer.errors import ModelError

log = logging.getLogger(__name__)

GPU_HINT = "pip install 'autosteer[gpu]' (onnxruntime-gpu and tensorrt) on a machine with an NVIDIA GPU"
ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def select_providers(preference: str, cache_dir: Path | None = None) -> list[Any]:
    """Providers to pass to ``InferenceSession``.

    ``preference`` is ``"auto"`` (the best available of TensorRT, CUDA, CPU) or a comma
    list such as ``"CUDAExecutionProvider,CPUExecutionProvider"``; asking for a provider
    this onnxruntime build lacks is an error that says how to get it.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    if preference.strip().lower() == "auto":
        wanted = [p for p in ORDER if p in available]
    else:
        wanted = [p.strip() for p in preference.split(",") if p.strip()]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise ModelError(
                f"execution provider(s) {missing} are not in this onnxruntime build "
                f"(available: {available}); for GPU providers {GPU_HINT}"
            )
    out: list[Any] = []
    for p in wanted:
        if p == "TensorrtExecutionProvider":
            opts: dict[str, Any] = {"trt_fp16_enable": True}
            if cache_dir is not None:
                cache_dir.mkdir(parents=True, exist_ok=True)
                opts.update({"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)})
            out.append((p, opts))
        else:
            out.append(p)
    if "CPUExecutionProvider" not in wanted:
        out.append("CPUExecutionProvider")
    return out


def make_session(path: Path, providers: str = "auto", intra_op_threads: int = 0) -> Any:
    """An InferenceSession with sane thread settings (intra-op = cores, inter-op = 1)."""
    import onnxruntime as ort

    if not path.exists():
        raise ModelError(f"no model at {path}; run `autosteer models prepare`")
    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_op_threads or (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # Idle intra-op threads spin by default, burning the cores that decode, Kafka I/O and
    # the broker need between batches; in a pipeline that costs more than it saves.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    chosen = select_providers(providers, cache_dir=path.parent / "trt-cache")
    try:
        sess = ort.InferenceSession(str(path), sess_options=so, providers=chosen)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"onnxruntime cannot load {path}: {exc}") from exc
    log.info("loaded %s with providers %s", path.name, sess.get_providers())
    return sess
