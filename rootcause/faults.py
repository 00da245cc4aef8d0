"""Faults to inject into simulated telemetry, and the cause each one should be blamed on.

Six kinds, each with the (dimension, value, metric) a root-cause analysis should name
first and the cause type it should report:

================  =====================================  ==============================
kind              what happens                            expected cause
================  =====================================  ==============================
node_slowdown     ``cpu_hog``: another process eats a     (node, N, host_cpu_percent)
                  node's CPU; ``service_delay``: model     (node, N, infer_ms)
                  calls on a node take longer
link_degradation  the edge-to-cloud hop is slow and       (tier, cloud, link_ms)
                  jittery
camera_failure    ``stall``: a camera sends a fraction    (camera, C, fps)
                  of its frames; ``kill``: none
bad_deploy        a worse model version on a node or on   (model_version, V, score)
                  a whole tier
lighting_change   a camera's scene darkens: lower         (camera, C, score)
                  confidence, fewer boxes
memory_leak       a node's RSS grows steadily             (node, N, rss_bytes)
================  =====================================  ==============================

>>> import random
>>> f = random_fault("bad_deploy", Topology(), random.Random(3), 0, 60_000)
>>> f.cause, f.cause_type
(('model_version', '1.5', 'score'), 'bad_deploy')
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from autosteer.rootcause.metrics import CauseType

FAULT_KINDS = ("node_slowdown", "link_degradation", "camera_failure", "bad_deploy",
               "lighting_change", "memory_leak")

CAUSE_TYPES: dict[str, CauseType] = {
    "node_slowdown": "node_overload", "link_degradation": "link_degradation",
    "camera_failure": "camera_failure", "bad_deploy": "bad_deploy",
    "lighting_change": "model_drift", "memory_leak": "node_overload",
}


@dataclass(frozen=True)
class Topology:
    """Edge nodes run the small model for their cameras; a share of each camera's frames
    goes to one of the cloud nodes. Camera ``i`` sits on edge node ``i % len(edge)`` and
    offloads to cloud node ``i % len(cloud)``."""

    edge_nodes: tuple[str, ...] = ("edge-1", "edge-2", "edge-3")
    cloud_nodes: tuple[str, ...] = ("cloud-1", "cloud-2")
    cameras: int = 8
    fps: float = 2.0
    offload: float = 0.3
    edge_model: tuple[str, str] = ("ssdlite", "1.4")
    cloud_model: tuple[str, str] = ("ssd", "2.1")
    new_versions: tuple[str, str] = ("1.5", "2.2")  # what a deploy rolls out (edge, cloud)

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.edge_nodes + self.cloud_nodes

    @property
    def camera_ids(self) -> list[str]:
        return [f"cam{i}" for i in range(self.cameras)]

    def edge_of(self, camera: int) -> str:
        return self.edge_nodes[camera % len(self.edge_nodes)]

    def cloud_of(self, camera: int) -> str:
        return self.cloud_nodes[camera % len(self.cloud_nodes)]

    def tier_of(self, node: str) -> str:
        return "cloud" if node in self.cloud_nodes else "edge"


@dataclass(frozen=True)
class Fault:
    """One injected fault, active on ``[start_ms, end_ms)``; ``severity`` in [0, 1]."""

    kind: str
    target: str
    start_ms: int
    end_ms: int
    severity: float
    variant: str = ""
    version: str = ""  # bad_deploy: the model version rolled out

    def active(self, ts_ms: int) -> bool:
        return self.start_ms <= ts_ms < self.end_ms

    @property
    def cause(self) -> tuple[str, str, str]:
        """The (dimension, value, metric) to blame first."""
        if self.kind == "node_slowdown":
            metric = "host_cpu_percent" if self.variant == "cpu_hog" else "infer_ms"
            return "node", self.target, metric
        if self.kind == "link_degradation":
            return "tier", "cloud", "link_ms"
        if self.kind == "camera_failure":
            return "camera", self.target, "fps"
        if self.kind == "bad_deploy":
            return "model_version", self.version, "score"
        if self.kind == "lighting_change":
            return "camera", self.target, "score"
        if self.kind == "memory_leak":
            return "node", self.target, "rss_bytes"
        raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")

    @property
    def cause_type(self) -> CauseType:
        return CAUSE_TYPES[self.kind]


def random_fault(kind: str, topology: Topology, rng: random.Random, start_ms: int,
                 end_ms: int, severity: tuple[float, float] = (0.3, 1.0)) -> Fault:
    """A fault of ``kind`` with a random target, variant and severity (uniform in
    ``severity``)."""
    sev = rng.uniform(*severity)
    cams = topology.camera_ids
    if kind == "node_slowdown":
        return Fault(kind, rng.choice(topology.nodes), start_ms, end_ms, sev,
                     variant=rng.choice(["cpu_hog", "service_delay"]))
    if kind == "link_degradation":
        return Fault(kind, "cloud", start_ms, end_ms, sev)
    if kind == "camera_failure":
        return Fault(kind, rng.choice(cams), start_ms, end_ms, sev,
                     variant=rng.choice(["stall", "kill"]))
    if kind == "bad_deploy":
        tier = rng.choice(["edge", "cloud"])
        nodes = topology.edge_nodes if tier == "edge" else topology.cloud_nodes
        version = topology.new_versions[0 if tier == "edge" else 1]
        target = rng.choice([tier, *nodes])  # the whole tier, or one node (a canary)
        return Fault(kind, target, start_ms, end_ms, sev, version=version)
    if kind == "lighting_change":
        return Fault(kind, rng.choice(cams), start_ms, end_ms, sev)
    if kind == "memory_leak":
        return Fault(kind, rng.choice(topology.nodes), start_ms, end_ms, sev)
    raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
