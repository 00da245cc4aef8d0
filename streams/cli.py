"""The ``autosteer`` command line (click, like Faust's own CLI).

    autosteer infra up|down|status      local broker, ClickHouse and RTSP camera
    autosteer models prepare            convert + quantize the detectors (cached)
    autosteer worker                    run the Faust worker (AUTOSTEER_ROLES picks agents)
    autosteer camera add URL --id cam1  start ingest of an RTSP stream or video file
    autosteer camera remove cam1
    autosteer sql "SELECT ..."          query telemetry (server, or embedded via the worker)
    autosteer report --minutes 30       HTML charts of latency, throughput, offload ratio
    autosteer topics create|schemas
    autosteer plan SPEC                 check a YAML spec, place its operators, print commands
    autosteer deploy SPEC               start the planned workers here, register cameras
    autosteer demo                      everything above, for a minute, on vtest.avi
    autosteer demo --drift              the closed loop: night falls, the edge model adapts

Every setting comes from ``AUTOSTEER_*`` environment variables (see docs/settings.md).
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click
from autosteer.errors import AutosteerError
from autosteer.settings import Settings

log = logging.getLogger("autosteer")


def _settings() -> Settings:
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


def _mount_testbed() -> None:
    from autosteer.infra.testbed_cli import testbed

    main.add_command(testbed)


_mount_testbed()


# --- infra ---------------------------------------------------------------------------
@main.group()
def infra() -> None:
    """Local broker (tansu or a 3-node Apache Kafka cluster), ClickHouse server and RTSP
    test camera."""


BROKER_CHOICE = click.Choice(["tansu", "kafka"])


@infra.command("up")
@click.option("--broker", type=BROKER_CHOICE, default=None,
              help="tansu (in memory) or kafka (3 Apache Kafka nodes); default AUTOSTEER_BROKER")
@click.option("--no-clickhouse", is_flag=True, help="do not start a ClickHouse server")
@click.option("--no-rtsp", is_flag=True, help="do not start the RTSP test camera")
def infra_up(broker: str | None, no_clickhouse: bool, no_rtsp: bool) -> None:
    """Start what is not running; create topics and tables. Idempotent."""
    from autosteer.infra.stack import LocalStack

    s = _settings()
    stack = LocalStack.from_settings(s, broker)
    stack.up(s, clickhouse=not no_clickhouse, rtsp=not no_rtsp)
    _print_status(stack)
    exports = stack.exports(s)
    if stack.broker.kind == "kafka":
        click.echo("for other autosteer commands:\n  export "
                   + " ".join(f"{k}={v}" for k, v in exports.items()))


@infra.command("down")
def infra_down() -> None:
    """Stop the local servers started by `infra up` (both kinds of broker)."""
    from autosteer.infra.stack import LocalStack

    LocalStack.from_settings(_settings()).down()
    click.echo("stopped")


@infra.command("status")
@click.option("--broker", type=BROKER_CHOICE, default=None,
              help="the broker to list even when stopped; default AUTOSTEER_BROKER")
def infra_status(broker: str | None) -> None:
    """Say what runs where."""
    from autosteer.infra.stack import LocalStack

    _print_status(LocalStack.from_settings(_settings(), broker))


def _print_status(stack: Any) -> None:
    for name, where, state in stack.status():
        click.echo(f"{name:16} {where:48} {state}")


# --- models --------------------------------------------------------------------------
@main.group()
def models() -> None:
    """Detector models."""


@models.command("prepare")
@click.option("--person", is_flag=True, help="also prepare the person-only SSDLite model")
def models_prepare(person: bool) -> None:
    """Convert SSD-MobileNet-v2 COCO to ONNX (FP32 cloud) and quantize it (INT8 edge)."""
    from autosteer.infra.sample import ensure_sample_video
    from autosteer.processors.manifest import Manifest
    from autosteer.processors.prepare import prepare_models

    s = _settings()
    video = ensure_sample_video(s.sample_video)
    for folder in prepare_models(s.model_dir, video, person=person):
        m = Manifest.load(folder)
        click.echo(f"{m.name:28} {m.version:12} {m.precision:16} {folder}")


# --- worker --------------------------------------------------------------------------
@main.command()
@click.option("--roles", default=None, help="comma list of router,edge,cloud,sink,ingest")
@click.option("--node", default=None, help="node name in telemetry")
@click.option("--web-port", type=int, default=None)
def worker(roles: str | None, node: str | None, web_port: int | None) -> None:
    """Run the pipeline's Faust worker until interrupted."""
    from autosteer.streams.worker import run_worker

    s = _settings()
    overrides = {k: v for k, v in {"roles": roles, "node": node, "web_port": web_port}.items()
                 if v is not None}
    if overrides:
        s = s.model_copy(update=overrides)
    run_worker(s, loglevel=logging.getLevelName(logging.getLogger().level).lower())


# --- cameras -------------------------------------------------------------------------
@main.group()
def camera() -> None:
    """Register cameras (the worker with the `ingest` role reads them)."""


@camera.command("add")
@click.argument("url")
@click.option("--id", "camera_id", default="cam1", show_default=True)
@click.option("--max-fps", type=float, default=0.0, help="cap frames per second (0 = source)")
def camera_add(url: str, camera_id: str, max_fps: float) -> None:
    """Start ingest of URL (rtsp://... or a video file path)."""
    from autosteer.topics.records import CameraCommand

    _send_camera(CameraCommand(action="start", camera=camera_id, url=url, max_fps=max_fps))
    click.echo(f"camera {camera_id} -> {url}")


@camera.command("remove")
@click.argument("camera_id")
def camera_remove(camera_id: str) -> None:
    """Stop ingest of a camera."""
    from autosteer.topics.records import CameraCommand

    _send_camera(CameraCommand(action="stop", camera=camera_id))
    click.echo(f"camera {camera_id} stopped")


def _send_camera(cmd: Any) -> None:
    from autosteer.topics.names import TopicNames
    from confluent_kafka import Producer

    s = _settings()
    p = Producer(s.producer_config())
    p.produce(TopicNames(s.topic_prefix).cameras, key=cmd.camera.encode(), value=cmd.dumps())
    if p.flush(10):
        raise click.ClickException(f"could not deliver to Kafka at {s.kafka_bootstrap}")


# --- sql -----------------------------------------------------------------------------
@main.command()
@click.argument("query", required=False)
@click.option("--view", default=None, help="print a named view instead, e.g. "
              "p95_latency_per_tier_minute (see docs/telemetry.md); --view list names them")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
def sql(query: str | None, view: str | None, fmt: str) -> None:
    """Run a read-only SQL query over telemetry and print the answer."""
    from autosteer.telemetry.schema import VIEWS

    s = _settings()
    if view == "list":
        for name in VIEWS:
            click.echo(name)
        return
    if view:
        if view not in VIEWS:
            raise click.ClickException(f"no view {view!r}; choose from {', '.join(VIEWS)}")
        database = s.clickhouse_url.rsplit("/", 1)[-1] if s.store == "server" else "autosteer"
        query = f"SELECT * FROM {database}.{view}"
    if not query:
        raise click.UsageError("give a QUERY or --view NAME")
    cols, rows = run_sql(s, query)
    print_rows(cols, rows, fmt)


def run_sql(s: Settings, query: str) -> tuple[list[str], list[tuple]]:
    """Server mode: ask ClickHouse directly. Embedded mode: ask the running worker's
    /sql endpoint, or open the chdb directory when no worker holds it."""
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
        raise click.ClickException(json.load(exc).get("error", str(exc))) from exc
    except (urllib.error.URLError, ConnectionError):
        store = EmbeddedStore(s.chdb_path)
        try:
            return store.query(query, readonly=True)
        finally:
            store.close()


def print_rows(cols: list[str], rows: list[tuple], fmt: str = "table") -> None:
    if fmt == "json":
        for r in rows:
            click.echo(json.dumps(dict(zip(cols, r, strict=True)), default=str))
        return
    if fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows(rows)
        return

    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    table = [cols] + [[cell(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for n, row in enumerate(table):
        click.echo("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
        if n == 0:
            click.echo("  ".join("-" * w for w in widths))
    click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


@main.command()
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

    s = _settings()
    database = s.clickhouse_url.rsplit("/", 1)[-1] if s.store == "server" else "autosteer"
    since = int((time.time() - minutes * 60) * 1000)
    page = build_report(lambda q: run_sql(s, q), database, since, bucket_s)
    Path(out).write_text(page)
    click.echo(f"wrote {out}")


# --- spec: plan and deploy -----------------------------------------------------------
def _load_checked(path: str) -> Any:
    from autosteer.spec import load_spec, validate

    spec = load_spec(path)
    problems = validate(spec)
    for p in problems:
        click.echo(p.located(spec.origin), err=True)
    if any(p.severity == "error" for p in problems):
        raise click.ClickException(f"{path}: the spec has errors (listed above)")
    return spec


@main.command("plan")
@click.argument("spec_path", metavar="SPEC")
@click.option("--format", "fmt", type=click.Choice(["table", "yaml", "json"]), default="table")
@click.option("--time-limit", type=float, default=10.0, show_default=True)
def plan_cmd(spec_path: str, fmt: str, time_limit: float) -> None:
    """Check a spec and print where each operator should run."""
    from autosteer.spec import plan, render_deployment, render_table, worker_commands

    spec = _load_checked(spec_path)
    p = plan(spec, time_limit_s=time_limit)
    if fmt == "yaml":
        click.echo(p.to_yaml())
    elif fmt == "json":
        click.echo(p.to_json())
    else:
        click.echo(render_table(p))
        click.echo()
        click.echo(render_deployment(worker_commands(spec, p, _settings())))


@main.command()
@click.argument("spec_path", metavar="SPEC")
@click.option("--seconds", type=float, default=0.0, help="stop after this long (0 = until Ctrl-C)")
@click.option("--log-dir", type=click.Path(file_okay=False), default=None)
def deploy(spec_path: str, seconds: float, log_dir: str | None) -> None:
    """Plan a spec and start its workers on this machine; register its cameras. While they
    run, a `replan` control action (a node or link root cause) re-places the operators
    around the blamed node or link and restarts the workers if the placement changed."""
    import signal
    import time
    import uuid
    from pathlib import Path

    from autosteer.errors import RecordError
    from autosteer.rootcause.actions import ControlAction
    from autosteer.spec import (
        PlacementError,
        plan,
        render_table,
        replan,
        start_local,
        worker_commands,
    )
    from autosteer.spec.react import event_for
    from autosteer.topics.admin import ensure_topics
    from autosteer.topics.names import TopicNames
    from autosteer.topics.records import CameraCommand
    from confluent_kafka import Consumer, Producer

    s = _settings()
    spec = _load_checked(spec_path)
    p = plan(spec)
    click.echo(render_table(p))
    commands = worker_commands(spec, p, s)
    remote = [c for c in commands if not c.local]
    if remote:
        raise click.ClickException(
            f"{len(remote)} worker(s) are planned on other hosts ({remote[0].host}, ...); "
            "run `autosteer plan` and start them there with the printed commands")
    ensure_topics(s)
    logs = Path(log_dir) if log_dir else s.state_dir / "deploy"
    procs = start_local(commands, logs)
    click.echo(f"started {len(procs)} worker(s); logs in {logs}")
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        time.sleep(8)  # workers join their groups before the cameras start
        producer = Producer(s.producer_config())
        names = TopicNames(s.topic_prefix)
        for cam in spec.sources.cameras:
            producer.produce(names.cameras, key=cam.id.encode(), value=CameraCommand(
                action="start", camera=cam.id, url=cam.url, max_fps=cam.fps).dumps())
            click.echo(f"camera {cam.id} -> {cam.url}")
        producer.flush(10)
        actions = Consumer(s.consumer_config(f"{s.topic_prefix}-deploy-{uuid.uuid4().hex[:6]}"))
        actions.subscribe([names.control_actions])
        started = time.monotonic()
        while not stopping and (seconds <= 0 or time.monotonic() - started < seconds):
            if any(proc.poll() is not None for proc in procs):
                raise click.ClickException(f"a worker exited; see its log in {logs}")
            m = actions.poll(0.5)
            if m is None or m.error():
                continue
            try:
                action = ControlAction.parse(m.value())
            except RecordError:
                continue
            event = (event_for([n.name for n in spec.resources.nodes], p, action.cause_type,
                               action.dimension, action.value)
                     if action.kind == "replan" else None)
            if event is None:
                continue
            click.echo(f"root cause {action.anomaly_id}: {action.reason}")
            try:
                new = replan(spec, p, event)
            except PlacementError as exc:
                click.echo(f"cannot re-plan around {event}, the placement stays: {exc}")
                continue
            click.echo(f"re-planned around {event}:\n{render_table(new)}")
            if new.assignment == p.assignment and new.edge_ratio == p.edge_ratio:
                click.echo("the placement stays as it is")
                p = new
                continue
            _stop_workers(procs)
            p, commands = new, worker_commands(spec, new, s)
            procs = start_local(commands, logs)
            click.echo(f"restarted {len(procs)} worker(s) on the new plan")
        actions.close()
        for cam in spec.sources.cameras:
            producer.produce(names.cameras, key=cam.id.encode(),
                             value=CameraCommand(action="stop", camera=cam.id).dumps())
        producer.flush(10)
    finally:
        _stop_workers(procs)
        click.echo("stopped")


def _stop_workers(procs: list[Any]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except Exception:  # noqa: BLE001 - a worker that ignores SIGTERM
            proc.kill()


# --- topics --------------------------------------------------------------------------
@main.group()
def topics() -> None:
    """Topics and their schemas."""


@topics.command("create")
def topics_create() -> None:
    """Create every autosteer topic that is missing."""
    from autosteer.topics.admin import ensure_topics

    click.echo(f"created: {ensure_topics(_settings()) or 'nothing (all exist)'}")


@topics.command("schemas")
def topics_schemas() -> None:
    """Write the JSON Schema files to topics/schemas/."""
    from autosteer.topics.export import main as export

    export()


# --- demo ----------------------------------------------------------------------------
@main.command()
@click.option("--seconds", type=float, default=60.0, show_default=True)
@click.option("--cameras", type=int, default=1, show_default=True)
@click.option("--drift", is_flag=True, help="the closed loop: night falls after --seconds "
              "of day; watch drift -> retrain -> canary -> promotion")
def demo(seconds: float, cameras: int, drift: bool) -> None:
    """Stream vtest.avi over RTSP through the whole pipeline and report."""
    from autosteer.streams.demo import run_demo

    run_demo(_settings(), seconds=seconds, cameras=cameras, drift=drift)


if __name__ == "__main__":
    main()
