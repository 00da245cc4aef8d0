"""``autosteer worker`` as a child process: started with a ``Settings`` as its whole
configuration, waited for until its web port listens, stopped as a process group.

The demo, the benchmarks and the tests start their workers with it. On the testbed
(``infra/testbed.py``) a worker runs on a host: ``wrap`` is the argv prefix that puts it
into the host's cgroups and network namespace, and ``netns`` is where its topics are made
and its web port is waited for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from autosteer.infra.process import in_netns, wait_port
from autosteer.settings import ENV_PREFIX, Settings


def worker_environment(settings: Settings) -> dict[str, str]:
    """This process's environment without its own ``AUTOSTEER_*``, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(settings.to_env())
    return env


class WorkerProcess:
    """One worker subprocess, its output in ``log_path`` (None: this process's output)."""

    def __init__(self, settings: Settings, log_path: Path | None,
                 loglevel: str = "info", *, wrap: Sequence[str] = (),
                 netns: str | None = None) -> None:
        self.settings = settings
        self.log_path = log_path
        self.loglevel = loglevel
        self.wrap = tuple(wrap)
        self.netns = netns
        self.proc: subprocess.Popen | None = None

    def _where(self) -> contextlib.AbstractContextManager[None]:
        """This thread in the worker's network namespace (or where it is)."""
        if self.netns is None:
            return contextlib.nullcontext()
        return in_netns(self.netns)

    def start(self, timeout_s: float = 90.0, *, create_topics: bool = True) -> WorkerProcess:
        """Start it (creating the topics first) and wait until its web port listens."""
        if create_topics:
            from autosteer.topics.admin import ensure_topics

            with self._where():
                ensure_topics(self.settings)
        argv = [*self.wrap, sys.executable, "-m", "autosteer.streams.cli", "-l", self.loglevel,
                "worker"]
        env = worker_environment(self.settings)
        if self.log_path is None:
            self.proc = subprocess.Popen(argv, env=env, start_new_session=True)
        else:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(argv, env=env, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        with self._where():
            wait_port(self.settings.web_port, timeout_s, what="worker", proc=self.proc,
                      log_file=self.log_path)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> None:
        """Send ``sig`` to its process group; SIGKILL it after ``timeout_s``."""
        if not self.running():
            return
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
