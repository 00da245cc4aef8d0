"""Start and stop the RTSP test camera (:mod:`autosteer.infra.rtsp_server`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from autosteer.errors import InfraError
from autosteer.infra.process import ManagedProcess, port_open, wait_port, wait_port_free

SYSTEM_PYTHON = "/usr/bin/python3"
APT_PACKAGES = (
    "gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-tools "
    "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad "
    "gstreamer1.0-plugins-ugly gstreamer1.0-libav"
)


def check_gstreamer() -> None:
    res = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
         "from gi.repository import GstRtspServer"],
        capture_output=True, text=True,
    ) if Path(SYSTEM_PYTHON).exists() else None
    if res is None or res.returncode != 0:
        raise InfraError(
            "the RTSP test server needs Debian's GStreamer RTSP server for /usr/bin/python3: "
            f"sudo apt-get install -y --no-install-recommends {APT_PACKAGES}"
        )


class RtspTestServer:
    """Loop ``video`` at ``rtsp://127.0.0.1:port/mount``."""

    def __init__(self, video: Path, port: int, state_dir: Path, mount: str = "cam1",
                 fps: int = 10) -> None:
        self.video = video
        self.port = port
        self.mount = mount
        self.fps = fps
        self.proc = ManagedProcess(f"rtsp-{port}", state_dir)

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{self.mount}"

    def running(self) -> bool:
        return self.proc.running() and port_open(self.port)

    def start(self) -> None:
        if self.running():
            return
        if port_open(self.port):
            raise InfraError(f"port {self.port} is taken; set AUTOSTEER_RTSP_PORT")
        if not self.video.exists():
            raise InfraError(f"no video at {self.video}")
        check_gstreamer()
        script = Path(__file__).with_name("rtsp_server.py")
        popen = self.proc.start([SYSTEM_PYTHON, str(script), "--video", str(self.video),
                                 "--port", str(self.port), "--mount", self.mount,
                                 "--fps", str(self.fps)])
        wait_port(self.port, 20, what="RTSP test server", proc=popen, log_file=self.proc.log_file)

    def night(self, dark: bool = True) -> None:
        """Darken the picture (a drift), or restore it."""
        import os
        import signal

        pid = self.proc.pid()
        if pid is None:
            raise InfraError("the RTSP test server is not running")
        os.kill(pid, signal.SIGUSR1 if dark else signal.SIGUSR2)

    def stop(self) -> None:
        self.proc.stop(timeout_s=10)
        wait_port_free(self.port, 10)
