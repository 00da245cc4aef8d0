"""The retraining contract without models: records, registry, agreement, calibration."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from autosteer.errors import ModelError, RecordError
from autosteer.processors.decode import encode_jpeg
from autosteer.processors.manifest import Manifest, sha256_file
from autosteer.retrain import (
    TOPIC_RECORDS,
    Drift,
    ModelRegistry,
    ModelUpdate,
    Retrainer,
    RetrainRequest,
    agreement,
    calibrate_threshold,
    evaluate,
    split,
    teacher_frames,
)
from autosteer.retrain.registry import version_number
from autosteer.topics.records import Box

FIELDS = {"name": "det", "layout": "ssd-tfod", "labels": "coco91", "precision": "int8"}


def box(x: float, score: float = 0.9, label: str = "person") -> Box:
    return Box(label=label, class_id=1 if label == "person" else 3, score=score,
               x0=x, y0=0.1, x1=x + 0.1, y1=0.5)


@pytest.fixture
def onnx(tmp_path: Path) -> Path:
    p = tmp_path / "candidate.onnx"
    p.write_bytes(b"\x08\x07fake onnx bytes")
    return p


def test_records_round_trip_and_are_listed_by_topic() -> None:
    d = Drift(camera="cam1", model="m", feature="agreement", kind="gradual", detector="adwin",
              ts_ms=5, before=0.9, after=0.7, n_before=300, n_after=80, effect=2.0)
    r = RetrainRequest(camera="cam1", model="m", reason="agreement fell", drifts=[d],
                       window_start_ms=0, window_end_ms=5)
    assert RetrainRequest.parse(r.dumps()) == r and len(r.id) == 32
    u = ModelUpdate(model="m", version="2-0a0b0c0d", tier="edge", artifact="/srv/m/model.onnx",
                    sha256="00", parent="m@1-00000000", canary=0.1, cameras=["cam1"],
                    thresholds={"cam1": 0.4}, metrics={"agreement_after": 0.9})
    assert ModelUpdate.parse(u.dumps()) == u
    assert set(TOPIC_RECORDS) == {"retrain.requests", "models.updates"}
    assert "__faust" not in json.loads(u.dumps())


@pytest.mark.parametrize("bad, message", [
    ({"artifact": "relative/model.onnx"}, "absolute path"),
    ({"canary": 1.5}, "canary"),
    ({"thresholds": {"cam1": 2.0}}, "thresholds must lie in"),
    ({"tier": "fog"}, "tier"),
])
def test_model_update_rejects_what_workers_could_not_use(bad: dict, message: str) -> None:
    good = {"model": "m", "version": "2-0a0b0c0d", "tier": "edge",
            "artifact": "/srv/m/model.onnx", "sha256": "00"}
    with pytest.raises(RecordError, match=message):
        ModelUpdate.parse(json.dumps({**good, **bad}))


def test_registry_publishes_versions_along_the_lineage(tmp_path: Path, onnx: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    assert reg.latest("det") is None and reg.history("det") == []
    a = reg.publish(onnx, FIELDS, parent="det@1-abcdef12", training_window={"camera": "c1"},
                    metrics={"agreement_after": 0.91}, thresholds={"c1": 0.4})
    b = reg.publish(onnx, Manifest.load(a.folder), parent=f"det@{a.version}",
                    thresholds={**a.thresholds, "c2": 0.5})
    assert [version_number(e.version) for e in reg.history("det")] == [2, 3]
    assert reg.latest("det") == b and reg.get("det", a.version) == a
    man = Manifest.load(b.folder)
    assert man.sha256 == sha256_file(b.artifact) == sha256_file(onnx)
    assert man.parent == f"det@{a.version}" and man.layout == "ssd-tfod"
    assert man.model_extra is not None and man.model_extra["thresholds"] == {"c1": 0.4, "c2": 0.5}
    assert Manifest.load(a.folder).model_extra["training_window"] == {"camera": "c1"}
    assert man.created_at and man.metrics == {}
    u = b.update("edge", canary=0.2, cameras=["c2"], request_id="r9")
    assert Path(u.artifact).is_absolute() and Path(u.artifact).exists()
    assert (u.parent, u.canary, u.cameras, u.request_id) == (f"det@{a.version}", 0.2, ["c2"], "r9")
    assert [p.name for p in (tmp_path / "reg" / "det").iterdir() if p.name.startswith(".")] == []


def test_registry_publishes_atomically_or_not_at_all(tmp_path: Path, onnx: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    with pytest.raises(ModelError, match="no such file"):
        reg.publish(tmp_path / "missing.onnx", FIELDS)
    with pytest.raises(ModelError, match="must name the model"):
        reg.publish(onnx, {"layout": "ssd-tfod"})
    with pytest.raises(ModelError, match=r"no version '9-00000000' of 'det'.*published: none"):
        reg.get("det", "9-00000000")
    versions: list[str] = []

    def publish() -> None:
        versions.append(reg.publish(onnx, FIELDS).version)

    threads = [threading.Thread(target=publish) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(version_number(v) for v in versions) == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in (tmp_path / "reg" / "det").iterdir()) == sorted(versions)


def test_agreement_is_f1_of_a_greedy_same_label_match() -> None:
    assert agreement([], []) == 1.0
    assert agreement([box(0.1)], []) == 0.0 and agreement([], [box(0.1)]) == 0.0
    assert agreement([box(0.1)], [box(0.1, label="car")]) == 0.0  # labels must agree
    assert agreement([box(0.1)], [box(0.16)]) == 0.0  # IoU 0.25
    assert agreement([box(0.1)], [box(0.16)], iou=0.2) == 1.0
    # two edge boxes on one cloud box: one true positive, one false positive
    assert agreement([box(0.1, 0.9), box(0.11, 0.8)], [box(0.1)]) == pytest.approx(2 / 3)


def test_threshold_calibration_drops_low_scored_false_positives() -> None:
    cloud = [[box(0.1), box(0.4)] for _ in range(4)]
    edge = [[box(0.1, 0.8), box(0.4, 0.6), box(0.7, 0.45), box(0.85, 0.35)] for _ in range(4)]
    fit = calibrate_threshold(edge, cloud, current=0.3)
    assert 0.45 < fit.threshold <= 0.6 and fit.f1 == 1.0
    assert evaluate(edge, cloud, fit.threshold)["agreement"] == 1.0
    assert evaluate(edge, cloud, 0.3)["agreement"] == pytest.approx(2 / 3)
    # a flat optimum keeps the current threshold
    assert calibrate_threshold(cloud, cloud, current=0.5).threshold == 0.5
    with pytest.raises(ValueError, match="grid is empty"):
        calibrate_threshold(edge, cloud, 0.3, grid=[])


def test_teacher_frames_take_jpeg_arrays_and_records() -> None:
    img = np.full((48, 64, 3), 90, np.uint8)

    class Shadow:  # the shape of a shadow-topic record
        jpeg = encode_jpeg(img)
        boxes = [box(0.1)]
        ts_ms = 7

    frames = teacher_frames([(img, [box(0.1)]), (encode_jpeg(img), [], 3), Shadow()])
    assert [f.image.shape for f in frames] == [(48, 64, 3)] * 3
    assert [len(f.boxes) for f in frames] == [1, 0, 1] and frames[2].ts_ms == 7
    train, held = split(frames * 4, holdout=0.25)
    assert (len(train), len(held)) == (9, 3)
    with pytest.raises(ModelError, match="teacher frame 0: expected"):
        teacher_frames([42])
    with pytest.raises(ValueError, match="holdout must lie strictly between 0 and 1"):
        split(frames, holdout=1.0)


def test_the_builtin_retrainer_leaves_other_models_to_other_trainers(tmp_path: Path) -> None:
    req = RetrainRequest(camera="cam1", model="yolov8n", reason="drift", window_start_ms=0,
                         window_end_ms=1)
    res = Retrainer(ModelRegistry(tmp_path / "reg"), tmp_path / "models").run(req, [])
    assert not res.published and "request is for 'yolov8n'" in res.reason


def test_an_unknown_serving_version_is_a_refusal(tmp_path: Path, onnx: Path) -> None:
    (tmp_path / "models" / "det").mkdir(parents=True)
    Manifest(name="det", version="1-00000000", sha256="00", layout="ssd-tfod").save(
        tmp_path / "models" / "det")
    img = np.zeros((8, 8, 3), np.uint8)
    req = RetrainRequest(camera="cam1", model="det", model_version="7-deadbeef", reason="x",
                         window_start_ms=0, window_end_ms=1)
    res = Retrainer(ModelRegistry(tmp_path / "reg"), tmp_path / "models", edge="det").run(
        req, [(img, [])] * 8)
    assert not res.published and "no version '7-deadbeef' of 'det'" in res.reason


def test_loop_watch_scores_a_run_from_its_pairs() -> None:
    """Before = day pairs; after = from 3 s past the promotion; recovery = end of the
    first 10 s window after the promotion at >= 95 % of before, counted from the drift."""
    from autosteer.settings import Settings
    from autosteer.streams.loop_watch import LoopWatch
    from autosteer.topics.records import QualityRecord

    def pair(a: float) -> QualityRecord:
        return QualityRecord(ts_ms=0, node="n", camera="cam1", seq=0, edge_model_id="e",
                             edge_model_version="1", cloud_model_id="c",
                             cloud_model_version="1", agreement=a, edge_boxes=1,
                             cloud_boxes=1, edge_mean_score=0.5, cloud_mean_score=0.5)

    watch = LoopWatch(Settings(kafka_bootstrap="127.0.0.1:1"))  # never polled
    try:
        watch.quality = ([(t, pair(0.9)) for t in range(0, 20)]
                         + [(t, pair(0.3)) for t in range(20, 50)]
                         + [(t, pair(0.88)) for t in range(50, 80)])
        watch.drift_at, watch.promoted_at = 20.0, 50.0
        sc = watch.score()
        assert sc.before == pytest.approx(0.9) and sc.in_the_dark == pytest.approx(0.3)
        assert sc.after == pytest.approx(0.88) and sc.recovered_fraction == pytest.approx(0.88 / 0.9)
        assert sc.recovery_s == pytest.approx(40.0)  # window [50, 60) is all 0.88 >= 0.855
        assert "<svg" in watch.chart()
    finally:
        watch.close()
