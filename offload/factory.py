"""Build the router's offload policy (and the emulated link) from settings.

``AUTOSTEER_OFFLOAD_POLICY`` picks one of :data:`POLICIES`; every policy is given the
same :class:`SystemProfile`, built from ``AUTOSTEER_EDGE_FRAME_MS`` and
``AUTOSTEER_CLOUD_FRAME_MS`` (seconds per frame the operator measured or guessed; the
model-based policies recalibrate from live telemetry).

>>> from autosteer.settings import Settings
>>> make_policy(Settings(offload_policy="fixed", edge_ratio=0.25))
FixedRatio(edge_ratio=0.25)
>>> type(make_policy(Settings())).__name__
'OffloadController'
>>> make_link(Settings()) is None
True
>>> [lv.name for lv in parse_levels("s0.5q50:0.5:50:0.156:0.889:1.8")]
['full', 's0.5q50']
"""

from __future__ import annotations

import dataclasses

from autosteer.offload.baselines import (
    CloudOnly,
    DeepDecisionStyle,
    EdgeOnly,
    FastVAStyle,
    HillClimbing,
    ShortestCompletion,
)
from autosteer.offload.controller import ControlConfig, OffloadController
from autosteer.offload.link import EmulatedLink
from autosteer.offload.policy import FixedRatio, OffloadPolicy
from autosteer.offload.profiles import FULL, QualityLevel, SystemProfile, TierProfile
from autosteer.settings import Settings

POLICIES = ("controller", "fixed", "edge-only", "cloud-only", "deepdecision", "fastva",
            "hill-climbing", "jsec")


def parse_levels(spec: str) -> tuple[QualityLevel, ...]:
    """FULL, then the levels of ``AUTOSTEER_OFFLOAD_LEVELS``: comma-separated
    ``name:scale:jpeg_quality:bytes_ratio:accuracy:encode_ms`` (as measured by
    ``bench/offload.py --measure``)."""
    out = [FULL]
    for item in filter(None, (p.strip() for p in spec.split(","))):
        parts = item.split(":")
        try:
            name, scale, quality, ratio, acc, enc_ms = parts
            out.append(QualityLevel(name, float(scale), int(quality), float(ratio), float(acc),
                                    float(enc_ms) / 1000))
        except ValueError as exc:
            raise ValueError(f"AUTOSTEER_OFFLOAD_LEVELS entry {item!r}: {exc}; write "
                             "name:scale:jpeg_quality:bytes_ratio:accuracy:encode_ms, e.g. "
                             "s0.5q50:0.5:50:0.156:0.889:1.8") from None
    return tuple(out)


def system_profile(s: Settings) -> SystemProfile:
    edge = s.edge_frame_ms / 1000
    cloud = s.cloud_frame_ms / 1000
    batch = max(1, s.batch_size)
    return SystemProfile(
        edge=TierProfile(tuple(edge * n for n in range(1, batch + 1)), 1, s.edge_accuracy),
        cloud=TierProfile(tuple(cloud * n for n in range(1, batch + 1)), 1, 1.0),
        levels=parse_levels(s.offload_levels))


def controller_config(s: Settings) -> ControlConfig:
    """The controller's knobs from settings. An edge ratio, when set (a placement plan's,
    written by ``autosteer deploy``), is its split until the link is measured; unset, the
    controller starts from its own warm-up share.

    >>> controller_config(Settings()).warmup_offload
    0.2
    >>> controller_config(Settings(edge_ratio=0.7)).warmup_offload
    0.3
    """
    cfg = ControlConfig(accuracy_floor=s.accuracy_floor, auto_tick=False)
    if s.edge_ratio is not None:
        share = round(max(cfg.explore, 1.0 - s.edge_ratio), 6)
        cfg = dataclasses.replace(cfg, warmup_offload=share)
    return cfg


def make_policy(s: Settings) -> OffloadPolicy:
    """The policy named by ``s.offload_policy``."""
    name = s.offload_policy
    if name == "fixed":
        return FixedRatio(0.5 if s.edge_ratio is None else s.edge_ratio)
    if name == "edge-only":
        return EdgeOnly()
    if name == "cloud-only":
        return CloudOnly()
    profile = system_profile(s)
    if name == "controller":
        return OffloadController(profile, controller_config(s))
    if name == "deepdecision":
        return DeepDecisionStyle(profile, accuracy_floor=s.accuracy_floor)
    if name == "fastva":
        return FastVAStyle(profile)
    if name == "hill-climbing":
        return HillClimbing(profile)
    if name == "jsec":
        return ShortestCompletion(profile)
    raise ValueError(f"AUTOSTEER_OFFLOAD_POLICY={name!r}; choose from {', '.join(POLICIES)}")


def make_link(s: Settings) -> EmulatedLink | None:
    """The emulated edge -> cloud link, or None when ``AUTOSTEER_LINK_MBPS`` is 0."""
    if s.link_mbps <= 0:
        return None
    return EmulatedLink(s.link_mbps * 1e6, s.link_delay_ms / 1000, s.link_jitter_ms / 1000)
