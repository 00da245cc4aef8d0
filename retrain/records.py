"""The drift -> retrain -> hot-swap contract: three records.

- :class:`Drift`: one detected change on one (camera, model, feature), typed and with
  its evidence. :class:`~autosteer.anomaly.drift.DriftMonitor` returns them.
- :class:`RetrainRequest` on ``<prefix>.retrain.requests`` (key: camera): learn the edge
  model of one camera again from the shadow frames of a time window.
- :class:`ModelUpdate` on ``<prefix>.models.updates`` (key: model name): a new version in
  the model registry and how to roll it out (canary share, cameras, thresholds).

Any trainer (ours, or a user's YOLO fine-tuning on a GPU) consumes the first and
publishes the second; see ``docs/retraining.md``. All are strict JSON in and out:

>>> d = Drift(camera="cam1", model="ssd_int8", feature="brightness", kind="sudden",
...           detector="adwin", ts_ms=1_700_000_000_000, before=0.42, after=0.15,
...           n_before=320, n_after=64, effect=6.1)
>>> d.id
'cam1/ssd_int8/brightness@1700000000000'
>>> r = RetrainRequest(id="r1", camera="cam1", model="ssd_int8", model_version="1-ab12cd34",
...                    reason="brightness drift", drifts=[d], requested_at_ms=1_700_000_000_500,
...                    window_start_ms=1_699_999_700_000, window_end_ms=1_700_000_000_500)
>>> RetrainRequest.parse(r.dumps()) == r
True
>>> ModelUpdate.parse(b'{"model": "ssd_int8", "version": "2-ff00ee11", "tier": "edge", '
...                   b'"artifact": "models/model.onnx", "sha256": "ab", "created_at_ms": 1}')
Traceback (most recent call last):
...
autosteer.errors.RecordError: ModelUpdate: artifact: Value error, artifact must be an absolute path on a filesystem every worker mounts; got 'models/model.onnx'
"""

from __future__ import annotations

import uuid
from pathlib import PurePosixPath
from typing import Literal

from autosteer.topics.records import CameraId, Record, Tier, now_ms
from pydantic import Field, field_validator

DriftKind = Literal["sudden", "gradual", "recurring"]


class Drift(Record):
    """A change in one statistic of one camera's frames or one model's outputs."""

    camera: CameraId
    model: str = Field(description="model id whose inputs or outputs drifted")
    feature: str = Field(description="the statistic: brightness, contrast, blur, confidence, "
                         "detections, agreement, or score_distribution (KS on sketches)")
    kind: DriftKind = Field(description="sudden: a step; gradual: a trend across the recent "
                            "window; recurring: back to a level (or distribution) seen before")
    detector: Literal["adwin", "ks"] = Field(description="adwin for a scalar's mean, ks for "
                                             "the confidence-score distribution")
    ts_ms: int = Field(description="when the drift was detected (epoch ms)")
    before: float = Field(description="mean before the change (ks: median of the reference)")
    after: float = Field(description="mean after the change (ks: median of the recent window)")
    n_before: int = Field(ge=0, description="values in the window before the change")
    n_after: int = Field(ge=0, description="values in the window after the change")
    effect: float = Field(description="|after - before| in reference standard deviations "
                          "(ks: the KS statistic D)")
    statistic: float | None = Field(None, description="ks: largest CDF distance D of the sketches")
    threshold: float | None = Field(None, description="ks: the sketch-aware rejection threshold "
                                    "for D (rank errors included)")
    p_value: float | None = Field(None, description="ks: approximate p-value of D")

    @property
    def id(self) -> str:
        """Stable id: ``camera/model/feature@ts_ms``."""
        return f"{self.camera}/{self.model}/{self.feature}@{self.ts_ms}"


class RetrainRequest(Record):
    """Learn one camera's edge model again. Key: camera.
    Topic: ``<prefix>.retrain.requests``."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, description="request id; "
                    "a ModelUpdate answering it carries it as request_id")
    camera: CameraId
    model: str = Field(description="the model to retrain (edge tier), e.g. "
                       "ssd_mobilenet_v2_coco_int8")
    model_version: str = Field("", description="version serving when drift was detected")
    tier: Tier = "edge"
    teacher: str = Field("", description="the teacher model (cloud tier) whose boxes are labels")
    reason: str = Field(description="why, in words")
    drifts: list[Drift] = Field(default_factory=list, description="the evidence")
    requested_at_ms: int = Field(default_factory=now_ms, description="epoch ms")
    window_start_ms: int = Field(description="learn from shadow frames captured at or after "
                                 "this time (epoch ms)")
    window_end_ms: int = Field(description="... and before this time (epoch ms)")
    max_frames: int = Field(200, ge=1, description="use at most this many frames")


class ModelUpdate(Record):
    """A new model version, published in the registry, and its rollout. Key: model name.
    Topic: ``<prefix>.models.updates``."""

    model: str = Field(description="model name, e.g. ssd_mobilenet_v2_coco_int8")
    version: str = Field(description="registry version, e.g. 2-1f2e3d4c")
    tier: Tier
    artifact: str = Field(description="absolute path of model.onnx on a filesystem every "
                          "worker of the tier mounts; manifest.json lies beside it")
    sha256: str = Field(description="sha256 of the artifact; check it before loading")
    parent: str | None = Field(None, description="the version it was derived from, "
                               "as name@version")
    canary: float = Field(1.0, ge=0.0, le=1.0, description="share of the cameras' frames to "
                          "serve with this version first (1.0 = all)")
    cameras: list[CameraId] = Field(default_factory=list, description="cameras it applies to; "
                                    "empty = all")
    thresholds: dict[str, float] = Field(default_factory=dict, description="score threshold "
                                         "per camera; cameras not listed keep the default")
    metrics: dict[str, float] = Field(default_factory=dict, description="validation metrics, "
                                      "e.g. agreement_before / agreement_after")
    request_id: str | None = Field(None, description="the RetrainRequest it answers")
    created_at_ms: int = Field(default_factory=now_ms, description="epoch ms")

    @field_validator("artifact")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not PurePosixPath(v).is_absolute():
            raise ValueError("artifact must be an absolute path on a filesystem every worker "
                             f"mounts; got {v!r}")
        return v

    @field_validator("thresholds")
    @classmethod
    def _unit(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: t for k, t in v.items() if not 0.0 <= t <= 1.0}
        if bad:
            raise ValueError(f"thresholds must lie in [0, 1]; got {bad}")
        return v


TOPIC_RECORDS: dict[str, type[Record]] = {
    "retrain.requests": RetrainRequest,
    "models.updates": ModelUpdate,
}
