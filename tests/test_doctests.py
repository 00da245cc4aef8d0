"""Docstring examples are tests."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "autosteer.retrain.calibrate",
    "autosteer.retrain.teacher",
    "autosteer.retrain.registry",
    "autosteer.retrain.records",
    "autosteer.retrain.agreement",
    "autosteer.anomaly.drift",
    "autosteer.settings",
    "autosteer.topics.names",
    "autosteer.topics.records",
    "autosteer.offload.policy",
    "autosteer.offload.profiles",
    "autosteer.offload.queueing",
    "autosteer.offload.link",
    "autosteer.offload.estimate",
    "autosteer.offload.live",
    "autosteer.offload.optimize",
    "autosteer.offload.controller",
    "autosteer.offload.baselines",
    "autosteer.processors.coco",
    "autosteer.processors.decode",
    "autosteer.processors.yolo",
    "autosteer.processors.ingest",
    "autosteer.telemetry.store",
    "autosteer.telemetry.window",
    "autosteer.telemetry.sampling",
    "autosteer.telemetry.schema",
    "autosteer.telemetry.report",
    "autosteer.offload.factory",
    "autosteer.spec.errors",
    "autosteer.spec.model",
    "autosteer.spec.load",
    "autosteer.spec.graph",
    "autosteer.spec.compat",
    "autosteer.spec.network",
    "autosteer.spec.checks",
    "autosteer.spec.result",
    "autosteer.spec.render",
    "autosteer.spec.roles",
    "autosteer.spec.deploy",
    "autosteer.spec.schema",
    "autosteer.spec.synthetic",
    "autosteer.spec.milp",
    "autosteer.spec.search",
    "autosteer.anomaly.base",
    "autosteer.anomaly.rolling",
    "autosteer.anomaly.robust",
    "autosteer.anomaly.hst",
    "autosteer.anomaly.detector",
    "autosteer.anomaly.features",
    "autosteer.anomaly.records",
    "autosteer.anomaly.monitor",
    "autosteer.rootcause.metrics",
    "autosteer.rootcause.queries",
    "autosteer.rootcause.cube",
    "autosteer.rootcause.rankers",
    "autosteer.rootcause.records",
    "autosteer.rootcause.faults",
    "autosteer.rootcause.simulate",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no doctest examples"
