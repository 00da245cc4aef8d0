"""Which operator builds can run on which node, and how fast.

A build fits a node when its architecture matches (or is ``any``), its accelerator is
``cpu`` or the node's GPU kind, and the node has every library it needs:

>>> from autosteer.spec.model import Build, Gpu, Node
>>> jetson = Node(name="jetson", tier="edge", arch="aarch64", cpu=6, memory_mb=8192,
...               gpu=Gpu(kind="nvidia", speed=0.25), libraries=["tensorrt==8.6.2"])
>>> misfit(Build(accelerator="mali", arch="aarch64", latency_ms=20), jetson)
'built for mali GPU, node has nvidia GPU'
>>> misfit(Build(accelerator="nvidia", libraries=["tensorrt>=9"], latency_ms=5), jetson)
'needs tensorrt>=9, node has tensorrt==8.6.2'
>>> service_ms(Build(accelerator="nvidia", libraries=["tensorrt>=8"], latency_ms=5), jetson)
20.0
"""

from __future__ import annotations

import operator as _op
import re
from collections.abc import Callable, Sequence

from autosteer.spec.model import Build, Node, Operator

_REQ = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(==|>=|<=|!=|>|<|=)?\s*([0-9][0-9A-Za-z.\-+]*)?\s*$")
_CMP: dict[str, Callable[[object, object], bool]] = {
    "==": _op.eq, "=": _op.eq, ">=": _op.ge, "<=": _op.le, ">": _op.gt, "<": _op.lt, "!=": _op.ne}


def parse_library(text: str) -> tuple[str, str, tuple[int, ...] | None]:
    """``'onnxruntime>=1.17'`` -> ``('onnxruntime', '>=', (1, 17))``.

    >>> parse_library("TensorRT")
    ('tensorrt', '', None)
    """
    m = _REQ.match(text)
    if m is None:
        return text.strip().lower(), "", None
    name, cmp, version = m.groups()
    numbers = tuple(int(x) for x in re.findall(r"\d+", version)) if version else None
    return name.lower(), cmp or "", numbers


def has_library(installed: Sequence[str], requirement: str) -> bool:
    """Whether ``installed`` (``name`` or ``name==version`` entries) satisfies ``requirement``.

    >>> has_library(["onnxruntime==1.18.1"], "onnxruntime>=1.17")
    True
    >>> has_library(["onnxruntime"], "onnxruntime>=1.17")
    False
    """
    name, cmp, want = parse_library(requirement)
    for entry in installed:
        have_name, _, have = parse_library(entry)
        if have_name != name:
            continue
        if want is None:
            return True
        if have is not None and _CMP[cmp or "=="](_pad(have, want), _pad(want, have)):
            return True
    return False


def _pad(v: tuple[int, ...], other: tuple[int, ...]) -> tuple[int, ...]:
    return v + (0,) * max(0, len(other) - len(v))


def misfit(build: Build, node: Node) -> str | None:
    """Why ``build`` cannot run on ``node``, or None when it can."""
    if build.arch != "any" and build.arch != node.arch:
        return f"built for {build.arch}, node is {node.arch}"
    if build.accelerator != "cpu":
        if node.gpu is None:
            return f"built for {build.accelerator} GPU, node has no GPU"
        if node.gpu.kind != build.accelerator:
            return f"built for {build.accelerator} GPU, node has {node.gpu.kind} GPU"
    for lib in build.libraries:
        if not has_library(node.libraries, lib):
            name = parse_library(lib)[0]
            have = [x for x in node.libraries if parse_library(x)[0] == name]
            return f"needs {lib}, node has {', '.join(have) if have else 'none'}"
    return None


def service_ms(build: Build, node: Node) -> float:
    """Service time per item of ``build`` on ``node`` (reference time / node speed)."""
    if build.accelerator != "cpu" and node.gpu is not None:
        return build.latency_ms / node.gpu.speed
    return build.latency_ms / node.speed


def best_build(op: Operator, node: Node) -> Build | None:
    """The fastest build of ``op`` that fits ``node``, or None."""
    fits = [b for b in op.builds if misfit(b, node) is None]
    return min(fits, key=lambda b: service_ms(b, node)) if fits else None


def misfit_operator(op: Operator, node: Node) -> str | None:
    """Why no build of ``op`` runs on ``node`` (the first build's reason), or None."""
    if op.tier is not None and op.tier != node.tier:
        return f"operator needs tier {op.tier}, node is {node.tier}"
    if best_build(op, node) is not None:
        return None
    reasons = [misfit(b, node) or "" for b in op.builds]
    return reasons[0] if len(set(reasons)) == 1 else "; ".join(
        f"build {i}: {r}" for i, r in enumerate(reasons))


def describe_build(build: Build) -> str:
    """``'mali/aarch64'``-style summary used in messages."""
    return f"{build.accelerator}/{build.arch}"


def describe_node(node: Node) -> str:
    gpu = f"{node.gpu.kind} GPU" if node.gpu else "no GPU"
    return f"{node.name} ({node.tier}, {node.arch}, {gpu})"
