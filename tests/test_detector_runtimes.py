"""One contract for every detector runtime: the prepared models on ONNX Runtime and on
OpenVINO pass the same checks on real vtest.avi frames, and ``providers="auto"`` takes
the runtime the manifest's calibration picked only when it fits this machine and file."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
from autosteer.errors import ModelError
from autosteer.processors import runtime, ssd
from autosteer.processors.detector import load_detector
from autosteer.processors.manifest import Manifest
from autosteer.processors.prepare import FP32, INT8
from autosteer.retrain.agreement import f1, match_counts
from boxes import matched

pytestmark = pytest.mark.integration

RUNTIMES = [runtime.ONNXRUNTIME, runtime.OPENVINO]  # both are dependencies: neither skips
THRESHOLD = 0.5


def f1_of(cand: list[list], ref: list[list]) -> float:
    counts = [match_counts(c, r) for c, r in zip(cand, ref, strict=True)]
    return f1(*(sum(x) for x in zip(*counts, strict=True)))


@pytest.fixture(scope="module")
def reference(model_dir: Path, frames: list[np.ndarray]) -> dict[str, list[list]]:
    """ONNX Runtime's boxes for each model: what every runtime must agree with."""
    return {name: load_detector(model_dir, name, providers="onnxruntime", intra_op_threads=2,
                                score_threshold=THRESHOLD).detect(frames)
            for name in (FP32, INT8)}


@pytest.mark.parametrize("name", [FP32, INT8])
@pytest.mark.parametrize("rt", RUNTIMES)
def test_runtime_contract(model_dir: Path, frames: list[np.ndarray], rt: str, name: str,
                          reference: dict[str, list[list]]) -> None:
    det = load_detector(model_dir, name, providers=rt, intra_op_threads=2,
                        score_threshold=THRESHOLD)
    assert det.runtime == rt
    results = det.detect(frames)
    assert len(results) == len(frames)
    for r in results:
        assert [b.score for b in r] == sorted((b.score for b in r), reverse=True)
        for b in r:
            assert b.score >= THRESHOLD
            assert 0 <= b.x0 <= b.x1 <= 1 and 0 <= b.y0 <= b.y1 <= 1
    assert sum(any(b.label == "person" for b in r) for r in results) >= len(frames) // 2
    # batches and single frames, and mixed frame sizes in one call, give the same boxes
    single = [det.detect([f])[0] for f in frames[:4]]
    for b, s in zip(det.detect(frames[:4]), single, strict=True):
        assert matched(s, b, min_iou=0.95) == len(s)
    small = frames[0][::2, ::2].copy()
    mixed = det.detect([frames[0], small])
    assert len(mixed) == 2 and matched(results[0], mixed[0], min_iou=0.95) == len(results[0])
    assert det.detect([]) == []
    if rt != runtime.ONNXRUNTIME and name == INT8:
        # OpenVINO runs the QDQ file its own way: on a 2-core AVX2 VM (no VNNI) its boxes
        # agreed with ORT FP32's at F1 0.74 (ORT INT8: 0.93) and a black frame got an
        # "umbrella" at 0.74, with 7-bit and 8-bit weights alike. The calibration
        # measures it and auto never picks it then (test_prepared_models_carry_a_calibration).
        return
    assert det.detect([np.zeros((480, 640, 3), np.uint8)]) == [[]]
    score = f1_of(results, reference[name])
    assert score >= 0.97, f"{name} on {rt}: F1 {score:.3f} against ONNX Runtime"


def test_openvino_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                              model_dir: Path) -> None:
    import builtins

    real_import = builtins.__import__

    def no_openvino(name: str, *args: object, **kw: object) -> object:
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with pytest.raises(ModelError, match="pip install openvino"):
        load_detector(model_dir, FP32, providers="openvino", warm=False)


def _manifest(model_dir: Path, **cal: object) -> Manifest:
    m = Manifest.load(model_dir / FP32)
    base = {"pick": runtime.OPENVINO, "sha256": m.sha256, "machine": runtime.machine()}
    return m.model_copy(update={"runtimes": {**base, **cal}})


def test_auto_takes_the_calibrated_pick_only_when_it_fits(model_dir: Path) -> None:
    assert runtime.resolve(_manifest(model_dir), "auto") == (runtime.OPENVINO, "auto")
    assert runtime.resolve(_manifest(model_dir, sha256="0" * 64), "auto")[0] == runtime.ONNXRUNTIME
    other = {**runtime.machine(), "cpu": "another CPU"}
    assert runtime.resolve(_manifest(model_dir, machine=other), "auto")[0] == runtime.ONNXRUNTIME
    plain = Manifest.load(model_dir / FP32).model_copy(update={"runtimes": {}})
    assert runtime.resolve(plain, "auto") == (runtime.ONNXRUNTIME, "auto")
    # naming a runtime or ORT providers overrides the calibration
    assert runtime.resolve(_manifest(model_dir), "onnxruntime") == (runtime.ONNXRUNTIME, "auto")
    assert runtime.resolve(_manifest(model_dir), "CPUExecutionProvider") == (
        runtime.ONNXRUNTIME, "CPUExecutionProvider")
    with pytest.raises(ModelError, match="expected one of"):
        runtime.resolve(_manifest(model_dir, pick="tflite"), "auto")


def test_forcing_a_runtime_that_disagrees_warns(model_dir: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    bad = _manifest(model_dir, pick=runtime.ONNXRUNTIME,
                    agreement_vs_onnxruntime={runtime.ONNXRUNTIME: 1.0, runtime.OPENVINO: 0.7})
    with caplog.at_level("WARNING", logger=runtime.__name__):
        assert runtime.resolve(bad, "openvino") == (runtime.OPENVINO, "auto")
    assert "F1 0.700" in caplog.text and "AUTOSTEER_PROVIDERS=auto" in caplog.text
    caplog.clear()
    good = _manifest(model_dir, agreement_vs_onnxruntime={runtime.OPENVINO: 0.99})
    with caplog.at_level("WARNING", logger=runtime.__name__):
        runtime.resolve(good, "openvino")
    assert not caplog.text


def test_prepared_models_carry_a_calibration(model_dir: Path) -> None:
    for name in (FP32, INT8):
        m = Manifest.load(model_dir / name)
        cal = m.runtimes
        assert runtime.calibrated(model_dir / name), f"{name}: no calibration for this machine"
        assert cal["pick"] in runtime.RUNTIMES
        assert cal["agreement_vs_onnxruntime"][cal["pick"]] >= runtime.MIN_AGREEMENT
        assert set(cal["ms_per_frame"][cal["pick"]]) == {"1", "4"}
        det = load_detector(model_dir, name, warm=False)
        assert det.runtime == cal["pick"]


def test_docstring_examples_run() -> None:
    for mod in (ssd,):
        assert doctest.testmod(mod).failed == 0
