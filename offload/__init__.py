"""Offload: where each frame runs (edge or cloud).

The seam is :class:`OffloadPolicy` (``decide`` per frame returns a :class:`Route`,
``learn`` per detection read back). :class:`OffloadController` is the model-based
controller; the baselines sit behind the same seam; :class:`SloRule` is the SLO and
shedding rule they all share; :class:`EmulatedLink` emulates the edge -> cloud link.
"""

from autosteer.offload.baselines import (
    CloudOnly,
    DeepDecisionStyle,
    EdgeOnly,
    FastVAStyle,
    HillClimbing,
    ShortestCompletion,
)
from autosteer.offload.controller import ControlConfig, ControlDecision, OffloadController
from autosteer.offload.estimate import Ewma, LinkEstimator, RateMeter, Slowdown, Window
from autosteer.offload.link import EmulatedLink
from autosteer.offload.live import LiveState
from autosteer.offload.optimize import Halfspace, pgd, project
from autosteer.offload.policy import (
    CountsCopies,
    FixedRatio,
    FrameMeta,
    Observation,
    OffloadPolicy,
    Route,
    Tier,
    count_copy,
)
from autosteer.offload.profiles import FULL, QualityLevel, SystemProfile, TierProfile
from autosteer.offload.queueing import ModelInputs, OffloadModel, Prediction, drain_mean
from autosteer.offload.slo import SloRule

__all__ = [
    "FULL",
    "CloudOnly",
    "ControlConfig",
    "ControlDecision",
    "CountsCopies",
    "DeepDecisionStyle",
    "EdgeOnly",
    "EmulatedLink",
    "Ewma",
    "FastVAStyle",
    "FixedRatio",
    "FrameMeta",
    "Halfspace",
    "HillClimbing",
    "LinkEstimator",
    "LiveState",
    "ModelInputs",
    "Observation",
    "OffloadController",
    "OffloadModel",
    "OffloadPolicy",
    "Prediction",
    "QualityLevel",
    "RateMeter",
    "Route",
    "ShortestCompletion",
    "SloRule",
    "Slowdown",
    "SystemProfile",
    "TierProfile",
    "Tier",
    "Window",
    "count_copy",
    "drain_mean",
    "pgd",
    "project",
]
