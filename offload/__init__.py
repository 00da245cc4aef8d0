"""Offload: where each frame runs (edge or cloud)."""

from autosteer.offload.policy import FixedRatio, FrameMeta, Observation, OffloadPolicy, Tier

__all__ = ["FixedRatio", "FrameMeta", "Observation", "OffloadPolicy", "Tier"]
