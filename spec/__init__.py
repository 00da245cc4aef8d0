"""Spec: a declarative application + resource spec, its checks, placement and deploy.

    spec = load_spec("examples/video.yaml")      # YAML -> Spec (SpecError on schema errors)
    problems = validate(spec)                    # every semantic problem, with YAML path/line
    p = plan(spec, time_limit_s=10)              # operators -> nodes, shares, consumers
    print(render_table(p))
    p2 = replan(spec, p, NodeDown("edge-1"))     # moving as few operators as it can
    cmds = worker_commands(spec, p, Settings())  # `autosteer worker` per node, with its env
    procs = start_local(cmds, "logs/")

The format is in docs/spec.md and spec/schema.json.
"""

from autosteer.spec.checks import validate
from autosteer.spec.deploy import (
    WorkerCommand,
    render_commands,
    render_deployment,
    render_kubernetes,
    render_systemd,
    start_local,
    worker_commands,
)
from autosteer.spec.errors import DeployError, PlacementError, Problem, SpecError
from autosteer.spec.load import load_spec, parse_spec, spec_from_data
from autosteer.spec.model import Spec
from autosteer.spec.planner import plan, replan
from autosteer.spec.render import render_table
from autosteer.spec.result import (
    Event,
    LinkOverloaded,
    NodeDown,
    NodeOverloaded,
    NodeRecovered,
    Placement,
    Plan,
    Share,
)

__all__ = [
    "DeployError",
    "Event",
    "LinkOverloaded",
    "NodeDown",
    "NodeOverloaded",
    "NodeRecovered",
    "Placement",
    "PlacementError",
    "Plan",
    "Problem",
    "Share",
    "Spec",
    "SpecError",
    "WorkerCommand",
    "load_spec",
    "parse_spec",
    "plan",
    "render_commands",
    "render_deployment",
    "render_kubernetes",
    "render_systemd",
    "render_table",
    "replan",
    "spec_from_data",
    "start_local",
    "validate",
    "worker_commands",
]
