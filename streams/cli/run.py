"""Running the pipeline: ``worker``, ``camera add|remove``, ``demo``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import click
from autosteer.streams.cli.app import settings

if TYPE_CHECKING:
    from autosteer.topics.records import CameraCommand


@click.command()
@click.option("--roles", default=None, help="comma list of router,edge,cloud,sink,ingest")
@click.option("--node", default=None, help="node name in telemetry")
@click.option("--web-port", type=int, default=None)
def worker(roles: str | None, node: str | None, web_port: int | None) -> None:
    """Run the pipeline's Faust worker until interrupted."""
    from autosteer.streams.worker import run_worker

    s = settings()
    overrides = {k: v for k, v in {"roles": roles, "node": node, "web_port": web_port}.items()
                 if v is not None}
    if overrides:
        s = s.model_copy(update=overrides)
    run_worker(s, loglevel=logging.getLevelName(logging.getLogger().level).lower())


@click.group()
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


def _send_camera(cmd: CameraCommand) -> None:
    from autosteer.topics.names import TopicNames
    from confluent_kafka import Producer

    s = settings()
    p = Producer(s.producer_config())
    p.produce(TopicNames(s.topic_prefix).cameras, key=cmd.camera.encode(), value=cmd.dumps())
    if p.flush(10):
        raise click.ClickException(f"could not deliver to Kafka at {s.kafka_bootstrap}")


@click.command()
@click.option("--seconds", type=float, default=60.0, show_default=True)
@click.option("--cameras", type=int, default=1, show_default=True)
@click.option("--drift", is_flag=True, help="the closed loop: night falls after --seconds "
              "of day; watch drift -> retrain -> canary -> promotion")
def demo(seconds: float, cameras: int, drift: bool) -> None:
    """Stream vtest.avi over RTSP through the whole pipeline and report."""
    from autosteer.streams.demo import run_demo

    run_demo(settings(), seconds=seconds, cameras=cameras, drift=drift)
