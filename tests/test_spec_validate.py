"""Spec loading and validation: every invalid spec names its path and what is wrong."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from autosteer.errors import AutosteerError
from autosteer.spec import Problem, SpecError, load_spec, parse_spec, spec_from_data, validate

ROOT = Path(__file__).resolve().parent.parent

BASE: dict[str, Any] = {
    "application": {
        "name": "demo",
        "operators": [
            {"name": "ingest", "function": "ingest", "builds": [{"latency_ms": 5}],
             "resources": {"cpu": 0.5, "memory_mb": 256}},
            {"name": "router", "function": "router", "builds": [{"latency_ms": 1}],
             "resources": {"cpu": 0.5, "memory_mb": 256}},
            {"name": "detect", "model": "ssd", "accuracy": 0.2,
             "builds": [{"accelerator": "cpu", "latency_ms": 30}],
             "resources": {"cpu": 1, "memory_mb": 1024}},
            {"name": "sink", "function": "sink", "builds": [{"latency_ms": 1}],
             "resources": {"cpu": 0.5, "memory_mb": 256}},
        ],
        "flows": [
            {"kind": "pipe", "from": "ingest", "to": "router"},
            {"kind": "pipe", "from": "detect", "to": "sink"},
            {"kind": "pipe", "from": "router", "to": "detect"},
        ],
        "requirements": {"latency_slo_ms": 200, "throughput_fps_per_camera": 10},
    },
    "resources": {
        "nodes": [
            {"name": "edge-1", "tier": "edge", "cpu": 2, "memory_mb": 4096},
            {"name": "cloud-1", "tier": "cloud", "cpu": 4, "memory_mb": 8192,
             "gpu": {"kind": "nvidia", "memory_mb": 8192}},
        ],
        "links": [{"between": ["edge-1", "cloud-1"], "bandwidth_mbps": 100, "latency_ms": 5}],
    },
    "sources": {"cameras": [{"id": "cam1", "url": "rtsp://127.0.0.1:18554/cam1", "fps": 10}]},
}


def problems(edit: Callable[[dict[str, Any]], None]) -> list[Problem]:
    """Problems of BASE after ``edit``: schema problems or semantic ones."""
    data = copy.deepcopy(BASE)
    edit(data)
    try:
        spec = spec_from_data(data)
    except SpecError as exc:
        return exc.problems
    return [p for p in validate(spec) if p.severity == "error"]


def ops(d: dict[str, Any]) -> list[dict[str, Any]]:
    return d["application"]["operators"]


def test_base_is_valid() -> None:
    assert problems(lambda d: None) == []


def _jetson_only(d: dict[str, Any]) -> None:
    d["resources"]["nodes"] = [{"name": "jetson-1", "tier": "edge", "arch": "aarch64", "cpu": 6,
                                "memory_mb": 8192, "gpu": {"kind": "nvidia"}}]
    d["resources"]["links"] = []
    ops(d)[2]["builds"] = [{"accelerator": "mali", "arch": "aarch64", "latency_ms": 9}]


def _pin(d: dict[str, Any], op: int, node: str) -> None:
    ops(d)[op]["node"] = node


INVALID: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("unknown operator in a flow",
     lambda d: d["application"]["flows"][2].update(to="detct"),
     "application.flows[2].to", "unknown operator 'detct' (did you mean 'detect'?)"),
    ("unknown operator in a list",
     lambda d: d["application"]["flows"].append(
         {"kind": "distribute", "from": "router", "to": ["detect", "snik"]}),
     "application.flows[3].to[1]", "unknown operator 'snik' (did you mean 'sink'?)"),
    ("cycle",
     lambda d: d["application"]["flows"].append({"kind": "pipe", "from": "sink", "to": "router"}),
     "application.flows[3]", "cycle router -> detect -> sink -> router; flows must not loop "
     "unless the closing flow is marked `feedback: true`"),
    ("mali build where only an nvidia GPU exists", _jetson_only,
     "application.operators[2].builds",
     "no node can run operator 'detect' (jetson-1: built for mali GPU, node has nvidia GPU)"),
    ("pinned to an incompatible node",
     lambda d: (ops(d)[2].update(builds=[{"accelerator": "mali", "latency_ms": 9}],
                                 node="cloud-1")),
     "application.operators[2].node",
     "operator 'detect' cannot run on node 'cloud-1': built for mali GPU, node has nvidia GPU"),
    ("memory over every node's capacity",
     lambda d: ops(d)[2]["resources"].update(memory_mb=9000),
     "application.operators[2].resources.memory_mb",
     "operator 'detect' fits no node that can run it (edge-1: needs 9000 MB memory, node has "
     "4096 MB; cloud-1: needs 9000 MB memory, node has 8192 MB)"),
    ("GPU memory over the only GPU",
     lambda d: ops(d)[2].update(builds=[{"accelerator": "nvidia", "latency_ms": 3}],
                                resources={"cpu": 1, "memory_mb": 512, "gpu_memory_mb": 20000}),
     "application.operators[2].resources.gpu_memory_mb",
     "operator 'detect' fits no node that can run it (cloud-1: needs 20000 MB GPU memory, "
     "node has 8192 MB)"),
    ("pinned operators over a node's memory",
     lambda d: [(_pin(d, i, "edge-1"), ops(d)[i]["resources"].update(memory_mb=1500))
                for i in (0, 1, 3)],
     "resources.nodes[0].memory_mb",
     "operators pinned to 'edge-1' (ingest, router, sink) need 4500 MB; the node has 4096 MB"),
    ("SLO infeasible under best-case latencies",
     lambda d: d["application"]["requirements"].update(latency_slo_ms=20),
     "application.requirements.latency_slo_ms",
     "20 ms cannot be met: the best case is 37.0 ms (ingest -> router -> detect -> sink, every "
     "operator on its fastest node, no network time)"),
    ("accuracy floor above what the models give",
     lambda d: d["application"]["requirements"].update(accuracy_floor=0.5),
     "application.requirements.accuracy_floor",
     "0.5 cannot be met: the most accurate choice gives 0.200"),
    ("too busy for any node at the required rate",
     lambda d: ops(d)[2]["builds"][0].update(latency_ms=400),
     "application.operators[2]",
     "operator 'detect' fits no node that can run it (edge-1: keeps 4.00 cores busy, node may be "
     "planned to 1.60; cloud-1: keeps 4.00 cores busy, node may be planned to 3.20)"),
    ("camera slower than the required throughput",
     lambda d: d["sources"]["cameras"][0].update(fps=5),
     "sources.cameras[0].fps",
     "camera 'cam1' gives 5 fps, below the required 10 fps "
     "(application.requirements.throughput_fps_per_camera)"),
    ("distribute to one operator",
     lambda d: d["application"]["flows"][2].update(kind="distribute"),
     "application.flows[2].to", "a distribute flow takes at least two operators here; got 1"),
    ("weights do not match targets",
     lambda d: d["application"]["flows"].append(
         {"kind": "distribute", "from": "router", "to": ["detect", "sink"], "weights": [1]}),
     "application.flows[3].weights", "1 weights for 2 targets; give one per target"),
    ("duplicate operator",
     lambda d: ops(d).append(copy.deepcopy(ops(d)[3])),
     "application.operators[4].name",
     "duplicate operator 'sink' (first at application.operators[3])"),
    ("unknown node in a link",
     lambda d: d["resources"]["links"][0].update(between=["edge-1", "cloud1"]),
     "resources.links[0].between[1]", "unknown node 'cloud1' (did you mean 'cloud-1'?)"),
    ("unknown node in a pin",
     lambda d: _pin(d, 1, "edge1"),
     "application.operators[1].node", "unknown node 'edge1' (did you mean 'edge-1'?)"),
    ("model and function both given",
     lambda d: ops(d)[2].update(function="detect"),
     "application.operators[2]", "operator 'detect' must give exactly one of model and function"),
    ("no sources",
     lambda d: d.update(sources={}),
     "sources", "no cameras or streams: the planner needs an input rate"),
    ("camera feeds an operator that is not an entry",
     lambda d: d["sources"]["cameras"][0].update(operator="detect"),
     "sources.cameras[0].operator", "operator 'detect' is not an entry: flows lead into it"),
    ("pinned apart without a route",
     lambda d: (d["resources"].update(links=[]), _pin(d, 0, "edge-1"), _pin(d, 1, "cloud-1")),
     "application.flows[0]",
     "'ingest' is pinned to 'edge-1' and 'router' to 'cloud-1', but no links join those nodes"),
    # schema errors
    ("misspelt field",
     lambda d: ops(d)[2]["resources"].update(memroy_mb=1),
     "application.operators[2].resources.memroy_mb",
     "unknown field 'memroy_mb' (did you mean 'memory_mb'?)"),
    ("bad tier",
     lambda d: d["resources"]["nodes"][0].update(tier="egde"),
     "resources.nodes[0].tier", "got 'egde'; expected 'edge' or 'cloud' (did you mean 'edge'?)"),
    ("missing field",
     lambda d: d["resources"]["nodes"][0].pop("cpu"),
     "resources.nodes[0].cpu", "missing required field 'cpu'"),
    ("not an RTSP URL",
     lambda d: d["sources"]["cameras"][0].update(url="http://cam/1"),
     "sources.cameras[0].url", "string should match pattern '^rtsps?://\\S+$'; got 'http://cam/1'"),
    ("bad name",
     lambda d: ops(d)[0].update(name="Ingest Op"),
     "application.operators[0].name", "'Ingest Op' is not a valid name: use lowercase letters, "
     "digits, '.', '_' and '-', starting with a letter or digit"),
    ("negative latency",
     lambda d: ops(d)[0]["builds"][0].update(latency_ms=-1),
     "application.operators[0].builds[0].latency_ms", "input should be greater than 0; got -1"),
]


@pytest.mark.parametrize(("edit", "path", "message"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_spec_names_path_and_problem(edit: Callable[[dict[str, Any]], None],
                                             path: str, message: str) -> None:
    found = problems(edit)
    assert (path, message) in [(p.path, p.message) for p in found], "\n".join(map(str, found))


def test_feedback_flow_may_close_a_loop() -> None:
    found = problems(lambda d: d["application"]["flows"].append(
        {"kind": "pipe", "from": "sink", "to": "router", "feedback": True}))
    assert found == []


def test_all_problems_are_reported_together() -> None:
    def two(d: dict[str, Any]) -> None:
        d["application"]["flows"][2]["to"] = "detct"
        d["resources"]["links"][0]["between"] = ["edge-1", "cloud1"]

    assert {p.path for p in problems(two)} == {"application.flows[2].to",
                                              "resources.links[0].between[1]"}


YAML = """\
application:
  name: demo
  operators:
    - {name: ingest, function: ingest, builds: [{latency_ms: 5}]}
    - {name: detect, model: ssd, builds: [{latency_ms: 30}]}
  flows:
    - kind: pipe
      from: ingest
      to: detct
resources:
  nodes: [{name: n1, tier: edge, cpu: 2, memory_mb: 2048}]
sources:
  cameras: [{id: cam1, url: "rtsp://127.0.0.1:18554/cam1", fps: 10}]
"""


def test_problems_carry_yaml_line_numbers() -> None:
    spec = parse_spec(YAML, origin="demo.yaml")
    (p,) = [p for p in validate(spec) if p.severity == "error"]
    assert (p.path, p.line) == ("application.flows[0].to", 9)
    assert p.located("demo.yaml") == ("demo.yaml:9: application.flows[0].to: unknown operator "
                                      "'detct' (did you mean 'detect'?)")


def test_schema_errors_carry_yaml_line_numbers() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(YAML.replace("tier: edge", "tier: egde"), origin="demo.yaml")
    (p,) = err.value.problems
    assert (p.path, p.line) == ("resources.nodes[0].tier", 11)
    assert "demo.yaml:11: resources.nodes[0].tier: got 'egde'" in str(err.value)


def test_yaml_syntax_and_duplicate_keys_are_errors() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec("application: [unclosed\n")
    assert err.value.problems[0].path == "(yaml)" and err.value.problems[0].line == 2
    with pytest.raises(SpecError) as err:
        parse_spec(YAML.replace("  name: demo\n", "  name: demo\n  name: again\n"))
    (p,) = err.value.problems
    assert (p.path, p.message, p.line) == ("application.name", "key 'name' appears twice", 3)


def test_spec_error_is_an_autosteer_error_and_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(AutosteerError, match="cannot read spec .*missing.yaml"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="must be a mapping"):
        parse_spec("- just a list\n")


@pytest.mark.parametrize("name", ["video.yaml", "sentiment.yaml"])
def test_examples_validate_cleanly(name: str) -> None:
    spec = load_spec(ROOT / "examples" / name)
    assert validate(spec) == []
