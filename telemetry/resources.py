"""What a node's heartbeat measures: this process, the host and (if visible) the GPU."""

from __future__ import annotations

import shutil
import subprocess

import psutil


class ResourceProbe:
    """CPU, memory and GPU readings; call :meth:`read` on each heartbeat."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # the first reading starts the interval
        psutil.cpu_percent(None)
        self._smi = shutil.which("nvidia-smi")

    def read(self) -> dict[str, float | int]:
        with self._proc.oneshot():
            out: dict[str, float | int] = {
                "cpu_percent": self._proc.cpu_percent(None),
                "rss_bytes": self._proc.memory_info().rss,
                "threads": self._proc.num_threads(),
            }
        out["host_cpu_percent"] = psutil.cpu_percent(None)
        out["host_mem_percent"] = psutil.virtual_memory().percent
        out.update(self._gpu())
        return out

    def _gpu(self) -> dict[str, float | int]:
        if not self._smi:
            return {"gpu_util_percent": -1.0, "gpu_mem_bytes": -1}
        try:
            res = subprocess.run(
                [self._smi, "--query-gpu=utilization.gpu,memory.used",
                 "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=2)
            util, mem = res.stdout.splitlines()[0].split(",")
            return {"gpu_util_percent": float(util), "gpu_mem_bytes": int(float(mem) * 2**20)}
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return {"gpu_util_percent": -1.0, "gpu_mem_bytes": -1}
