"""Setting up: ``infra up|down|status``, ``models prepare``, ``topics create|schemas``."""

from __future__ import annotations

import click
from autosteer.streams.cli.app import settings
from autosteer.streams.cli.output import echo_exports, echo_status

BROKER_CHOICE = click.Choice(["tansu", "kafka"])


@click.group()
def infra() -> None:
    """Local broker (tansu or a 3-node Apache Kafka cluster), ClickHouse server and RTSP
    test camera."""


@infra.command("up")
@click.option("--broker", type=BROKER_CHOICE, default=None,
              help="tansu (in memory) or kafka (3 Apache Kafka nodes); default AUTOSTEER_BROKER")
@click.option("--no-clickhouse", is_flag=True, help="do not start a ClickHouse server")
@click.option("--no-rtsp", is_flag=True, help="do not start the RTSP test camera")
def infra_up(broker: str | None, no_clickhouse: bool, no_rtsp: bool) -> None:
    """Start what is not running; create topics and tables. Idempotent."""
    from autosteer.infra.stack import LocalStack

    s = settings()
    stack = LocalStack.from_settings(s, broker)
    stack.up(s, clickhouse=not no_clickhouse, rtsp=not no_rtsp)
    echo_status(stack.status())
    exports = stack.exports(s)
    if stack.broker.kind == "kafka":
        echo_exports(exports)


@infra.command("down")
def infra_down() -> None:
    """Stop the local servers started by `infra up` (both kinds of broker)."""
    from autosteer.infra.stack import LocalStack

    LocalStack.from_settings(settings()).down()
    click.echo("stopped")


@infra.command("status")
@click.option("--broker", type=BROKER_CHOICE, default=None,
              help="the broker to list even when stopped; default AUTOSTEER_BROKER")
def infra_status(broker: str | None) -> None:
    """Say what runs where."""
    from autosteer.infra.stack import LocalStack

    echo_status(LocalStack.from_settings(settings(), broker).status())


@click.group()
def models() -> None:
    """Detector models."""


@models.command("prepare")
@click.option("--person", is_flag=True, help="also prepare the person-only SSDLite model")
def models_prepare(person: bool) -> None:
    """Convert SSD-MobileNet-v2 COCO to ONNX (FP32 cloud) and quantize it (INT8 edge)."""
    from autosteer.infra.sample import ensure_sample_video
    from autosteer.processors.manifest import Manifest
    from autosteer.processors.prepare import prepare_models

    s = settings()
    video = ensure_sample_video(s.sample_video)
    for folder in prepare_models(s.model_dir, video, person=person):
        m = Manifest.load(folder)
        click.echo(f"{m.name:28} {m.version:12} {m.precision:16} {folder}")


@click.group()
def topics() -> None:
    """Topics and their schemas."""


@topics.command("create")
def topics_create() -> None:
    """Create every autosteer topic that is missing."""
    from autosteer.topics.admin import ensure_topics

    click.echo(f"created: {ensure_topics(settings()) or 'nothing (all exist)'}")


@topics.command("schemas")
def topics_schemas() -> None:
    """Write the JSON Schema files to topics/schemas/."""
    from autosteer.topics.export import main as export

    export()
