"""Camera ingest: read an RTSP stream (or a video file) with OpenCV and put JPEG frames
on the input topic.

A :class:`CameraIngest` runs in its own thread. It reconnects with exponential backoff
when the source fails or stalls, caps the frame rate per camera, and counts what it
read, sent, skipped (fps cap) and dropped (producer full) in :class:`IngestStats`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
from autosteer.processors.decode import encode_jpeg
from autosteer.topics.records import FrameRecord, now_ms

log = logging.getLogger(__name__)

# (key, value) -> None; raises BufferError when the producer's queue is full.
Send = Callable[[bytes, bytes], None]


@dataclass
class IngestStats:
    state: str = "starting"  # starting | connecting | streaming | backoff | stopped | finished
    frames_read: int = 0
    frames_sent: int = 0
    frames_skipped: int = 0  # dropped on purpose by the fps cap
    frames_dropped: int = 0  # could not be handed to Kafka (producer queue full)
    reconnects: int = 0
    last_error: str = ""
    last_frame_ms: int = 0
    seq: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Backoff:
    """Exponential backoff: 0.5 s, 1 s, 2 s ... capped, reset after success.

    >>> b = Backoff(0.5, 4.0)
    >>> [b.next() for _ in range(5)]
    [0.5, 1.0, 2.0, 4.0, 4.0]
    """

    def __init__(self, initial: float = 0.5, maximum: float = 10.0) -> None:
        self.initial, self.maximum = initial, maximum
        self._next = initial

    def next(self) -> float:
        d = self._next
        self._next = min(self.maximum, self._next * 2)
        return d

    def reset(self) -> None:
        self._next = self.initial


class CameraIngest(threading.Thread):
    """Read ``url`` and call ``send(key, FrameRecord bytes)`` for each kept frame."""

    def __init__(self, camera: str, url: str, send: Send, *, max_fps: float = 0.0,
                 max_width: int = 0, jpeg_quality: int = 85, loop_file: bool = False,
                 max_frames: int = 0, open_timeout_s: float = 10.0,
                 read_timeout_s: float = 5.0, backoff_max_s: float = 10.0) -> None:
        super().__init__(name=f"ingest-{camera}", daemon=True)
        self.camera = camera
        self.url = url
        self.send = send
        self.max_fps = max_fps
        self.max_width = max_width
        self.jpeg_quality = jpeg_quality
        self.loop_file = loop_file
        self.max_frames = max_frames
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.stats = IngestStats()
        self._halt = threading.Event()
        self._backoff = Backoff(0.5, backoff_max_s)

    @property
    def is_file(self) -> bool:
        return "://" not in self.url

    def stop(self) -> None:
        self._halt.set()

    def _open(self) -> cv2.VideoCapture:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000)]
        return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)

    def run(self) -> None:
        key = self.camera.encode()
        min_gap = 1.0 / self.max_fps if self.max_fps > 0 else 0.0
        last_kept = 0.0
        while not self._halt.is_set():
            self.stats.state = "connecting"
            cap = self._open()
            if not cap.isOpened():
                self._fail(f"cannot open {self.url}")
                cap.release()
                continue
            self.stats.state = "streaming"
            self._backoff.reset()
            while not self._halt.is_set():
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                self.stats.frames_read += 1
                now = time.monotonic()
                if min_gap and now - last_kept < min_gap * 0.95:
                    self.stats.frames_skipped += 1
                    continue
                last_kept = now
                self._publish(key, frame)
                if self.max_frames and self.stats.frames_sent >= self.max_frames:
                    self._halt.set()
            cap.release()
            if self._halt.is_set():
                break
            if self.is_file and not self.loop_file:
                self.stats.state = "finished"
                return
            if self.is_file:
                continue  # loop the file
            self._fail("stream ended or stalled (no frame within "
                       f"{self.read_timeout_s:.0f}s)")
        self.stats.state = "stopped"

    def _publish(self, key: bytes, frame: Any) -> None:
        ts = now_ms()
        h, w = frame.shape[:2]
        if self.max_width and w > self.max_width:
            scale = self.max_width / w
            frame = cv2.resize(frame, (self.max_width, round(h * scale)), interpolation=cv2.INTER_AREA)
            h, w = frame.shape[:2]
        rec = FrameRecord(camera=self.camera, seq=self.stats.seq, ts_ms=ts,
                          jpeg=encode_jpeg(frame, self.jpeg_quality), width=w, height=h)
        self.stats.seq += 1
        try:
            self.send(key, rec.dumps())
        except BufferError:
            self.stats.frames_dropped += 1
            return
        self.stats.frames_sent += 1
        self.stats.last_frame_ms = ts

    def _fail(self, why: str) -> None:
        self.stats.last_error = why
        self.stats.state = "backoff"
        self.stats.reconnects += 1
        delay = self._backoff.next()
        log.warning("camera %s: %s; retrying in %.1fs", self.camera, why, delay)
        self._halt.wait(delay)
