"""Camera ingest against the real RTSP test server (GStreamer, looping vtest.avi)."""

from __future__ import annotations

import threading
import time

import pytest
from autosteer.infra.rtsp import RtspTestServer
from autosteer.processors.decode import decode_jpeg
from autosteer.processors.ingest import CameraIngest
from autosteer.topics.records import FrameRecord
from helpers import wait_for

pytestmark = pytest.mark.integration


class Collected:
    def __init__(self) -> None:
        self.items: list[tuple[bytes, bytes]] = []
        self.lock = threading.Lock()

    def __call__(self, key: bytes, value: bytes) -> None:
        with self.lock:
            self.items.append((key, value))

    def __len__(self) -> int:
        with self.lock:
            return len(self.items)


def test_rtsp_frames_arrive_and_ingest_reconnects_after_a_server_restart(
        rtsp: RtspTestServer, measurements: dict) -> None:
    sink = Collected()
    ing = CameraIngest("cam7", rtsp.url, sink, max_fps=5, read_timeout_s=3, backoff_max_s=2)
    ing.start()
    try:
        wait_for(lambda: len(sink) >= 5, 30, "first RTSP frames")
        key, value = sink.items[0]
        rec = FrameRecord.parse(value)
        assert key == b"cam7" and rec.camera == "cam7"
        img = decode_jpeg(rec.jpeg)
        assert img.shape == (576, 768, 3) and (rec.width, rec.height) == (768, 576)
        seqs = [FrameRecord.parse(v).seq for _, v in sink.items[:5]]
        assert seqs == sorted(seqs) and len(set(seqs)) == 5
        assert ing.stats.frames_skipped > 0, "the 5 fps cap should skip some of the 10 fps"

        rtsp.stop()
        wait_for(lambda: ing.stats.reconnects >= 1, 30, "ingest to notice the outage")
        assert ing.stats.state in ("backoff", "connecting")
        before = len(sink)
        rtsp.start()
        up = time.monotonic()
        wait_for(lambda: len(sink) >= before + 1, 60, "frames after the server restart")
        measurements["rtsp_server_restart"] = {
            "first_frame_after_restart_s": round(time.monotonic() - up, 1),
            "reconnect_attempts": ing.stats.reconnects}
        wait_for(lambda: len(sink) >= before + 5, 60, "more frames after the server restart")
        assert ing.stats.state == "streaming"
    finally:
        ing.stop()
        ing.join(15)
    assert not ing.is_alive()
    assert ing.stats.state == "stopped"


def test_a_wrong_url_backs_off_without_hanging() -> None:
    sink = Collected()
    ing = CameraIngest("nocam", "rtsp://127.0.0.1:9/none", sink, open_timeout_s=2,
                       backoff_max_s=1)
    ing.start()
    try:
        wait_for(lambda: ing.stats.reconnects >= 2, 30, "two failed connection attempts")
        assert "cannot open" in ing.stats.last_error
        assert len(sink) == 0
    finally:
        ing.stop()
        ing.join(15)
    assert not ing.is_alive()


def test_a_stalled_stream_is_noticed_and_recovers(rtsp: RtspTestServer,
                                                  measurements: dict) -> None:
    """The server process is frozen (connection open, no frames): the read watchdog
    fires, ingest backs off and reconnects once the server runs again."""
    import os
    import signal

    sink = Collected()
    ing = CameraIngest("cam8", rtsp.url, sink, max_fps=5, read_timeout_s=3, open_timeout_s=3,
                       backoff_max_s=2)
    ing.start()
    pid = rtsp.proc.pid()
    assert pid
    try:
        wait_for(lambda: len(sink) >= 3, 30, "first frames")
        os.kill(pid, signal.SIGSTOP)
        stalled = time.monotonic()
        try:
            wait_for(lambda: ing.stats.reconnects >= 1, 30, "the stall watchdog")
            noticed = time.monotonic() - stalled
            assert "stalled" in ing.stats.last_error or "cannot open" in ing.stats.last_error
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        before = len(sink)
        wait_for(lambda: len(sink) >= before + 3, 60, "frames after the stall")
        measurements["rtsp_stall"] = {"stall_noticed_s": round(noticed, 1),
                                      "frames_again_after_resume_s":
                                          round(time.monotonic() - resumed, 1)}
    finally:
        ing.stop()
        ing.join(15)
    assert not ing.is_alive(), "stop() must not hang on a stalled stream"
