"""From a root cause to what the system does about it.

- a **model** cause (``model_drift``: confidence, agreement or detections got worse on a
  camera or a model version) -> a :class:`~autosteer.retrain.records.RetrainRequest` for
  the camera's edge model on ``<prefix>.retrain.requests``, the same contract as a drift
  (the built-in retrainer or yours answers it);
- an **infrastructure** cause (``node_overload``, ``link_degradation``) -> a ``replan``
  action: the router's offload policy re-plans at once from fresh measurements, and
  ``autosteer deploy`` re-places the spec's operators with the blamed node or link
  derated (``spec.replan``);
- anything else (``camera_failure``, ``bad_deploy``, ``unknown``) -> an ``alert``
  action: it is on the topic and the UI for a person; nothing automatic.

Every action goes to ``<prefix>.control.actions`` (key: node), so users can follow or
veto what the loop does.

>>> from autosteer.rootcause.records import Cause, RootCause
>>> from autosteer.anomaly.records import Anomaly
>>> a = Anomaly(node="n1", camera="cam1", tier="edge", metric="score", detector="RobustZScore",
...             start_ms=0, end_ms=1, score=9.0, threshold=5.0)
>>> cause = Cause(rank=1, dimension="camera", value="cam1", metric="score",
...               cause_type="model_drift", score=0.9, baseline=0.6, anomaly=0.3, sql="SELECT 1")
>>> rc = RootCause(anomaly_id=a.id, database="db", start_ms=0, end_ms=1,
...                baseline_start_ms=0, baseline_end_ms=0, cause_type="model_drift",
...                causes=[cause], ranker="RiskRanker()")
>>> action, request = decide(a, rc, edge_model="ssd_int8", teacher="ssd_fp32",
...                          collect_ms=15_000, now=100_000)
>>> action.kind, request.camera, request.model, request.window_end_ms
('retrain', 'cam1', 'ssd_int8', 115000)
"""

from __future__ import annotations

import uuid
from typing import Literal

from autosteer.anomaly.records import Anomaly
from autosteer.retrain.records import RetrainRequest
from autosteer.rootcause.metrics import CauseType
from autosteer.rootcause.records import RootCause
from autosteer.topics.records import Record, now_ms
from pydantic import Field

ActionKind = Literal["retrain", "replan", "alert", "none"]
MODEL_CAUSES: frozenset[str] = frozenset({"model_drift"})
INFRA_CAUSES: frozenset[str] = frozenset({"node_overload", "link_degradation"})


class ControlAction(Record):
    """What the control plane did about one root cause. Key: node.
    Topic: ``<prefix>.control.actions``."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    ts_ms: int = Field(default_factory=now_ms, description="epoch ms")
    anomaly_id: str
    kind: ActionKind = Field(description="retrain: a RetrainRequest was published; replan: "
                             "offload and placement re-plan; alert: for a person; none: no cause")
    cause_type: CauseType
    dimension: str = Field("", description="the top cause's dimension: node, camera, tier, "
                           "model_version")
    value: str = Field("", description="the top cause's value, e.g. the node's name")
    metric: str = ""
    reason: str = Field(description="why, in words")
    retrain_request_id: str = Field("", description="the RetrainRequest's id (kind retrain)")


def decide(anomaly: Anomaly, rc: RootCause, *, edge_model: str, teacher: str,
           collect_ms: int, now: int | None = None
           ) -> tuple[ControlAction, RetrainRequest | None]:
    """The action for ``rc`` (and the retrain request, for a model cause)."""
    now = now_ms() if now is None else now
    top = rc.causes[0] if rc.causes else None
    if top is None:
        return ControlAction(anomaly_id=anomaly.id, kind="none", cause_type=rc.cause_type,
                             reason="no cause found: nothing to do"), None
    what = (f"{top.dimension}={top.value} {top.metric} "
            f"{_num(top.baseline)} -> {_num(top.anomaly)} ({top.cause_type})")
    base = {"anomaly_id": anomaly.id, "cause_type": top.cause_type,
            "dimension": top.dimension, "value": top.value, "metric": top.metric}
    if top.cause_type in MODEL_CAUSES:
        camera = top.value if top.dimension == "camera" else anomaly.camera
        if not camera:
            return ControlAction(**base, kind="alert", reason=f"{what}: a model cause with no "
                                 "camera to retrain for; look at the model's cameras"), None
        request = RetrainRequest(
            camera=camera, model=edge_model, tier="edge", teacher=teacher,
            model_version=top.value if top.dimension == "model_version" else "",
            reason=f"root cause of anomaly {anomaly.id}: {what}",
            window_start_ms=rc.start_ms, window_end_ms=now + collect_ms)
        return ControlAction(**base, kind="retrain", reason=f"{what}: retrain {edge_model} "
                             f"for {camera}", retrain_request_id=request.id), request
    if top.cause_type in INFRA_CAUSES:
        return ControlAction(**base, kind="replan", reason=f"{what}: re-plan offload and "
                             "placement around it"), None
    return ControlAction(**base, kind="alert", reason=f"{what}: no automatic action for a "
                         f"{top.cause_type} cause"), None


def _num(v: float | None) -> str:
    return "?" if v is None else f"{v:.3g}"
