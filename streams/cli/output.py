"""What the commands print: SQL answers, the local stack's status, shell exports."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import click
from autosteer.streams.sql import format_rows


def echo_rows(cols: list[str], rows: list[tuple[Any, ...]], fmt: str = "table") -> None:
    """Print an SQL answer as a table, CSV or JSON lines (see :func:`format_rows`)."""
    for text in format_rows(cols, rows, fmt):
        click.echo(text, nl=fmt != "csv")


def echo_status(status: Iterable[tuple[str, str, str]], indent: str = "") -> None:
    """One aligned line per server: name, where it listens, its state."""
    for name, where, state in status:
        click.echo(f"{indent}{name:16} {where:48} {state}")


def echo_exports(exports: Mapping[str, str]) -> None:
    """The environment other autosteer commands need, as one ``export`` line."""
    click.echo("for other autosteer commands:\n  export "
               + " ".join(f"{k}={v}" for k, v in exports.items()))
