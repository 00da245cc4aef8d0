"""``LoopWatch.follow`` on a real broker: the drift is called when the day is over, the
loop's events are echoed as they arrive, and the watch returns once the promoted version
has settled (``autosteer demo --drift`` and ``bench/closed_loop.py`` read it this way)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from autosteer.retrain.records import ModelUpdate
from autosteer.settings import Settings
from autosteer.streams.loop_watch import LoopWatch
from autosteer.topics.admin import ensure_topics
from autosteer.topics.names import TopicNames
from autosteer.topics.records import QualityRecord
from helpers import produce

pytestmark = pytest.mark.integration


def pair(agreement: float) -> bytes:
    return QualityRecord(ts_ms=0, node="n", camera="cam1", seq=0, edge_model_id="e",
                         edge_model_version="1", cloud_model_id="c", cloud_model_version="1",
                         agreement=agreement, edge_boxes=1, cloud_boxes=1, edge_mean_score=0.5,
                         cloud_mean_score=0.5).dumps()


def test_follow_calls_the_night_echoes_the_loop_and_returns_after_the_promotion(
        make_settings: Callable[..., Settings]) -> None:
    s = make_settings()
    ensure_topics(s)
    names = TopicNames(s.topic_prefix)
    produce(s, names.quality, [(b"cam1", pair(0.9))])  # daylight agreement
    update = ModelUpdate(model="m", version="2-abc", tier="edge", artifact="/tmp/m.onnx",
                         sha256="0" * 64, canary=1.0, metrics={"agreement": 0.88})
    nights: list[float] = []

    def night() -> None:  # the loop answers the drift: a promoted version
        nights.append(watch.now())
        produce(s, names.models_updates, [(b"m", update.dumps())])

    lines: list[str] = []
    watch = LoopWatch(s)
    try:
        started = time.monotonic()
        watch.follow(night, day_s=1.0, night_max_s=60.0, settle_s=0.5, echo=lines.append)
        took = time.monotonic() - started
    finally:
        watch.close()
    assert len(nights) == 1 and nights[0] >= 1.0
    assert watch.drift_at is not None and watch.promoted_at is not None
    assert watch.promoted_at >= watch.drift_at
    assert took < 60.0  # it returned on the promotion, not on night_max_s
    assert [e for _, e in watch.events] == ["night falls", "2-abc promoted"]
    assert any("night falls" in line for line in lines)
    assert any("model m@2-abc: promoted {'agreement': 0.88}" in line for line in lines), lines
    assert [q.agreement for _, q in watch.quality] == [pytest.approx(0.9)]
