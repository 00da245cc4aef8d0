"""Root cause -> action: model causes ask for retraining, infrastructure causes re-plan,
the rest alert a person."""

from __future__ import annotations

import pytest
from autosteer.anomaly.records import Anomaly
from autosteer.rootcause.actions import decide
from autosteer.rootcause.records import Cause, RootCause


def case(cause_type: str, dimension: str, value: str, camera: str = "cam1",
         causes: bool = True) -> tuple[Anomaly, RootCause]:
    a = Anomaly(node="n1", camera=camera, tier="edge", metric="score", detector="RobustZScore",
                start_ms=1_000, end_ms=2_000, score=9.0, threshold=5.0)
    cause = Cause(rank=1, dimension=dimension, value=value, metric="score",
                  cause_type=cause_type, score=0.9, baseline=0.6, anomaly=0.3, sql="SELECT 1")
    rc = RootCause(anomaly_id=a.id, database="db", start_ms=1_000, end_ms=2_000,
                   baseline_start_ms=0, baseline_end_ms=500, cause_type=cause_type,
                   causes=[cause] if causes else [], ranker="RiskRanker()")
    return a, rc


def act(a: Anomaly, rc: RootCause):  # noqa: ANN201
    return decide(a, rc, edge_model="int8", teacher="fp32", collect_ms=5_000, now=10_000)


def test_a_model_cause_on_a_camera_asks_to_retrain_that_camera() -> None:
    action, req = act(*case("model_drift", "camera", "cam7"))
    assert action.kind == "retrain" and req is not None
    assert (req.camera, req.model, req.teacher, req.tier) == ("cam7", "int8", "fp32", "edge")
    assert (req.window_start_ms, req.window_end_ms) == (1_000, 15_000)
    assert action.retrain_request_id == req.id and "cam7" in req.reason


def test_a_model_cause_on_a_version_retrains_the_anomalys_camera_from_that_version() -> None:
    action, req = act(*case("model_drift", "model_version", "2-abc"))
    assert action.kind == "retrain" and req is not None
    assert (req.camera, req.model_version) == ("cam1", "2-abc")


def test_a_model_cause_without_a_camera_is_an_alert() -> None:
    action, req = act(*case("model_drift", "model_version", "2-abc", camera=""))
    assert action.kind == "alert" and req is None and "no camera" in action.reason


@pytest.mark.parametrize("cause_type", ["node_overload", "link_degradation"])
def test_infrastructure_causes_replan_and_never_retrain(cause_type: str) -> None:
    action, req = act(*case(cause_type, "node", "edge-1"))
    assert action.kind == "replan" and req is None
    assert (action.dimension, action.value, action.cause_type) == ("node", "edge-1", cause_type)


@pytest.mark.parametrize("cause_type", ["camera_failure", "bad_deploy", "unknown"])
def test_other_causes_alert_a_person(cause_type: str) -> None:
    action, req = act(*case(cause_type, "camera", "cam1"))
    assert action.kind == "alert" and req is None


def test_no_cause_no_action() -> None:
    action, req = act(*case("unknown", "node", "n1", causes=False))
    assert action.kind == "none" and req is None
