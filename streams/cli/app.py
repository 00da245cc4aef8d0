"""The root ``autosteer`` click group: log level, and autosteer errors shown as CLI
errors (a message, exit status 1, no traceback)."""

from __future__ import annotations

import logging
from typing import Any

import click
from autosteer.errors import AutosteerError
from autosteer.settings import Settings


def settings() -> Settings:
    """The ``AUTOSTEER_*`` settings; a bad value is a CLI error naming the variable."""
    try:
        return Settings()
    except Exception as exc:  # pydantic ValidationError: name the variable
        raise click.ClickException(f"invalid AUTOSTEER_* setting: {exc}") from exc


class Cli(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AutosteerError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=Cli)
@click.option("--loglevel", "-l", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def main(loglevel: str) -> None:
    """autosteer: ML pipelines on Kafka, edge and cloud."""
    logging.basicConfig(level=loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
