"""OpenVINO sessions with the part of ONNX Runtime's ``InferenceSession`` interface that
the detector adapters use (``get_inputs``, ``get_outputs``, ``run``, ``get_providers``),
so :class:`~autosteer.processors.ssd.SsdDetector` and
:class:`~autosteer.processors.yolo.YoloDetector` run on either runtime unchanged.

OpenVINO reads the same ``model.onnx``. It runs fastest on a static shape, so each input
shape seen (frame size x batch) gets its own compiled model, reshaped to it; the last
``max_shapes`` are kept. Settings: ``INFERENCE_NUM_THREADS`` = the adapter's thread count,
``PERFORMANCE_HINT=LATENCY``. OpenVINO's CPU plugin picks its own inference precision
(``INFERENCE_PRECISION_HINT``): bf16 on CPUs with AVX-512 BF16 or AMX, even for an FP32
model; :attr:`OpenVinoSession.inference_precision` says which, and the runtime
calibration (:mod:`autosteer.processors.runtime`) only picks OpenVINO for a model when
its boxes agree with ONNX Runtime's.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from autosteer.errors import ModelError

log = logging.getLogger(__name__)

OPENVINO_HINT = "pip install openvino (or pip install -e . in the autosteer checkout)"


def import_openvino() -> Any:
    """The ``openvino`` module, or a :class:`ModelError` that says how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise ModelError(f"the OpenVINO runtime is not installed: {OPENVINO_HINT}") from exc
    return openvino


def openvino_available() -> bool:
    """Whether ``openvino`` can be imported here."""
    try:
        import_openvino()
    except ModelError:
        return False
    return True


@dataclass(frozen=True)
class Port:
    """An input or output as ONNX Runtime describes it: dynamic dimensions are strings."""

    name: str
    shape: list[int | str]
    type: str


def _port(port: Any) -> Port:
    dims: list[int | str] = [d.get_length() if d.is_static else "?"
                             for d in port.get_partial_shape()]
    return Port(port.get_any_name(), dims, str(port.get_element_type()))


class OpenVinoSession:
    """One ONNX model on OpenVINO's CPU plugin, run like an ``InferenceSession``."""

    def __init__(self, path: Path, intra_op_threads: int = 0, *, device: str = "CPU",
                 precision: str | None = None, max_shapes: int = 8,
                 extra_outputs: Sequence[str] = ()) -> None:
        """``extra_outputs``: names of inner tensors to expose as outputs too, when the
        model has them (an adapter's repair of a conversion fault; see ssd.py)."""
        ov = import_openvino()
        if not path.exists():
            raise ModelError(f"no model at {path}; run `autosteer models prepare`")
        self.path = path
        self.device = device
        self.threads = intra_op_threads or (os.cpu_count() or 1)
        self.max_shapes = max_shapes
        self._core = ov.Core()
        try:
            self._model = self._core.read_model(str(path))
        except Exception as exc:  # openvino raises RuntimeError with the reason
            raise ModelError(f"OpenVINO cannot read {path}: {exc}") from exc
        self.config: dict[str, Any] = {"INFERENCE_NUM_THREADS": self.threads,
                                       "PERFORMANCE_HINT": "LATENCY"}
        if precision:
            self.config["INFERENCE_PRECISION_HINT"] = precision
        wanted = set(extra_outputs)
        found = [o for op in self._model.get_ops() for o in op.outputs()
                 if wanted & o.get_names()]
        if found:
            self._model.add_outputs(found)
        self._inputs = [_port(p) for p in self._model.inputs]
        self._outputs = [_port(p) for p in self._model.outputs]
        self._compiled: OrderedDict[tuple, Any] = OrderedDict()  # shapes -> infer request
        self._lock = threading.Lock()  # an infer request runs one inference at a time
        log.info("loaded %s on OpenVINO %s (%d threads)", path.name, device, self.threads)

    def get_inputs(self) -> list[Port]:
        return list(self._inputs)

    def get_outputs(self) -> list[Port]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return [f"OpenVINO:{self.device}"]

    @property
    def inference_precision(self) -> str:
        """The precision the CPU plugin computes in (``f32``, ``bf16`` ...), read from a
        compiled model (one is compiled for a 1-frame 300x300 input if none is yet)."""
        with self._lock:
            if not self._compiled:
                shape = [1 if not isinstance(d, int) else d for d in self._inputs[0].shape]
                if len(shape) == 4 and shape[-1] == 3:
                    shape[1:3] = [d if isinstance(d, int) else 300
                                  for d in self._inputs[0].shape[1:3]]
                self._request({self._inputs[0].name: tuple(shape)})
            request = next(iter(self._compiled.values()))
        hint = request.get_compiled_model().get_property("INFERENCE_PRECISION_HINT")
        return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)

    def _request(self, shapes: dict[str, tuple[int, ...]]) -> Any:
        key = tuple(sorted(shapes.items()))
        request = self._compiled.get(key)
        if request is not None:
            self._compiled.move_to_end(key)
            return request
        model = self._model.clone()
        model.reshape({name: list(shape) for name, shape in shapes.items()})
        try:
            compiled = self._core.compile_model(model, self.device, self.config)
        except Exception as exc:
            raise ModelError(f"OpenVINO cannot compile {self.path} for input shapes "
                             f"{shapes}: {exc}") from exc
        request = compiled.create_infer_request()
        self._compiled[key] = request
        while len(self._compiled) > self.max_shapes:
            self._compiled.popitem(last=False)
        log.debug("compiled %s for %s", self.path.name, shapes)
        return request

    def run(self, output_names: Sequence[str] | None,
            feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs named ``output_names`` (all, in model order, when None) for ``feed``."""
        with self._lock:
            request = self._request({k: tuple(v.shape) for k, v in feed.items()})
            request.infer({k: np.ascontiguousarray(v) for k, v in feed.items()})
            names = output_names or [o.name for o in self._outputs]
            return [np.array(request.get_tensor(n).data) for n in names]
