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


def test_the_architecture_page_names_every_role_and_topic() -> None:
    """docs/architecture.md cannot silently go stale: a new role or topic must be in it."""
    from autosteer.streams.roles import ROLES
    from autosteer.topics.catalog import CATALOG

    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [f"role {r}" for r in ROLES if f"`{r}`" not in text]
    missing += [f"topic {t.suffix}" for t in CATALOG if f"| `{t.suffix}` |" not in text]
    assert not missing, f"docs/architecture.md lacks {missing}"
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text()
