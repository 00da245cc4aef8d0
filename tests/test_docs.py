"""The docs stay true to the code."""

from __future__ import annotations

from pathlib import Path

from autosteer.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    missing = [f"AUTOSTEER_{n.upper()}" for n in Settings.model_fields
               if f"`AUTOSTEER_{n.upper()}`" not in text]
    assert not missing, f"docs/settings.md lacks {missing}"


def test_readme_starts_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
    assert "make demo" in head and "make test" in head
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
