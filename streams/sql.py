"""Telemetry SQL from outside the worker: where to send a query, and how to print the
answer. ``autosteer sql``, ``autosteer report`` and the demo's summary use both.

>>> for line in format_rows(["tier", "p95_ms"], [("edge", 41.234), ("cloud", 80.0)]):
...     print(line)
 tier  p95_ms
-----  ------
 edge   41.23
cloud   80.00
(2 rows)
>>> format_rows(["n"], [(3,)], "csv")
['n\\r\\n3\\r\\n']
>>> format_rows(["n", "at"], [(3, "x")], "json")
['{"n": 3, "at": "x"}']
"""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from autosteer.errors import StoreError
from autosteer.settings import Settings

FORMATS = ("table", "csv", "json")


def database_of(s: Settings) -> str:
    """The telemetry database: the path of ``AUTOSTEER_CLICKHOUSE_URL`` on a server,
    ``autosteer`` in the embedded store."""
    return s.clickhouse_url.rsplit("/", 1)[-1] if s.store == "server" else "autosteer"


def run_sql(s: Settings, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Server mode: ask ClickHouse directly. Embedded mode: ask the running worker's
    /sql endpoint, or open the chdb directory when no worker holds it. A query the
    worker refuses raises :class:`StoreError` with the worker's reason."""
    from autosteer.telemetry.store import EmbeddedStore, ServerStore

    if s.store == "server":
        store = ServerStore(s.clickhouse_url)
        try:
            return store.query(query, readonly=True)
        finally:
            store.close()
    url = f"http://{s.web_host}:{s.web_port}/sql?" + urllib.parse.urlencode({"q": query})
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            doc = json.load(resp)
        return doc["columns"], [tuple(r) for r in doc["rows"]]
    except urllib.error.HTTPError as exc:
        raise StoreError(json.load(exc).get("error", str(exc))) from exc
    except (urllib.error.URLError, ConnectionError):
        embedded = EmbeddedStore(s.chdb_path)
        try:
            return embedded.query(query, readonly=True)
        finally:
            embedded.close()


def format_rows(cols: list[str], rows: list[tuple[Any, ...]], fmt: str = "table") -> list[str]:
    """The answer as text to print, one string per ``click.echo``: ``table`` (aligned
    columns, floats to 2 places, a row count), ``csv`` (one string, header first) or
    ``json`` (one object per row)."""
    if fmt == "json":
        return [json.dumps(dict(zip(cols, r, strict=True)), default=str) for r in rows]
    if fmt == "csv":
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(cols)
        w.writerows(rows)
        return [out.getvalue()]
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")

    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    table = [cols] + [[cell(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    lines = []
    for n, row in enumerate(table):
        lines.append("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return lines
