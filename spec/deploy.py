"""Turn a plan into ``autosteer worker`` processes: roles, environment, CPU share.

Each planned node gets one worker (more when an operator needs several consumers) that
runs the roles of the operators placed there (:func:`~autosteer.spec.roles.role_of`),
with the environment that makes it that node: ``AUTOSTEER_ROLES``, ``AUTOSTEER_NODE``,
the shared broker and topic prefix, a distinct ``AUTOSTEER_WEB_PORT`` per local worker,
the router's ``AUTOSTEER_EDGE_RATIO``, the detectors' models and batch size, and
``AUTOSTEER_INTRA_OP_THREADS`` from the node's CPU share. When this machine has a core
for every core the local nodes declare, each local worker is pinned to its own cores;
otherwise the cores are shared and only the thread counts follow the shares.

>>> from autosteer.settings import Settings
>>> from autosteer.spec.result import Placement, Plan
>>> from autosteer.spec.model import Spec
>>> spec = Spec.model_validate({"application": {"name": "a", "operators": [
...     {"name": "detect", "model": "m", "builds": [{"latency_ms": 9}], "role": "cloud"}]},
...     "resources": {"nodes": [{"name": "gpu-1", "tier": "cloud", "cpu": 4, "memory_mb": 8e3,
...                              "host": "10.0.0.7"}]}})
>>> plan = Plan("a", (Placement("detect", "gpu-1", 1, 9.0, 0.1),), 9.0, 9.0, "milp", True, 0)
>>> cmd, = worker_commands(spec, plan, Settings(kafka_bootstrap="k1:9092"))
>>> print(cmd.shell())
AUTOSTEER_ROLES=cloud AUTOSTEER_NODE=gpu-1 AUTOSTEER_KAFKA_BOOTSTRAP=k1:9092 \\
AUTOSTEER_TOPIC_PREFIX=autosteer AUTOSTEER_PARTITIONS=4 AUTOSTEER_WEB_PORT=6066 \\
AUTOSTEER_INTRA_OP_THREADS=4 AUTOSTEER_CLOUD_MODEL=m AUTOSTEER_BATCH_SIZE=1 \\
autosteer worker
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from autosteer.settings import Settings
from autosteer.spec.errors import DeployError
from autosteer.spec.model import Node, Operator, Spec
from autosteer.spec.result import Plan
from autosteer.spec.roles import ROLES, role_of

log = logging.getLogger(__name__)
LOCAL_HOSTS = ("local", "localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class WorkerCommand:
    """One ``autosteer worker`` process: where it runs and exactly how to start it."""

    name: str  # the node's name, with -r2, -r3 ... for extra consumers
    node: str
    host: str
    roles: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)  # on top of the shared AUTOSTEER_*
    argv: tuple[str, ...] = ("autosteer", "worker")
    cpus: tuple[int, ...] | None = None  # cores to pin to; None = not pinned
    cpu_share: float = 1.0  # cores this worker may use
    memory_mb: float = 0.0  # what its operators reserve

    @property
    def local(self) -> bool:
        return self.host in LOCAL_HOSTS

    def shell(self, width: int = 88) -> str:
        """The command line, environment first, wrapped with backslashes at ``width``."""
        words = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        tail = ["taskset", "-c", ",".join(map(str, self.cpus))] if self.cpus else []
        words.append(" ".join([*tail, *(shlex.quote(a) for a in self.argv)]))
        lines: list[str] = []
        for word in words:
            if lines and len(lines[-1]) + 1 + len(word) <= width:
                lines[-1] += " " + word
            else:
                lines.append(word)
        return " \\\n".join(lines)


def worker_commands(spec: Spec, plan: Plan, settings: Settings, *, cores: int | None = None
                    ) -> list[WorkerCommand]:
    """The workers that run ``plan``; ``cores`` defaults to the cores this process may use."""
    placed = plan.assignment
    missing = [o.name for o in spec.application.operators if o.name not in placed]
    unknown = [n for n in placed.values() if n not in {nd.name for nd in spec.resources.nodes}]
    if missing or unknown:
        raise DeployError(f"plan does not match {spec.origin}: operators not placed "
                          f"{missing}, unknown nodes {sorted(set(unknown))}; plan again")
    tier = {n.name: n.tier for n in spec.resources.nodes}
    roles = {o.name: role_of(o, tier[placed[o.name]]) for o in spec.application.operators}
    _check_detectors(spec, roles)
    drafts: list[tuple[Node, int, list[Operator]]] = []
    for node in spec.resources.nodes:
        ops = [o for o in spec.application.operators
               if placed[o.name] == node.name and roles[o.name]]
        if not ops:
            continue
        replicas = max(plan.placement(o.name).consumers for o in ops)
        for r in range(replicas):
            drafts.append((node, replicas, [o for o in ops
                                            if r == 0 or plan.placement(o.name).consumers > r]))
    shares = _cpu_plan(drafts, cores if cores is not None else _cores())
    out: list[WorkerCommand] = []
    local_index = 0
    seen: dict[str, int] = {}
    for (node, _, ops), (share, cpus) in zip(drafts, shares, strict=True):
        seen[node.name] = seen.get(node.name, 0) + 1
        name = node.name if seen[node.name] == 1 else f"{node.name}-r{seen[node.name]}"
        worker_roles = tuple(r for r in ROLES if r in {roles[o.name] for o in ops})
        local = node.host in LOCAL_HOSTS
        port = settings.web_port + (local_index if local else 0)
        local_index += int(local)
        env = _env(spec, plan, settings, name, worker_roles, ops, roles, share, port)
        out.append(WorkerCommand(name, node.name, node.host, worker_roles, env, cpus=cpus,
                                 cpu_share=round(share, 3),
                                 memory_mb=sum(o.resources.memory_mb for o in ops)))
    return out


def _check_detectors(spec: Spec, roles: dict[str, str | None]) -> None:
    for role in ("edge", "cloud"):
        models = {o.model for o in spec.application.operators if roles[o.name] == role}
        if len(models) > 1:
            names = [o.name for o in spec.application.operators if roles[o.name] == role]
            raise DeployError(f"operators {', '.join(names)} all run as role {role!r} with "
                              f"different models {sorted(map(str, models))}; a worker runs one "
                              "model per role: set `role:` on them")


def _env(spec: Spec, plan: Plan, settings: Settings, name: str, worker_roles: tuple[str, ...],
         ops: list[Operator], roles: dict[str, str | None], share: float, port: int
         ) -> dict[str, str]:
    detectors = [o for o in ops if roles[o.name] in ("edge", "cloud")]
    threads = max(1, math.floor(share / max(1, len(detectors)) + 1e-9))
    env = {
        "AUTOSTEER_ROLES": ",".join(worker_roles),
        "AUTOSTEER_NODE": name,
        "AUTOSTEER_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "AUTOSTEER_TOPIC_PREFIX": settings.topic_prefix,
        "AUTOSTEER_PARTITIONS": str(max(settings.partitions, plan.partitions)),
        "AUTOSTEER_WEB_PORT": str(port),
        "AUTOSTEER_INTRA_OP_THREADS": str(threads),
    }
    if "router" in worker_roles and plan.edge_ratio is not None:
        env["AUTOSTEER_EDGE_RATIO"] = f"{plan.edge_ratio:g}"
    for o in detectors:
        if o.model:
            env[f"AUTOSTEER_{(roles[o.name] or '').upper()}_MODEL"] = o.model
    if detectors:
        env["AUTOSTEER_BATCH_SIZE"] = str(max(o.batch_size for o in detectors))
    fps = spec.application.requirements.throughput_fps_per_camera
    if "ingest" in worker_roles and fps is not None:
        env["AUTOSTEER_INGEST_MAX_FPS"] = f"{fps:g}"
    return env


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cpu_plan(drafts: Sequence[tuple[Node, int, list[Operator]]], cores: int
              ) -> list[tuple[float, tuple[int, ...] | None]]:
    """Per worker: its CPU share and, when every local worker gets whole cores of its
    own, the cores to pin it to."""
    demand = [node.cpu / replicas for node, replicas, _ in drafts]
    local = [node.host in LOCAL_HOSTS for node, _, _ in drafts]
    whole = [max(1, math.ceil(d - 1e-9)) for d in demand]
    pin = sum(w for w, here in zip(whole, local, strict=True) if here) <= cores
    local_demand = sum(d for d, here in zip(demand, local, strict=True) if here)
    scale = min(1.0, cores / local_demand) if local_demand else 1.0
    out: list[tuple[float, tuple[int, ...] | None]] = []
    next_core = 0
    for d, w, here in zip(demand, whole, local, strict=True):
        if not here:
            out.append((d, None))
        elif pin:
            out.append((d, tuple(range(next_core, next_core + w))))
            next_core += w
        else:
            out.append((d * scale, None))
    return out


# --- starting them here ---------------------------------------------------------------------
def start_local(commands: Sequence[WorkerCommand], log_dir: str | Path
                ) -> list[subprocess.Popen]:
    """Start the local workers, each logging to ``log_dir/<name>.log`` and pinned to its
    cores when it has some; workers for other hosts are logged and skipped. Each runs in
    its own session: stop them with ``terminate()`` on what this returns."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    started: list[subprocess.Popen] = []
    for cmd in commands:
        if not cmd.local:
            log.warning("worker %s runs on %s; start it there: %s", cmd.name, cmd.host,
                        cmd.shell(width=10_000))
            continue
        argv = _resolve(cmd.argv)
        pin_after = bool(cmd.cpus) and hasattr(os, "sched_setaffinity")
        if cmd.cpus and not pin_after and shutil.which("taskset"):
            argv = ["taskset", "-c", ",".join(map(str, cmd.cpus))] + argv
        try:
            with open(log_dir / f"{cmd.name}.log", "ab") as out:
                proc = subprocess.Popen(argv, env={**os.environ, **cmd.env}, stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        except OSError as exc:
            for p in started:
                p.terminate()
            raise DeployError(f"cannot start worker {cmd.name} ({' '.join(argv)}): "
                              f"{exc.strerror or exc}") from exc
        if pin_after:
            try:  # threads the worker starts later inherit this
                os.sched_setaffinity(proc.pid, cmd.cpus or ())
            except OSError as exc:
                log.warning("worker %s not pinned to cores %s: %s", cmd.name, cmd.cpus, exc)
        log.info("started worker %s (pid %d, roles %s)", cmd.name, proc.pid, cmd.roles)
        started.append(proc)
    return started


def _resolve(argv: Sequence[str]) -> list[str]:
    """``autosteer`` as this environment's script, or ``python -m`` its CLI."""
    if not argv or argv[0] != "autosteer" or shutil.which("autosteer"):
        return list(argv)
    script = Path(sys.executable).with_name("autosteer")
    if script.exists():
        return [str(script), *argv[1:]]
    return [sys.executable, "-m", "autosteer.streams.cli", *argv[1:]]


# --- for other machines ---------------------------------------------------------------------
def render_commands(commands: Sequence[WorkerCommand]) -> str:
    """Per node, the shell command that starts its worker."""
    out = []
    for cmd in commands:
        where = "this machine" if cmd.local else cmd.host
        pinned = f", cores {','.join(map(str, cmd.cpus))}" if cmd.cpus else ""
        cores = f"{cmd.cpu_share:g} core{'' if cmd.cpu_share == 1 else 's'}"
        out.append(f"# {cmd.name} on {where}: roles {','.join(cmd.roles)} ({cores}{pinned})")
        out.append(cmd.shell())
        out.append("")
    return "\n".join(out)


def render_systemd(cmd: WorkerCommand) -> str:
    """A systemd unit for ``cmd`` (install as ``autosteer-<name>.service``)."""
    lines = ["[Unit]", f"Description=autosteer worker {cmd.name} (roles {','.join(cmd.roles)})",
             "After=network-online.target", "Wants=network-online.target", "", "[Service]"]
    lines += [f'Environment="{k}={v}"' for k, v in cmd.env.items()]
    lines += [f"ExecStart=/usr/bin/env {' '.join(cmd.argv)}", "Restart=on-failure",
              "RestartSec=5", f"CPUQuota={cmd.cpu_share * 100:.0f}%"]
    if cmd.cpus:
        lines.append(f"CPUAffinity={' '.join(map(str, cmd.cpus))}")
    if cmd.memory_mb:
        lines.append(f"MemoryMax={math.ceil(cmd.memory_mb * 1.5)}M")
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def render_kubernetes(commands: Sequence[WorkerCommand], *, image: str = "autosteer:latest"
                      ) -> str:
    """One Deployment per worker, placed on its host (``kubernetes.io/hostname``) or on
    nodes labelled ``autosteer/node=<node>`` for local ones."""
    docs = [_deployment(cmd, image) for cmd in commands]
    head = ""
    if any(c.env.get("AUTOSTEER_KAFKA_BOOTSTRAP", "").startswith(("127.", "localhost"))
           for c in commands):
        head = "# AUTOSTEER_KAFKA_BOOTSTRAP points at loopback: set the cluster's broker\n"
    return head + yaml.safe_dump_all(docs, sort_keys=False)


def _deployment(cmd: WorkerCommand, image: str) -> dict:
    name = "autosteer-" + re.sub(r"[^a-z0-9-]", "-", cmd.name.lower())

    def labels() -> dict[str, str]:  # fresh dicts: no YAML anchors in the output
        return {"app": "autosteer", "autosteer/worker": name}

    selector = ({"autosteer/node": cmd.node} if cmd.local
                else {"kubernetes.io/hostname": cmd.host})
    port = int(cmd.env.get("AUTOSTEER_WEB_PORT", "6066"))
    env = {**cmd.env, "AUTOSTEER_WEB_HOST": "0.0.0.0"}
    cpu = f"{int(cmd.cpu_share * 1000)}m"
    memory = f"{math.ceil(cmd.memory_mb * 1.5)}Mi"
    container = {
        "name": "worker", "image": image, "command": list(cmd.argv),
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "ports": [{"name": "http", "containerPort": port}],
        "resources": {"requests": {"cpu": cpu, "memory": memory},
                      "limits": {"cpu": cpu, "memory": memory}},
        "livenessProbe": {"httpGet": {"path": "/health", "port": port}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": port}},
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels()},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels()},
                     "template": {"metadata": {"labels": labels()},
                                  "spec": {"nodeSelector": selector,
                                           "containers": [container]}}}}


def render_deployment(commands: Sequence[WorkerCommand], *, image: str = "autosteer:latest"
                      ) -> str:
    """Everything to start the plan by hand: commands, a systemd unit, a k8s manifest."""
    if not commands:
        return "# no operator in the plan runs in an autosteer worker\n"
    example = next((c for c in commands if not c.local), commands[0])
    return "\n".join([
        "## per-node commands", "", render_commands(commands),
        f"## systemd (example for {example.name}; one unit per worker)", "",
        render_systemd(example),
        "## Kubernetes (one Deployment per worker)", "", render_kubernetes(commands, image=image),
    ])
