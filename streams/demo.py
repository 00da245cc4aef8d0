"""``autosteer demo``: the whole pipeline on real parts for about a minute.

Starts (only what is not already running) the tansu broker, a ClickHouse server and
the RTSP camera looping vtest.avi; runs a worker process; registers the camera;
prints a live progress line from the detections topic; then a summary, a few real
detections, and an SQL answer from ClickHouse. Stops what it started.

``autosteer demo --drift``: the closed loop instead. The worker also runs the
``retrain`` role; after ``--seconds`` of day, night falls on the camera (contrast x0.12)
and the demo prints what the loop does about it (drift, retrain request, canary,
promotion) and the edge/cloud agreement before, in the dark and after.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from typing import Any

import click
import numpy as np
from autosteer.infra.stack import LocalStack
from autosteer.infra.worker import WorkerProcess
from autosteer.settings import Settings
from autosteer.streams.sql import database_of, format_rows, run_sql
from autosteer.streams.supervise import poll_until
from autosteer.topics.names import TopicNames
from autosteer.topics.records import CameraCommand, Detection, now_ms
from confluent_kafka import Consumer, Producer

P95_SQL = """SELECT tier, sum(w) AS frames,
       round(quantileExactWeighted(0.5)(v, w), 1) AS p50_ms,
       round(quantileExactWeighted(0.95)(v, w), 1) AS p95_ms,
       round(quantileExactWeighted(0.99)(v, w), 1) AS p99_ms
FROM {db}.telemetry_windows ARRAY JOIN total_ms_values AS v, total_ms_weights AS w
WHERE ts_ms >= {since} AND node = '{node}'
GROUP BY tier ORDER BY tier"""


# The closed loop's settings in the drift demo and bench/closed_loop.py: a fixed 80/20
# split (the loop is about the edge model, not the routing), 30 % of edge frames shadowed,
# re-quantization on, half the camera's frames on a canary.
DRIFT_DEMO: dict[str, Any] = {
    "roles": "router,edge,cloud,ingest,retrain", "offload_policy": "fixed", "edge_ratio": 0.8,
    "shadow_rate": 0.3, "drift_warmup": 15, "retrain_requantize": True,
    "retrain_collect_s": 10.0, "canary_share": 0.5}


def run_demo(settings: Settings, *, seconds: float = 60.0, cameras: int = 1,
             drift: bool = False) -> None:
    run_id = uuid.uuid4().hex[:6]
    s = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}-demo-{run_id}",
                                    "node": f"demo-{run_id}",
                                    **(DRIFT_DEMO if drift else {})})
    stack = LocalStack.from_settings(s)
    s = stack.topic_settings(s)  # every client on the stack's broker (all Kafka nodes)
    started = [name for name, running in (("broker", stack.broker.running()),
                                          ("clickhouse", stack.clickhouse.running()),
                                          ("rtsp", stack.rtsp.running())) if not running]
    click.echo(f"== starting local infrastructure ({s.broker}, ClickHouse, RTSP camera)")
    stack.up(s)
    for name, where, state in stack.status():
        click.echo(f"   {name:16} {where:48} {state}")
    click.echo("== preparing models (cached after the first run)")
    from autosteer.processors.prepare import prepare_models

    prepare_models(s.model_dir, s.sample_video)
    worker = WorkerProcess(s, None, loglevel="warning")  # its warnings on this terminal
    try:
        worker.start(60, create_topics=False)  # stack.up made them
        if drift:
            _drift(s, stack, seconds)
        else:
            _stream(s, stack, seconds, cameras)
    finally:
        click.echo("== stopping")
        worker.stop()
        for name in started:
            getattr(stack, name).stop()


def _stream(s: Settings, stack: LocalStack, seconds: float, cameras: int) -> None:
    names = TopicNames(s.topic_prefix)
    consumer = Consumer(s.consumer_config(f"demo-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([names.detections])
    prod = Producer(s.producer_config())
    t_start = now_ms()
    cams = [f"cam{i + 1}" for i in range(cameras)]
    for cam in cams:
        cmd = CameraCommand(action="start", camera=cam, url=stack.rtsp.url)
        prod.produce(names.cameras, key=cam.encode(), value=cmd.dumps())
    prod.flush(10)
    click.echo(f"== streaming {stack.rtsp.url} as {', '.join(cams)} for {seconds:.0f}s")
    dets: list[Detection] = []
    seen: set[tuple[str, int]] = set()
    t0 = time.monotonic()
    last_print = t0
    window: list[tuple[float, Detection]] = []
    stop_at = t0 + seconds
    drain_until: float | None = None  # set when the cameras are told to stop

    def tick() -> None:  # after every poll: stop the cameras when due, the progress line
        nonlocal drain_until, last_print, window
        now = time.monotonic()
        if now >= stop_at and drain_until is None:
            for cam in cams:
                prod.produce(names.cameras, key=cam.encode(),
                             value=CameraCommand(action="stop", camera=cam).dumps())
            prod.flush(10)
            drain_until = now + 5.0
        if now - last_print >= 1.0:
            last_print = now
            window = [(t, d) for t, d in window if now - t <= 5.0]
            _progress(window, now - t0)

    def take(msg: Any) -> None:
        d = Detection.parse(msg.value())
        if (d.camera, d.seq) not in seen:  # results are at-least-once: dedupe by key
            seen.add((d.camera, d.seq))
            dets.append(d)
            window.append((time.monotonic(), d))

    try:
        poll_until(consumer, take, lambda: drain_until is not None
                   and time.monotonic() >= drain_until, timeout_s=0.2, each=tick)
    finally:
        consumer.close()
    click.echo()
    _summary(s, dets, t_start)


def _drift(s: Settings, stack: LocalStack, day_s: float, night_max_s: float = 180.0) -> None:
    from autosteer.streams.loop_watch import LoopWatch

    watch = LoopWatch(s)
    prod = Producer(s.producer_config())
    names = watch.names
    prod.produce(names.cameras, key=b"cam1", value=CameraCommand(
        action="start", camera="cam1", url=stack.rtsp.url, max_fps=5).dumps())
    prod.flush(10)
    click.echo(f"== closed loop on {stack.rtsp.url}: {day_s:.0f}s of day, then night falls")
    try:
        watch.follow(stack.rtsp.night, day_s, night_max_s, settle_s=20.0, echo=click.echo,
                     progress_s=5.0)
    finally:
        stack.rtsp.night(False)
        prod.produce(names.cameras, key=b"cam1",
                     value=CameraCommand(action="stop", camera="cam1").dumps())
        prod.flush(10)
        watch.close()
    sc = watch.score(day_from_s=day_s / 2)
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    click.echo("== summary")
    click.echo(f"   agreement before {fmt(sc.before)}, in the dark {fmt(sc.in_the_dark)}, "
               f"after the promoted version {fmt(sc.after)} ({sc.recovered_fraction:.0%} of "
               f"before)")
    click.echo("   back to 95 % of before " + (f"{sc.recovery_s:.0f}s after night fell"
                                                 if sc.recovery_s is not None else "not yet"))
    click.echo("   events: " + "; ".join(f"{t:.0f}s {e}" for t, e in watch.events))


def _progress(window: list[tuple[float, Detection]], elapsed: float) -> None:
    tty = sys.stdout.isatty()
    if not tty and round(elapsed) % 5:
        return  # in a log, one line every 5 s instead of a live line
    start, end = ("\r", "") if tty else ("", "\n")
    if not window:
        click.echo(f"{start}  t={elapsed:5.0f}s  waiting for the first detections...{end}", nl=False)
        return
    span = max(1.0, window[-1][0] - window[0][0])
    lat = np.array([d.latency.total_ms for _, d in window])
    edge = sum(1 for _, d in window if d.tier == "edge")
    boxes = sum(len(d.boxes) for _, d in window)
    click.echo(f"{start}  t={elapsed:5.0f}s  {len(window) / span:5.1f} fps  e2e p50 "
               f"{np.percentile(lat, 50):6.0f} ms  p95 {np.percentile(lat, 95):6.0f} ms  "
               f"edge/cloud {edge}/{len(window) - edge}  {boxes / span:5.1f} detections/s{end}",
               nl=False)


def _summary(s: Settings, dets: list[Detection], t_start: int) -> None:
    click.echo("== summary")
    if not dets:
        click.echo("   no detections arrived; see the worker log above")
        return
    lat = np.array([d.latency.total_ms for d in dets])
    tiers = Counter(d.tier for d in dets)
    labels: Counter[str] = Counter()
    for d in dets:
        labels.update(d.counts())
    click.echo(f"   frames detected: {len(dets)}  (edge {tiers['edge']}, cloud {tiers['cloud']})")
    click.echo(f"   end-to-end latency: p50 {np.percentile(lat, 50):.0f} ms, "
               f"p95 {np.percentile(lat, 95):.0f} ms")
    click.echo(f"   objects: {', '.join(f'{n} {k}' for k, n in labels.most_common(5))}")
    click.echo("== a few detections")
    step = max(1, len(dets) // 5)
    for d in sorted(dets, key=lambda d: (d.camera, d.seq))[::step][:5]:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(d.counts().items(), key=lambda x: -x[1]))
        click.echo(f"   {d.camera} frame {d.seq} ({d.tier}, {d.model_id}@{d.model_version}): "
                   f"{counts or 'nothing'}")
    click.echo(f"== waiting {s.window_s + 2}s for the last telemetry window to close")
    time.sleep(s.window_s + 2.0)  # the last window closes 1 s after it ends; then the sink
    query = P95_SQL.format(db=database_of(s), since=t_start - s.window_s * 1000, node=s.node)
    click.echo("== SQL over telemetry sketches in ClickHouse (p50/p95/p99 merged from windows):")
    click.echo("   " + query.replace("\n", "\n   "))
    cols, rows = _retry_sql(lambda: run_sql(s, query))
    for line in format_rows(cols, rows):
        click.echo(line)


def _retry_sql(fn: Any, tries: int = 5) -> Any:
    for i in range(tries):
        cols, rows = fn()
        if rows or i == tries - 1:
            return cols, rows
        time.sleep(1.0)
    return fn()


__all__ = ["run_demo"]
