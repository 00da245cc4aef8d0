"""Deploy: a plan becomes `autosteer worker` commands with the right environment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from autosteer.settings import Settings
from autosteer.spec import (
    DeployError,
    WorkerCommand,
    load_spec,
    plan,
    render_deployment,
    render_kubernetes,
    render_systemd,
    spec_from_data,
    start_local,
    worker_commands,
)
from autosteer.spec.roles import ROLES

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT / "examples" / "video.yaml"
SETTINGS = Settings(kafka_bootstrap="127.0.0.1:19092", web_port=6066, partitions=4)


def test_video_workers_on_a_two_core_machine() -> None:
    spec = load_spec(VIDEO)
    edge, cloud = worker_commands(spec, plan(spec), SETTINGS, cores=2)
    assert edge.env == {
        "AUTOSTEER_ROLES": "router,edge,ingest",
        "AUTOSTEER_NODE": "edge-1",
        "AUTOSTEER_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
        "AUTOSTEER_TOPIC_PREFIX": "autosteer",
        "AUTOSTEER_PARTITIONS": "4",
        "AUTOSTEER_WEB_PORT": "6066",
        "AUTOSTEER_INTRA_OP_THREADS": "1",
        "AUTOSTEER_EDGE_RATIO": "0.5",
        "AUTOSTEER_EDGE_MODEL": "ssd_mobilenet_v2_coco_int8",
        "AUTOSTEER_BATCH_SIZE": "4",
        "AUTOSTEER_INGEST_MAX_FPS": "10",
    }
    assert cloud.env == {
        "AUTOSTEER_ROLES": "cloud,sink",
        "AUTOSTEER_NODE": "cloud-1",
        "AUTOSTEER_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
        "AUTOSTEER_TOPIC_PREFIX": "autosteer",
        "AUTOSTEER_PARTITIONS": "4",
        "AUTOSTEER_WEB_PORT": "6067",
        "AUTOSTEER_INTRA_OP_THREADS": "1",
        "AUTOSTEER_CLOUD_MODEL": "ssd_mobilenet_v2_coco_fp32",
        "AUTOSTEER_BATCH_SIZE": "4",
    }
    assert (edge.cpus, cloud.cpus) == ((0,), (1,))  # one core each: pinned
    assert edge.argv == ("autosteer", "worker") and edge.local
    assert "taskset -c 0 autosteer worker" in edge.shell()


def test_env_values_are_valid_settings() -> None:
    spec = load_spec(VIDEO)
    for cmd in worker_commands(spec, plan(spec), SETTINGS, cores=2):
        s = Settings.from_env(cmd.env)
        assert s.role_set() <= set(ROLES) and s.node == cmd.node


def test_too_few_cores_means_shared_cores_and_thread_limits() -> None:
    data = yaml.safe_load(VIDEO.read_text())
    data["resources"]["nodes"][1]["cpu"] = 3  # 1 + 3 cores asked of a 2-core machine
    spec = spec_from_data(data)
    edge, cloud = worker_commands(spec, plan(spec), SETTINGS, cores=2)
    assert edge.cpus is None and cloud.cpus is None
    assert (edge.cpu_share, cloud.cpu_share) == (0.5, 1.5)
    assert (edge.env["AUTOSTEER_INTRA_OP_THREADS"], cloud.env["AUTOSTEER_INTRA_OP_THREADS"]) == (
        "1", "1")


def test_busy_operators_get_extra_workers_with_distinct_ports() -> None:
    data = yaml.safe_load(VIDEO.read_text())
    data["resources"]["nodes"][1]["cpu"] = 4
    data["application"]["operators"][3]["builds"][0]["latency_ms"] = 150  # 0.75 busy of 0.8
    data["sources"]["cameras"][0]["fps"] = 20
    data["application"]["requirements"]["throughput_fps_per_camera"] = 20
    spec = spec_from_data(data)
    p = plan(spec)
    assert p.placement("cloud-detect").consumers == 2 and p.partitions == 2
    cmds = worker_commands(spec, p, SETTINGS, cores=8)
    assert [c.name for c in cmds] == ["edge-1", "cloud-1", "cloud-1-r2"]
    assert cmds[2].roles == ("cloud",)
    assert len({c.env["AUTOSTEER_WEB_PORT"] for c in cmds}) == 3
    assert cmds[2].env["AUTOSTEER_NODE"] == "cloud-1-r2"


def test_remote_nodes_keep_the_default_port_and_are_not_pinned() -> None:
    data = yaml.safe_load(VIDEO.read_text())
    data["resources"]["nodes"][1]["host"] = "10.0.0.9"
    spec = spec_from_data(data)
    edge, cloud = worker_commands(spec, plan(spec), SETTINGS, cores=2)
    assert not cloud.local and cloud.cpus is None
    assert cloud.env["AUTOSTEER_WEB_PORT"] == "6066" and edge.env["AUTOSTEER_WEB_PORT"] == "6066"


def test_two_models_for_one_role_is_refused() -> None:
    data = yaml.safe_load(VIDEO.read_text())
    data["application"]["operators"][3]["role"] = "edge"
    data["application"]["operators"][3]["tier"] = "edge"
    data["resources"]["nodes"][0]["cpu"] = 2
    spec = spec_from_data(data)
    with pytest.raises(DeployError, match="edge-detect, cloud-detect all run as role 'edge'"):
        worker_commands(spec, plan(spec), SETTINGS, cores=2)


def test_plan_for_another_spec_is_refused() -> None:
    spec = load_spec(VIDEO)
    other = load_spec(ROOT / "examples" / "sentiment.yaml")
    with pytest.raises(DeployError, match="plan does not match"):
        worker_commands(spec, plan(other), SETTINGS)


def test_start_local_runs_pins_and_logs(tmp_path: Path) -> None:
    probe = ("import os; print(os.environ['AUTOSTEER_NODE']); "
             "print(sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else [0])")
    local = WorkerCommand("probe", "n1", "local", ("sink",), {"AUTOSTEER_NODE": "n1"},
                          argv=(sys.executable, "-c", probe), cpus=(0,))
    remote = WorkerCommand("far", "n2", "10.0.0.9", ("sink",), {},
                           argv=(sys.executable, "-c", "raise SystemExit(3)"))
    procs = start_local([local, remote], tmp_path / "logs")
    assert len(procs) == 1
    assert procs[0].wait(timeout=30) == 0
    assert (tmp_path / "logs" / "probe.log").read_text().split() == ["n1", "[0]"]


def test_start_local_reports_a_missing_program(tmp_path: Path) -> None:
    cmd = WorkerCommand("x", "n1", "local", (), {}, argv=("/nonexistent/autosteer-x",))
    with pytest.raises(DeployError, match="cannot start worker x"):
        start_local([cmd], tmp_path)


def test_renderers_give_systemd_and_kubernetes_examples() -> None:
    spec = load_spec(VIDEO)
    cmds = worker_commands(spec, plan(spec), SETTINGS, cores=2)
    unit = render_systemd(cmds[0])
    assert "ExecStart=/usr/bin/env autosteer worker" in unit
    assert 'Environment="AUTOSTEER_ROLES=router,edge,ingest"' in unit
    assert "CPUAffinity=0" in unit
    docs = list(yaml.safe_load_all(render_kubernetes(cmds)))
    assert [d["metadata"]["name"] for d in docs] == ["autosteer-edge-1", "autosteer-cloud-1"]
    env = {e["name"]: e["value"] for e in
           docs[1]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AUTOSTEER_ROLES"] == "cloud,sink" and env["AUTOSTEER_WEB_HOST"] == "0.0.0.0"
    text = render_deployment(cmds)
    assert text.index("## per-node commands") < text.index("## systemd") < text.index(
        "## Kubernetes")


def test_roles_match_the_worker() -> None:
    from autosteer.streams.roles import ROLES as WORKER_ROLES

    assert tuple(WORKER_ROLES) == ROLES
