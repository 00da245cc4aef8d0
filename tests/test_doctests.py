"""Docstring examples are tests: every module of the package is collected (nothing is
listed by hand), and every example in it must pass."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import autosteer
import pytest

# run by Debian's /usr/bin/python3 (it imports gi), never imported in the venv
NOT_IMPORTABLE = {"autosteer.infra.rtsp_server"}


def modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(autosteer.__path__, "autosteer.")
                  if m.name not in NOT_IMPORTABLE and ".tests" not in m.name
                  and not m.name.startswith(("autosteer.bench", "autosteer.docs")))


def test_every_module_is_collected() -> None:
    found = set(modules())
    assert {"autosteer.streams.supervise", "autosteer.streams.roles.shadows",
            "autosteer.topics.catalog", "autosteer.offload.policy"} <= found


@pytest.mark.parametrize("name", modules())
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{name}: {result.failed} doctest(s) failed"
