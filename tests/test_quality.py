"""Shadow sampling: some edge frames also go to the cloud; the pair gives agreement."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from autosteer.processors.decode import encode_jpeg
from autosteer.settings import Settings
from autosteer.topics.names import TopicNames
from autosteer.topics.records import Detection, FrameRecord, QualityRecord, ShadowResult, now_ms
from helpers import Worker, cli, consume, produce, wait_for

pytestmark = pytest.mark.integration


def test_shadow_frames_measure_edge_cloud_agreement(
        make_settings: Callable[..., Settings], start_worker: Callable[[Settings], Worker],
        frames: list[np.ndarray]) -> None:
    s = make_settings(edge_ratio=1.0, shadow_rate=0.5)
    names = TopicNames(s.topic_prefix)
    start_worker(s)
    n = 10
    produce(s, names.frames, [(b"camQ", FrameRecord(camera="camQ", seq=i, ts_ms=now_ms(),
                                                     jpeg=encode_jpeg(frames[i], 90)).dumps())
                              for i in range(n)])
    quality = [QualityRecord.parse(m.value()) for m in consume(
        s, names.quality, until=lambda m: len(m) >= n // 2, timeout_s=90,
        what="agreement for every other frame")]
    assert sorted(q.seq for q in quality) == [1, 3, 5, 7, 9]
    assert all(0.0 <= q.agreement <= 1.0 for q in quality)
    assert all(q.edge_model_id.endswith("int8") and q.cloud_model_id.endswith("fp32")
               for q in quality)
    assert np.mean([q.agreement for q in quality]) > 0.5, "INT8 mostly agrees with FP32"
    shadows = [ShadowResult.parse(m.value()) for m in consume(
        s, names.shadow, until=lambda m: len(m) >= 5, timeout_s=30, what="shadow results")]
    assert all(sr.jpeg[:2] == b"\xff\xd8" for sr in shadows), "teacher frames carry the JPEG"
    dets = [Detection.parse(m.value()) for m in consume(
        s, names.detections, until=lambda m: len(m) >= n, timeout_s=30, what="detections")]
    assert {d.tier for d in dets} == {"edge"}, "shadow answers are not user results"

    query = ("SELECT count() AS n, avg(agreement) AS a FROM autosteer.telemetry_quality "
             "WHERE camera = 'camQ'")

    def stored() -> int:
        res = cli(s, "sql", query, "--format", "json")
        return int(json.loads(res.stdout.splitlines()[0])["n"]) if res.returncode == 0 else 0

    wait_for(lambda: stored() >= 5, 30, "agreement rows in the store")
