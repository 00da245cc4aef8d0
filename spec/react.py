"""From a root cause to a placement event: what ``autosteer deploy`` re-plans around.

The workers ``autosteer deploy`` starts are named after their spec node (``edge-1``, or
``edge-1-r2`` for a second worker there), and that name is the ``node`` in telemetry, so
a cause ``node=edge-1-r2`` points at node ``edge-1``. A link cause (``link_degradation``,
blamed on the cloud tier's queueing) points at the busiest link of the plan: the hop the
frames take to the cloud.

>>> from autosteer.spec.result import Plan, LinkUse
>>> p = Plan("app", (), 0.0, 0.0, "milp", True, 0.0,
...          links=(LinkUse(("edge-1", "cloud-1"), 12.0, 20.0),))
>>> event_for(["edge-1", "cloud-1"], p, "node_overload", "node", "edge-1-r2")
NodeOverloaded(node='edge-1', capacity=0.5)
>>> event_for(["edge-1", "cloud-1"], p, "link_degradation", "tier", "cloud")
LinkOverloaded(between=('edge-1', 'cloud-1'), capacity=0.5)
>>> event_for(["edge-1", "cloud-1"], p, "node_overload", "node", "laptop") is None
True
"""

from __future__ import annotations

from collections.abc import Sequence

from autosteer.spec.result import Event, LinkOverloaded, NodeOverloaded, Plan


def event_for(nodes: Sequence[str], plan: Plan, cause_type: str, dimension: str, value: str,
              capacity: float = 0.5) -> Event | None:
    """The planner event for a root cause, or None when the cause is outside the spec."""
    if cause_type == "node_overload" and dimension == "node":
        node = _node(nodes, value)
        return NodeOverloaded(node, capacity) if node else None
    if cause_type == "link_degradation" and plan.links:
        busiest = max(plan.links, key=lambda link: link.mbps / max(link.bandwidth_mbps, 1e-9))
        return LinkOverloaded(busiest.between, capacity)
    return None


def _node(nodes: Sequence[str], worker: str) -> str | None:
    if worker in nodes:
        return worker
    base, _, replica = worker.rpartition("-r")
    return base if replica.isdigit() and base in nodes else None
