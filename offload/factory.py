"""Build the router's offload policy (and the emulated link) from settings.

``AUTOSTEER_OFFLOAD_POLICY`` picks one of :data:`POLICIES`; every policy is given the
same :class:`SystemProfile`, built from ``AUTOSTEER_EDGE_FRAME_MS`` and
``AUTOSTEER_CLOUD_FRAME_MS`` (seconds per frame the operator measured or guessed; the
model-based policies recalibrate from live telemetry), and every one that estimates
(ours and each baseline but the fixed ones) the same SLO and shed budget
(``AUTOSTEER_SLO_MS``, ``AUTOSTEER_SHED_BUDGET``); a baseline with a deadline of its own
(DeepDecision, FastVA) takes the SLO as its deadline.

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
from collections.abc import Callable
from typing import Any

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
    >>> c = controller_config(Settings(slo_ms=150, shed_budget=0.1))
    >>> c.slo_ms, c.shed_budget
    (150.0, 0.1)
    """
    cfg = ControlConfig(accuracy_floor=s.accuracy_floor, auto_tick=False, slo_ms=s.slo_ms,
                        shed_budget=s.shed_budget)
    if s.edge_ratio is not None:
        share = round(max(cfg.explore, 1.0 - s.edge_ratio), 6)
        cfg = dataclasses.replace(cfg, warmup_offload=share)
    return cfg


def _slo(s: Settings) -> dict[str, Any]:
    """The SLO and shedding options, the same for ours and every baseline that estimates."""
    return {"slo_ms": s.slo_ms, "shed_budget": s.shed_budget}


def _deadline(s: Settings) -> dict[str, Any]:
    """A baseline's per-frame deadline is the SLO when there is one (its own default else)."""
    return {} if s.slo_ms is None else {"deadline_ms": s.slo_ms}


Builder = Callable[[Settings], OffloadPolicy]

#: Every policy by its ``AUTOSTEER_OFFLOAD_POLICY`` name (the settings' ``Literal`` lists
#: the same names; tests/test_offload_policies.py checks they agree).
POLICIES: dict[str, Builder] = {
    "controller": lambda s: OffloadController(system_profile(s), controller_config(s)),
    "fixed": lambda s: FixedRatio(0.5 if s.edge_ratio is None else s.edge_ratio),
    "edge-only": lambda s: EdgeOnly(),
    "cloud-only": lambda s: CloudOnly(),
    "deepdecision": lambda s: DeepDecisionStyle(system_profile(s), accuracy_floor=s.accuracy_floor,
                                                **_deadline(s), **_slo(s)),
    "fastva": lambda s: FastVAStyle(system_profile(s), **_deadline(s), **_slo(s)),
    "hill-climbing": lambda s: HillClimbing(system_profile(s), **_slo(s)),
    "jsec": lambda s: ShortestCompletion(system_profile(s), **_slo(s)),
}


def make_policy(s: Settings) -> OffloadPolicy:
    """The policy named by ``s.offload_policy``, with the settings' profile, SLO and shed
    budget.

    >>> make_policy(Settings(offload_policy="jsec", slo_ms=150, shed_budget=0.1))
    ShortestCompletion(slo_ms=150.0, shed_budget=0.1)
    """
    try:
        build = POLICIES[s.offload_policy]
    except KeyError:
        raise ValueError(f"AUTOSTEER_OFFLOAD_POLICY={s.offload_policy!r}; choose from "
                         f"{', '.join(POLICIES)}") from None
    return build(s)


def make_link(s: Settings) -> EmulatedLink | None:
    """The emulated edge -> cloud link, or None when ``AUTOSTEER_LINK_MBPS`` is 0."""
    if s.link_mbps <= 0:
        return None
    return EmulatedLink(s.link_mbps * 1e6, s.link_delay_ms / 1000, s.link_jitter_ms / 1000)
