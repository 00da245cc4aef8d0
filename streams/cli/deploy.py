"""Specs: ``plan`` (check a spec, place its operators, print the commands) and
``deploy`` (start the planned workers here and re-place them around root causes)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from autosteer.settings import Settings
from autosteer.streams.cli.app import settings

if TYPE_CHECKING:
    from autosteer.spec import Plan, Spec


def load_checked(path: str) -> Spec:
    """Load and validate the spec at ``path``; print every problem; raise on errors."""
    from autosteer.spec import load_spec, validate

    spec = load_spec(path)
    problems = validate(spec)
    for p in problems:
        click.echo(p.located(spec.origin), err=True)
    if any(p.severity == "error" for p in problems):
        raise click.ClickException(f"{path}: the spec has errors (listed above)")
    return spec


@click.command("plan")
@click.argument("spec_path", metavar="SPEC")
@click.option("--format", "fmt", type=click.Choice(["table", "yaml", "json"]), default="table")
@click.option("--time-limit", type=float, default=10.0, show_default=True)
def plan_cmd(spec_path: str, fmt: str, time_limit: float) -> None:
    """Check a spec and print where each operator should run."""
    from autosteer.spec import plan, render_deployment, render_table, worker_commands

    spec = load_checked(spec_path)
    p = plan(spec, time_limit_s=time_limit)
    if fmt == "yaml":
        click.echo(p.to_yaml())
    elif fmt == "json":
        click.echo(p.to_json())
    else:
        click.echo(render_table(p))
        click.echo()
        click.echo(render_deployment(worker_commands(spec, p, settings())))


class Deployment:
    """One spec's workers on this machine. A ``replan`` control action (a node or link
    root cause) re-places the operators around the blamed node or link; the workers are
    restarted only if the placement changed."""

    def __init__(self, spec: Spec, s: Settings, placement: Plan, logs: Path) -> None:
        self.spec, self.settings, self.plan, self.logs = spec, s, placement, logs
        self.procs: list[subprocess.Popen[Any]] = []

    def start(self) -> int:
        from autosteer.spec import start_local, worker_commands

        self.procs = start_local(worker_commands(self.spec, self.plan, self.settings), self.logs)
        return len(self.procs)

    def check(self) -> None:
        """A worker that exited ends the deployment."""
        if any(proc.poll() is not None for proc in self.procs):
            raise click.ClickException(f"a worker exited; see its log in {self.logs}")

    def on_action(self, m: Any) -> None:
        """A message of the control-actions topic: re-place on a node or link cause."""
        from autosteer.errors import RecordError
        from autosteer.rootcause.actions import ControlAction
        from autosteer.spec import PlacementError, render_table, replan
        from autosteer.spec.react import event_for

        try:
            action = ControlAction.parse(m.value())
        except RecordError:
            return
        event = (event_for([n.name for n in self.spec.resources.nodes], self.plan,
                           action.cause_type, action.dimension, action.value)
                 if action.kind == "replan" else None)
        if event is None:
            return
        click.echo(f"root cause {action.anomaly_id}: {action.reason}")
        try:
            new = replan(self.spec, self.plan, event)
        except PlacementError as exc:
            click.echo(f"cannot re-plan around {event}, the placement stays: {exc}")
            return
        click.echo(f"re-planned around {event}:\n{render_table(new)}")
        if new.assignment == self.plan.assignment and new.edge_ratio == self.plan.edge_ratio:
            click.echo("the placement stays as it is")
            self.plan = new
            return
        self.stop()
        self.plan = new
        click.echo(f"restarted {self.start()} worker(s) on the new plan")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except Exception:  # noqa: BLE001 - a worker that ignores SIGTERM
                proc.kill()


@click.command()
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

    from autosteer.spec import plan, render_table, worker_commands
    from autosteer.streams.supervise import poll_until
    from autosteer.topics.admin import ensure_topics
    from autosteer.topics.names import TopicNames
    from autosteer.topics.records import CameraCommand
    from confluent_kafka import Consumer, Producer

    s = settings()
    spec = load_checked(spec_path)
    p = plan(spec)
    click.echo(render_table(p))
    remote = [c for c in worker_commands(spec, p, s) if not c.local]
    if remote:
        raise click.ClickException(
            f"{len(remote)} worker(s) are planned on other hosts ({remote[0].host}, ...); "
            "run `autosteer plan` and start them there with the printed commands")
    ensure_topics(s)
    logs = Path(log_dir) if log_dir else s.state_dir / "deploy"
    running = Deployment(spec, s, p, logs)
    click.echo(f"started {running.start()} worker(s); logs in {logs}")
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
        try:
            poll_until(actions, running.on_action, lambda: stopping or (
                seconds > 0 and time.monotonic() - started >= seconds), each=running.check)
        finally:
            actions.close()
        for cam in spec.sources.cameras:
            producer.produce(names.cameras, key=cam.id.encode(),
                             value=CameraCommand(action="stop", camera=cam.id).dumps())
        producer.flush(10)
    finally:
        running.stop()
        click.echo("stopped")
