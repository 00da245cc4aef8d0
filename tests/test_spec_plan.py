"""Planner: optimal on small cases, greedy past its limits, minimal moves on replan."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from autosteer.spec import (
    LinkOverloaded,
    NodeDown,
    NodeOverloaded,
    NodeRecovered,
    PlacementError,
    Plan,
    SpecError,
    load_spec,
    plan,
    render_table,
    replan,
    spec_from_data,
)
from autosteer.spec.milp import solve_exact
from autosteer.spec.placement import Conditions, build_instance
from autosteer.spec.search import solve_exhaustive, solve_greedy
from autosteer.spec.synthetic import random_spec

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT / "examples" / "video.yaml"
SENTIMENT = ROOT / "examples" / "sentiment.yaml"


@pytest.mark.parametrize("seed", range(8))
def test_planner_is_optimal_on_small_cases(seed: int) -> None:
    spec = random_spec(5 + seed % 3, 3 + seed % 2, seed)
    best = solve_exhaustive(build_instance(spec))
    p = plan(spec, time_limit_s=10)
    assert best is not None
    assert p.solver == "milp" and p.optimal
    assert p.objective_ms == pytest.approx(best.objective, abs=1e-3)


def test_exact_solver_respects_capacity_and_beats_greedy_construction() -> None:
    inst = build_instance(random_spec(8, 4, seed=0))
    exact, verdict = solve_exact(inst, 10)
    greedy = solve_greedy(inst, improve=False)
    assert verdict == "optimal" and exact is not None and greedy is not None
    assert inst.feasible(exact.assign)
    assert exact.objective <= greedy.objective + 1e-9


def test_greedy_is_used_past_the_size_limit() -> None:
    spec = random_spec(12, 4, seed=3)
    p = plan(spec, max_exact_vars=10)
    assert p.solver == "greedy" and not p.optimal
    assert any("greedy heuristic used" in n for n in p.notes)
    assert build_instance(spec).feasible([build_instance(spec).nodes.index(pl.node)
                                          for pl in p.placements])


def test_greedy_is_used_past_the_time_limit() -> None:
    spec = random_spec(40, 10, seed=1)
    p = plan(spec, time_limit_s=0.05)
    assert not p.optimal
    assert any("exact solver stopped (time limit" in n for n in p.notes), p.notes
    assert p.solve_s < 5


def test_video_plan() -> None:
    p = plan(load_spec(VIDEO))
    assert p.assignment == {"ingest": "edge-1", "router": "edge-1", "edge-detect": "edge-1",
                            "cloud-detect": "cloud-1", "sink": "cloud-1"}
    assert p.edge_ratio == 0.5  # the accuracy floor 0.21 between INT8 0.20 and FP32 0.22
    assert p.latency_ms == pytest.approx(6 + 0.5 + 0.5 * (28 + 5.16) + 0.5 * (9.8 + 40) + 1)
    assert p.partitions == 1 and p.notes == ()


def test_shares_favour_the_faster_target_without_an_accuracy_floor() -> None:
    data = yaml.safe_load(VIDEO.read_text())
    del data["application"]["requirements"]["accuracy_floor"]
    p = plan(spec_from_data(data))
    assert 0.5 < p.edge_ratio < 1.0  # queueing at the edge detector stops it short of 1


def test_equal_replicas_get_equal_shares() -> None:
    p = plan(load_spec(SENTIMENT))
    (share,) = p.shares
    by_node: dict[str, list[float]] = {}
    for target, w in zip(share.targets, share.weights, strict=True):
        by_node.setdefault(p.assignment[target], []).append(w)
    for weights in by_node.values():
        assert max(weights) - min(weights) < 1e-3
    assert sum(share.weights) == pytest.approx(1.0, abs=1e-3)


def test_replan_moves_only_what_was_on_the_dead_node() -> None:
    spec = load_spec(SENTIMENT)
    before = plan(spec)
    dead = "jetson-1"
    on_dead = {op for op, node in before.assignment.items() if node == dead}
    assert on_dead and len(on_dead) < len(before.assignment)
    after = replan(spec, before, NodeDown(dead))
    assert set(after.moves) == on_dead
    for op, node in before.assignment.items():
        assert after.assignment[op] != dead
        if op not in on_dead:
            assert after.assignment[op] == node
    assert after.down == (dead,)
    assert all(lk.mbps == 0 for lk in after.links if dead in lk.between)  # no forwarding
    back = replan(spec, after, NodeRecovered(dead))
    assert back.down == () and back.moves == ()  # moving back is not worth the penalty


def test_replan_after_overload_keeps_unaffected_operators() -> None:
    spec = load_spec(SENTIMENT)
    before = plan(spec)
    after = replan(spec, before, NodeOverloaded("jetson-1", capacity=0.4))
    assert 0 < len(after.moves) < len(before.assignment)
    inst = build_instance(spec, conditions=Conditions(node_factor={"jetson-1": 0.4}))
    assert inst.feasible([inst.nodes.index(after.assignment[o]) for o in inst.ops])
    assert after.derated == {"jetson-1": 0.4}
    unaffected = [op for op, n in before.assignment.items() if n != "jetson-1"]
    assert all(after.assignment[op] == before.assignment[op] for op in unaffected)


def test_replan_after_link_overload_respects_the_derated_bandwidth() -> None:
    data = yaml.safe_load(SENTIMENT.read_text())
    data["sources"]["streams"][0]["rate_per_s"] = 100  # 0.8 Mbit/s of tokens to the jetson
    spec = spec_from_data(data)
    before = plan(spec)
    link = ("pi-1", "jetson-1")
    factor = 0.5 / (1000 * 0.8)  # leaves 0.5 Mbit/s at 80 % utilization
    after = replan(spec, before, LinkOverloaded(link, capacity=factor))
    used = next(lk for lk in after.links if set(lk.between) == set(link))
    assert used.mbps <= 0.5 + 1e-6
    assert after.moves and "tokenize" not in after.moves
    assert after.derated == {"jetson-1,pi-1": factor}


def test_replan_of_unknown_node_says_which() -> None:
    spec = load_spec(VIDEO)
    with pytest.raises(SpecError, match="unknown node 'edge1' \\(did you mean 'edge-1'\\?\\)"):
        replan(spec, plan(spec), NodeDown("edge1"))


def test_replan_without_room_is_a_placement_error() -> None:
    spec = load_spec(VIDEO)
    with pytest.raises(PlacementError) as err:
        replan(spec, plan(spec), NodeDown("cloud-1"))  # cloud-detect needs a cloud node
    assert [(p.path, p.message) for p in err.value.problems] == [
        ("application.operators[3]", "operator 'cloud-detect' has no node left "
         "(edge-1: operator needs tier cloud, node is edge; cloud-1: node is down)")]


def test_invalid_spec_is_refused_with_its_problems() -> None:
    data = yaml.safe_load(VIDEO.read_text())
    data["application"]["flows"][0]["to"] = "ruoter"
    with pytest.raises(SpecError) as err:
        plan(spec_from_data(data))
    assert [p.path for p in err.value.problems] == ["application.flows[0].to"]


def test_capacity_that_only_fails_together_is_a_placement_error() -> None:
    data = yaml.safe_load(VIDEO.read_text())
    ingest, _, edge_detect = data["application"]["operators"][:3]
    ingest["builds"][0]["latency_ms"] = 50  # 0.5 cores busy at 10 fps
    edge_detect["builds"][0]["latency_ms"] = 70  # 0.35 at 5 fps; both only on edge-1 (0.8)
    with pytest.raises(PlacementError) as err:
        plan(spec_from_data(data))
    assert str(err.value).startswith("cannot place video-analytics: the exact solver proved")
    assert [p.path for p in err.value.problems] == ["resources"]


def test_plan_round_trips_through_yaml_and_json() -> None:
    p = replan(load_spec(SENTIMENT), plan(load_spec(SENTIMENT)), NodeDown("jetson-1"))
    assert Plan.from_data(yaml.safe_load(p.to_yaml())) == p
    assert Plan.from_data(yaml.safe_load(p.to_json())) == p


def test_render_table_lists_every_operator() -> None:
    p = plan(load_spec(VIDEO))
    text = render_table(p)
    assert text.startswith("plan for video-analytics: predicted latency 49.0 ms per item (milp")
    for op, node in p.assignment.items():
        assert any(line.split()[:2] == [op, node] for line in text.splitlines())
    assert "router edge ratio: 0.5" in text


def test_stateful_operators_stay_single_consumers() -> None:
    data = copy.deepcopy(yaml.safe_load(VIDEO.read_text()))
    p = plan(spec_from_data(data))
    assert p.placement("router").consumers == 1
