"""Service-time profiles: what each detector tier costs, measured offline.

Every policy (ours and every baseline) gets the same :class:`SystemProfile`. Live
telemetry then scales it (a slower edge box shows up as longer ``infer_ms``).

>>> cloud = TierProfile(batch_s=(0.020, 0.040, 0.056, 0.071), servers=2)
>>> round(cloud.service_s(3), 3), round(cloud.frame_s(4) * 1000, 2)
(0.056, 17.75)
>>> round(cloud.capacity_fps, 1)
112.7

Frames bound for the cloud may be re-encoded smaller first (:class:`QualityLevel`): less
wire time, a measured accuracy cost, some CPU on the edge box.

>>> half = QualityLevel("s0.5q50", scale=0.5, jpeg_quality=50, bytes_ratio=0.157,
...                     accuracy=0.904, encode_s=0.0038)
>>> prof = SystemProfile(TierProfile((0.040,), accuracy=0.9), cloud, levels=(FULL, half))
>>> prof.level("s0.5q50").bytes_ratio, prof.levels[0].name
(0.157, 'full')
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
class QualityLevel:
    """One way to send a frame to the cloud: downscaled by ``scale`` and JPEG-encoded at
    ``jpeg_quality`` (None: the bytes as captured), measured offline on sample frames.

    - ``bytes_ratio``: bytes on the wire over the frame's bytes as captured (mean).
    - ``accuracy``: agreement of the cloud detector on the re-encoded frame with its own
      boxes on the original (F1 of a same-label IoU >= 0.5 match; 1.0 for ``full``).
    - ``encode_s``: seconds of decode + resize + encode on the edge box, per frame."""

    name: str
    scale: float = 1.0
    jpeg_quality: int | None = None
    bytes_ratio: float = 1.0
    accuracy: float = 1.0
    encode_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.scale <= 1.0 or not 0.0 < self.bytes_ratio <= 1.0:
            raise ValueError(f"level {self.name!r}: scale and bytes_ratio must be within "
                             f"(0, 1]; got {self.scale} and {self.bytes_ratio}")
        if not 0.0 <= self.accuracy <= 1.0 or self.encode_s < 0:
            raise ValueError(f"level {self.name!r}: accuracy must be within [0, 1] and "
                             f"encode_s >= 0; got {self.accuracy} and {self.encode_s}")

    @property
    def is_full(self) -> bool:
        """Sent as captured: nothing to re-encode."""
        return self.scale == 1.0 and self.jpeg_quality is None


FULL = QualityLevel("full")


@dataclass(frozen=True)
class SystemProfile:
    """The two tiers every policy is given, identically, and the quality levels a cloud
    frame may be sent at (``levels[0]`` is :data:`FULL`; the only one by default)."""

    edge: TierProfile
    cloud: TierProfile
    levels: tuple[QualityLevel, ...] = (FULL,)

    def __post_init__(self) -> None:
        if not self.levels or not self.levels[0].is_full:
            raise ValueError("levels must start with FULL (frames sent as captured); got "
                             f"{[lv.name for lv in self.levels]}")
        names = [lv.name for lv in self.levels]
        if len(set(names)) != len(names):
            raise ValueError(f"quality level names must be unique; got {names}")

    def level(self, name: str) -> QualityLevel:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise ValueError(f"no quality level {name!r}; the profile has "
                         f"{', '.join(lv.name for lv in self.levels)}")

    def tier(self, name: str) -> TierProfile:
        if name not in ("edge", "cloud"):
            raise ValueError(f"tier must be 'edge' or 'cloud'; got {name!r}")
        return self.edge if name == "edge" else self.cloud
