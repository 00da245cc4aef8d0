"""Seeded synthetic specs for tests and ``bench/placement.py``.

The application is series-parallel, like the examples: a source operator, then stages
that are either one operator (``pipe``) or a group fanned out by ``distribute`` and
merged by ``reduce``. Nodes mix tiers, architectures, speeds and GPUs; links form a
random tree plus a few shortcuts. Capacity is sized to be tight but feasible.

>>> spec = random_spec(12, 4, seed=1)
>>> len(spec.application.operators), len(spec.resources.nodes)
(12, 4)
>>> random_spec(12, 4, seed=1) == spec
True
"""

from __future__ import annotations

import random
from typing import Any

from autosteer.spec.load import spec_from_data
from autosteer.spec.model import Spec


def random_spec(n_ops: int, n_nodes: int, seed: int = 0, *, rate: float = 20.0,
                tightness: float = 0.5) -> Spec:
    """A valid spec with ``n_ops`` operators and ``n_nodes`` nodes. ``tightness`` is the
    share of total node memory and cores the operators reserve."""
    rng = random.Random(seed)
    nodes = [_node(rng, k) for k in range(n_nodes)]
    ops, flows = _application(rng, n_ops)
    _fit(ops, nodes, tightness)
    links = _links(rng, [n["name"] for n in nodes])
    data: dict[str, Any] = {
        "application": {"name": f"synthetic-{seed}", "operators": ops, "flows": flows,
                        "requirements": {"max_utilization": 0.8}},
        "resources": {"nodes": nodes, "links": links},
        "sources": {"streams": [{"id": "input", "rate_per_s": rate, "operator": "op0"}]},
    }
    return spec_from_data(data, origin=f"synthetic(seed={seed})")


def _node(rng: random.Random, k: int) -> dict[str, Any]:
    edge = rng.random() < 0.5
    node: dict[str, Any] = {
        "name": f"n{k}", "tier": "edge" if edge else "cloud",
        "arch": rng.choice(["aarch64", "x86_64"]) if edge else "x86_64",
        "cpu": rng.choice([2, 4] if edge else [8, 16]),
        "memory_mb": rng.choice([2048, 4096] if edge else [16384, 32768]),
        "speed": round(rng.uniform(0.3, 0.8) if edge else rng.uniform(1.0, 2.0), 2),
        "libraries": ["onnxruntime==1.20"],
    }
    if rng.random() < 0.4:
        kind = rng.choice(["mali", "nvidia"]) if edge else "nvidia"
        node["gpu"] = {"kind": kind, "memory_mb": 4096, "speed": round(rng.uniform(0.3, 1.0), 2)}
    return node


def _operator(rng: random.Random, i: int) -> dict[str, Any]:
    heavy = rng.random() < 0.4
    builds: list[dict[str, Any]] = [{"latency_ms": round(rng.uniform(5, 40) if heavy
                                                          else rng.uniform(0.2, 4), 2)}]
    if heavy and rng.random() < 0.6:
        builds.append({"accelerator": rng.choice(["nvidia", "mali"]),
                       "latency_ms": round(rng.uniform(1, 8), 2)})
    return {"name": f"op{i}", "function": f"f{i}", "builds": builds,
            "resources": {"cpu": rng.choice([0.25, 0.5, 1.0]),
                          "memory_mb": rng.choice([128, 256, 512, 1024])},
            "output_kb": round(rng.uniform(0.5, 80), 1)}


def _application(rng: random.Random, n: int) -> tuple[list[dict], list[dict]]:
    ops = [_operator(rng, i) for i in range(n)]
    flows: list[dict[str, Any]] = []
    last, i = "op0", 1
    while i < n:
        room = n - i
        width = min(rng.choice([1, 1, 2, 3]), room - 1) if room >= 3 else 1
        if width == 1:
            flows.append({"kind": "pipe", "from": last, "to": f"op{i}"})
            last, i = f"op{i}", i + 1
            continue
        group = [f"op{j}" for j in range(i, i + width)]
        flows.append({"kind": "distribute", "from": last, "to": group,
                      "weights": [round(rng.uniform(1, 3), 1) for _ in group]})
        merge = f"op{i + width}"
        flows.append({"kind": "reduce", "from": group, "to": merge})
        last, i = merge, i + width + 1
    return ops, flows


def _fit(ops: list[dict], nodes: list[dict], tightness: float) -> None:
    """Scale operator reservations so they take ``tightness`` of the nodes."""
    for key, total in (("memory_mb", sum(n["memory_mb"] for n in nodes)),
                       ("cpu", sum(n["cpu"] for n in nodes))):
        need = sum(o["resources"][key] for o in ops)
        biggest = min(n[key] for n in nodes) * 0.9
        scale = tightness * total / need
        for o in ops:
            o["resources"][key] = round(min(biggest, o["resources"][key] * scale), 3)


def _links(rng: random.Random, names: list[str]) -> list[dict[str, Any]]:
    links = []
    for k in range(1, len(names)):
        links.append(_link(rng, names[rng.randrange(k)], names[k]))
    pairs = {frozenset(lk["between"]) for lk in links}
    for _ in range(len(names) // 3):
        a, b = rng.sample(names, 2)
        if frozenset((a, b)) not in pairs:
            pairs.add(frozenset((a, b)))
            links.append(_link(rng, a, b))
    return links


def _link(rng: random.Random, a: str, b: str) -> dict[str, Any]:
    return {"between": [a, b], "bandwidth_mbps": rng.choice([20, 100, 1000]),
            "latency_ms": round(rng.uniform(0.5, 20), 1)}
