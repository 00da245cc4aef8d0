"""``autosteer report``: an HTML page with latency quantiles, throughput and offload ratio
over time, drawn as inline SVG from the telemetry windows (no plotting library needed).

>>> svg = line_chart({"edge": [(0, 1.0), (10, 2.0)]}, "p95", "ms")
>>> svg.startswith("<svg") and "edge" in svg
True
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from autosteer.telemetry.schema import (
    Query,
    latency_quantiles_sql,
    offload_ratio,
    throughput,
    throughput_sql,
)

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def line_chart(series: dict[str, Sequence[tuple[float, float]]], title: str, unit: str,
               width: int = 760, height: int = 220,
               markers: Sequence[tuple[float, str]] = ()) -> str:
    """One SVG chart; x is epoch seconds (or seconds of a run, when below 10^6), y in
    ``unit``; ``markers`` are labelled vertical lines (events) at their x."""
    pts = [p for s in series.values() for p in s]
    left, right, top, bottom = 60, 110, 24, 28
    if not pts:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="40">'
                f'<text x="4" y="24">{html.escape(title)}: no data</text></svg>')
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y1 = max(p[1] for p in pts) * 1.1 or 1.0
    x1 = x1 if x1 > x0 else x0 + 1

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - y / y1 * (height - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="14" font-size="13">{html.escape(title)}</text>',
           f'<line x1="{left}" y1="{sy(0)}" x2="{width - right}" y2="{sy(0)}" stroke="#999"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{sy(0)}" stroke="#999"/>']
    for frac in (0.0, 0.5, 1.0):
        y = y1 / 1.1 * frac
        out.append(f'<text x="{left - 4}" y="{sy(y) + 4:.1f}" text-anchor="end">'
                   f'{y:.3g} {html.escape(unit)}</text>')
    for x in (x0, x1):
        label = (f"{x:.0f} s" if x < 1e6 else
                 datetime.fromtimestamp(x, UTC).strftime("%H:%M:%S"))
        out.append(f'<text x="{sx(x):.1f}" y="{height - 8}" text-anchor="middle">{label}</text>')
    for k, (x, name) in enumerate(markers):
        if not x0 <= x <= x1:
            continue
        out.append(f'<line x1="{sx(x):.1f}" y1="{top}" x2="{sx(x):.1f}" y2="{sy(0)}" '
                   'stroke="#555" stroke-dasharray="3,3"/>')
        out.append(f'<text x="{sx(x) + 3:.1f}" y="{top + 10 + 11 * (k % 4)}" fill="#555">'
                   f'{html.escape(name)}</text>')
    for i, (name, s) in enumerate(sorted(series.items())):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(s))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        out.append(f'<text x="{width - right + 8}" y="{top + 14 * i + 10}" fill="{color}">'
                   f'{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _epoch(v: Any) -> float:
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).timestamp()
    return float(datetime.fromisoformat(str(v)).replace(tzinfo=UTC).timestamp())


def build_report(query: Query, database: str, since_ms: int, bucket_s: int = 10) -> str:
    """The report page for windows since ``since_ms``, in ``bucket_s`` buckets. fps is
    :func:`~autosteer.telemetry.schema.fps` (frames over the seconds their windows
    cover); the offload ratio is the cloud share."""
    bucket = f"toDateTime(intDiv(toUInt32(ts), {bucket_s}) * {bucket_s})"
    lat_sql = latency_quantiles_sql(database, bucket, since_ms)
    tput_sql = throughput_sql(database, bucket, since_ms)
    _, lat = query(lat_sql)
    _, tput = query(tput_sql)
    quantiles: dict[str, list[tuple[float, float]]] = {}
    for t, tier, p50, p95, p99 in lat:
        for name, v in (("p50", p50), ("p95", p95), ("p99", p99)):
            quantiles.setdefault(f"{tier} {name}", []).append((_epoch(t), float(v)))
    fps: dict[str, list[tuple[float, float]]] = {}
    for t, tier, rate in throughput(tput):
        fps.setdefault(tier, []).append((_epoch(t), rate))
    per_t: dict[float, dict[str, float]] = {}
    for t, tier, n, *_ in tput:
        per_t.setdefault(_epoch(t), {})[str(tier)] = float(n)
    ratio = {"cloud share": [(t, offload_ratio(v)) for t, v in sorted(per_t.items())]}
    charts = [line_chart(quantiles, "End-to-end latency quantiles (from window sketches)", "ms"),
              line_chart(fps, "Throughput per tier", "fps"),
              line_chart(ratio, "Offload ratio (share of frames on the cloud)", "")]
    queries = "\n\n".join(html.escape(q) for q in (lat_sql, tput_sql))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>autosteer report</title>"
            "</head><body style='font-family:sans-serif'><h1>autosteer telemetry</h1>"
            f"<p>database <code>{html.escape(database)}</code>, since "
            f"{datetime.fromtimestamp(since_ms / 1000, UTC).isoformat(timespec='seconds')}, "
            f"{bucket_s} s buckets</p>" + "<br>".join(charts) +
            f"<h2>SQL</h2><pre>{queries}</pre></body></html>")
