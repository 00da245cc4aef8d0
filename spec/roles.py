"""Which autosteer worker role runs an operator.

An explicit ``role`` wins (``none``: no worker runs it). Otherwise a function named like
a role (``router``, ``sink``, ``ingest``) is that role, and a model runs as the detector
of its tier (the operator's ``tier``, else its node's):

>>> from autosteer.spec.model import Build, Operator
>>> b = [Build(latency_ms=1)]
>>> role_of(Operator(name="r", function="router", builds=b), "cloud")
'router'
>>> role_of(Operator(name="d", model="ssd_int8", builds=b), "edge")
'edge'
>>> role_of(Operator(name="t", function="tokenize", builds=b), "edge") is None
True
"""

from __future__ import annotations

from autosteer.spec.model import Operator
from autosteer.streams.roles import ROLES

__all__ = ["ROLES", "role_of"]


def role_of(op: Operator, node_tier: str) -> str | None:
    """The role that runs ``op`` on a node of ``node_tier``; None when no worker does."""
    if op.role is not None:
        return None if op.role == "none" else op.role
    if op.function in ("router", "sink", "ingest", "anomaly", "retrain"):
        return op.function
    if op.model is not None:
        return op.tier or node_tier
    return None
