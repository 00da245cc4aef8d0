"""Role ``ingest``: ``<prefix>.cameras`` commands start and stop RTSP (or file) readers
that produce frames to ``<prefix>.frames``; a bad command is dead-lettered."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from autosteer.errors import RecordError
from autosteer.processors.ingest import CameraIngest
from autosteer.streams.events import incoming
from autosteer.streams.kafka import FrameSender
from autosteer.streams.pipeline import Rejected
from autosteer.streams.runtime import Runtime
from autosteer.topics.records import CameraCommand

log = logging.getLogger(__name__)


class Ingest:
    """The cameras agent and the readers it runs (each a thread of its own)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.cameras: dict[str, CameraIngest] = {}
        self._sender: FrameSender | None = None
        rt.agent(rt.names.cameras, "cameras", self.on_commands, size=16, within=0.1)
        rt.on_stop(self.stop_async)

    async def on_commands(self, events: Sequence[Any]) -> None:
        rejected = []
        for e in events:
            it = incoming(e)
            try:
                self.apply(CameraCommand.parse(it.value))
            except Exception as exc:  # noqa: BLE001 - RecordError or a bad command
                rejected.append(Rejected(it, exc))
        await self.rt.bus.dead_letter(rejected)

    def apply(self, cmd: CameraCommand) -> None:
        old = self.cameras.pop(cmd.camera, None)
        if old is not None:
            old.stop()
        if cmd.action == "stop":
            log.info("camera %s stopped", cmd.camera)
            return
        if not cmd.url:
            raise RecordError(f"CameraCommand: start of {cmd.camera!r} needs a url")
        s = self.rt.settings
        if self._sender is None:
            self._sender = FrameSender(s, self.rt.names.frames)
        ing = CameraIngest(cmd.camera, cmd.url, self._sender.send,
                           max_fps=cmd.max_fps or s.ingest_max_fps, max_width=s.ingest_max_width,
                           jpeg_quality=s.jpeg_quality, loop_file=True)
        self.cameras[cmd.camera] = ing
        ing.start()
        log.info("camera %s started from %s", cmd.camera, cmd.url)

    def counts(self) -> dict[str, int]:
        cams = list(self.cameras.values())
        return {"frames_dropped": sum(c.stats.frames_dropped for c in cams),
                "frames_skipped": sum(c.stats.frames_skipped for c in cams)}

    async def stop_async(self) -> None:
        self.stop()

    def stop(self) -> None:
        for cam in self.cameras.values():
            cam.stop()
        for cam in self.cameras.values():
            cam.join(timeout=5)
        if self._sender is not None:
            self._sender.flush(5)
