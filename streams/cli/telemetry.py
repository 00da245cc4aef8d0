"""Reading telemetry: ``sql`` (a query or a named view) and ``report`` (HTML charts)."""

from __future__ import annotations

import click
from autosteer.streams.cli.app import settings
from autosteer.streams.cli.output import echo_rows
from autosteer.streams.sql import FORMATS, database_of, run_sql


@click.command()
@click.argument("query", required=False)
@click.option("--view", default=None, help="print a named view instead, e.g. "
              "p95_latency_per_tier_minute (see docs/telemetry.md); --view list names them")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table")
def sql(query: str | None, view: str | None, fmt: str) -> None:
    """Run a read-only SQL query over telemetry and print the answer."""
    from autosteer.telemetry.schema import VIEWS

    s = settings()
    if view == "list":
        for name in VIEWS:
            click.echo(name)
        return
    if view:
        if view not in VIEWS:
            raise click.ClickException(f"no view {view!r}; choose from {', '.join(VIEWS)}")
        query = f"SELECT * FROM {database_of(s)}.{view}"
    if not query:
        raise click.UsageError("give a QUERY or --view NAME")
    cols, rows = run_sql(s, query)
    echo_rows(cols, rows, fmt)


@click.command()
@click.option("--minutes", type=float, default=30.0, show_default=True)
@click.option("--bucket", "bucket_s", type=int, default=10, show_default=True,
              help="seconds per point")
@click.option("--out", type=click.Path(dir_okay=False), default="autosteer-report.html",
              show_default=True)
def report(minutes: float, bucket_s: int, out: str) -> None:
    """Write an HTML report: latency quantiles, throughput and offload ratio over time."""
    import time
    from pathlib import Path

    from autosteer.telemetry.report import build_report

    s = settings()
    since = int((time.time() - minutes * 60) * 1000)
    page = build_report(lambda q: run_sql(s, q), database_of(s), since, bucket_s)
    Path(out).write_text(page)
    click.echo(f"wrote {out}")
