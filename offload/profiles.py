"""Service-time profiles: what each detector tier costs, measured offline.

Every policy (ours and every baseline) gets the same :class:`SystemProfile`. Live
telemetry then scales it (a slower edge box shows up as longer ``infer_ms``).

>>> cloud = TierProfile(batch_s=(0.020, 0.040, 0.056, 0.071), servers=2)
>>> round(cloud.service_s(3), 3), round(cloud.frame_s(4) * 1000, 2)
(0.056, 17.75)
>>> round(cloud.capacity_fps, 1)
112.7
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TierProfile:
    """One tier: seconds per batch of ``n`` frames (``batch_s[n - 1]``), servers, accuracy.

    ``scv`` is the squared coefficient of variation of the service time (0 =
    deterministic, 1 = exponential); ``accuracy`` is agreement with the reference model
    (the cloud's FP32 model is 1.0 by definition)."""

    batch_s: tuple[float, ...]
    servers: int = 1
    accuracy: float = 1.0
    scv: float = 0.01

    def __post_init__(self) -> None:
        if not self.batch_s or any(b <= 0 for b in self.batch_s):
            raise ValueError(f"batch_s must list positive seconds per batch of 1, 2, ... "
                             f"frames; got {self.batch_s!r}")
        if self.servers < 1:
            raise ValueError(f"servers must be at least 1; got {self.servers}")
        if not 0.0 <= self.accuracy <= 1.0:
            raise ValueError(f"accuracy must be within [0, 1]; got {self.accuracy}")

    @property
    def max_batch(self) -> int:
        return len(self.batch_s)

    def service_s(self, n: int) -> float:
        """Seconds for one batch of ``n`` frames (``n`` is clipped to ``[1, max_batch]``)."""
        return self.batch_s[min(max(int(n), 1), self.max_batch) - 1]

    def frame_s(self, n: int = 1) -> float:
        """Seconds per frame when frames run in batches of ``n``."""
        n = min(max(int(n), 1), self.max_batch)
        return self.service_s(n) / n

    @property
    def capacity_fps(self) -> float:
        """Frames per second with every server busy on full batches."""
        return self.servers / self.frame_s(self.max_batch)


@dataclass(frozen=True)
class SystemProfile:
    """The two tiers every policy is given, identically."""

    edge: TierProfile
    cloud: TierProfile

    def tier(self, name: str) -> TierProfile:
        if name not in ("edge", "cloud"):
            raise ValueError(f"tier must be 'edge' or 'cloud'; got {name!r}")
        return self.edge if name == "edge" else self.cloud
