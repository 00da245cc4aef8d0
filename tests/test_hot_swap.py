"""Hot swap: a new model version on models.updates is served without a restart; a canary
serves part of the frames; a rollback removes it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from autosteer.processors.decode import encode_jpeg
from autosteer.processors.manifest import Manifest
from autosteer.processors.prepare import INT8
from autosteer.retrain.registry import ModelRegistry
from autosteer.settings import Settings
from autosteer.topics.names import TopicNames
from autosteer.topics.records import Detection, FrameRecord, now_ms
from helpers import Worker, consume, produce, wait_for_swap

pytestmark = pytest.mark.integration


def test_updates_are_served_without_restart_canaried_and_rolled_back(
        make_settings: Callable[..., Settings], start_worker: Callable[[Settings], Worker],
        model_dir: Path, frames: list[np.ndarray], tmp_path: Path) -> None:
    s = make_settings(edge_ratio=1.0, shadow_rate=0.0, roles="router,edge")
    names = TopicNames(s.topic_prefix)
    worker = start_worker(s)
    registry = ModelRegistry(tmp_path / "registry")
    base = Manifest.load(model_dir / INT8)
    v2 = registry.publish(model_dir / INT8 / "model.onnx", base, parent=f"{INT8}@{base.version}",
                          thresholds={"camS": 0.6})
    v3 = registry.publish(model_dir / INT8 / "model.onnx", base, parent=f"{INT8}@{v2.version}")
    jpeg = encode_jpeg(frames[3], 85)
    seq = 0

    def run(n: int) -> list[Detection]:
        nonlocal seq
        first = seq
        produce(s, names.frames, [(b"camS", FrameRecord(camera="camS", seq=i, ts_ms=now_ms(),
                                                         jpeg=jpeg).dumps())
                                  for i in range(first, first + n)])
        seq += n
        got: dict[int, Detection] = {}

        def done(msgs: list) -> bool:
            d = Detection.parse(msgs[-1].value())
            if d.seq >= first:
                got[d.seq] = d
            return len(got) >= n

        consume(s, names.detections, until=done, timeout_s=60, what=f"{n} detections")
        return [got[i] for i in sorted(got)]

    before = run(8)
    assert {d.model_version for d in before} == {base.version}
    pid = worker.proc.pid

    produce(s, names.models_updates, [(INT8.encode(), v2.update("edge").dumps())])
    wait_for_swap(s, v2.version, "serving")  # the watcher loaded it, the loop swapped
    after = run(8)
    assert {d.model_version for d in after} == {v2.version}, "served, without a restart"
    assert worker.proc.pid == pid and worker.proc.poll() is None
    assert min(b.score for d in after for b in d.boxes) >= 0.6, "per-camera threshold applies"

    produce(s, names.models_updates, [(INT8.encode(), v3.update("edge", canary=0.5).dumps())])
    wait_for_swap(s, v3.version, "canary 50%")
    canary = run(20)
    versions = [d.model_version for d in canary]
    assert set(versions) == {v2.version, v3.version}
    assert 6 <= versions.count(v3.version) <= 14, versions

    produce(s, names.models_updates, [(INT8.encode(), v3.update("edge", canary=0.0).dumps())])
    wait_for_swap(s, v3.version, "rolled back")
    assert {d.model_version for d in run(8)} == {v2.version}, "rolled back"
