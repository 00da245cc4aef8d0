"""The list of problems a spec check adds to, each located in the spec's YAML.

Both the structural checks (:mod:`autosteer.spec.checks`) and the feasibility checks
(:mod:`autosteer.spec.feasibility`) write into one :class:`Findings`, so a user sees all
problems at once.

>>> from autosteer.spec.load import parse_spec
>>> spec = parse_spec('''
... application:
...   name: demo
...   operators: [{name: ingest, function: ingest, builds: [{latency_ms: 2}]}]
... resources:
...   nodes: [{name: n1, tier: edge, cpu: 2, memory_mb: 2048}]
... sources:
...   cameras: [{id: cam1, url: "rtsp://127.0.0.1:18554/cam1", fps: 10}]
... ''')
>>> found = Findings(spec)
>>> found.add("resources.nodes[0].cpu", "too few cores")
>>> found.problems[0].path, found.problems[0].line
('resources.nodes[0].cpu', 6)
"""

from __future__ import annotations

import re

from autosteer.spec.errors import Problem, Severity
from autosteer.spec.model import Spec


class Findings:
    """The problems found so far, located in the spec's YAML."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.problems: list[Problem] = []

    def add(self, path: str, message: str, severity: Severity = "error") -> None:
        self.problems.append(Problem(path, message, self.line(path), severity))

    def line(self, path: str) -> int | None:
        while path:
            found = self.spec.line(path)
            if found is not None:
                return found
            path = re.sub(r"(\[\d+\]|\.[^.\[]+|^[^.\[]+)$", "", path)
        return None

    def member(self, path: str, index: int, count: int) -> str:
        """``path[index]`` when the YAML wrote a list there, else ``path``."""
        listed = self.spec.line(f"{path}[{index}]") is not None
        return f"{path}[{index}]" if listed or (count > 1 and not self.spec.line(path)) else path
