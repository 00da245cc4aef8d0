"""Every package's __all__ lists names that exist."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("pkg", ["autosteer.topics", "autosteer.offload", "autosteer.processors",
                                 "autosteer.telemetry", "autosteer.infra", "autosteer.spec",
                                 "autosteer.anomaly", "autosteer.rootcause", "autosteer.retrain"])
def test_all_names_exist(pkg: str) -> None:
    mod = importlib.import_module(pkg)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{pkg}.__all__ lists missing {name}"
