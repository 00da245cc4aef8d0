"""What a policy knows at the router: its own routing and the telemetry read back.

Every policy (ours and every baseline) keeps one :class:`LiveState` and feeds it the same
three things: each frame as it arrives, the tier chosen for it, and each
:class:`~autosteer.offload.policy.Observation`. Nothing else: no link settings, no
simulator internals.

>>> from autosteer.offload.policy import FrameMeta, Observation
>>> from autosteer.offload.profiles import SystemProfile, TierProfile
>>> live = LiveState(SystemProfile(TierProfile((0.040,)), TierProfile((0.020,), 2)))
>>> for i in range(3):
...     f = FrameMeta("cam1", i, ts_ms=0, size_bytes=80_000)
...     live.arrive(f, now_s=0.0)
...     live.dispatch(f, "edge", now_s=0.0)
>>> live.outstanding("edge"), round(live.completion_s("edge", 80_000, now_s=0.0), 3)
(3, 0.16)
>>> live.learn(Observation("cam1", "edge", total_ms=41.0, infer_ms=41.0, queue_ms=0.0,
...                        seq=0), now_s=0.05)
>>> live.outstanding("edge"), round(live.edge_s, 4)   # the profile's 40 ms was the prior
(2, 0.0401)
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque

from autosteer.offload.estimate import Ewma, LinkEstimator, RateMeter, Slowdown, Window
from autosteer.offload.policy import FrameMeta, Observation, Tier
from autosteer.offload.profiles import SystemProfile

Key = tuple[str, int]


class LiveState:
    """Arrival rates, frame sizes, service times, queue depths and the uplink, estimated
    online. ``alpha`` weights new service-time samples; camera rates use the last
    ``rate_window_s`` seconds (a camera that just appeared: at least ``rate_min_span_s``,
    see :class:`RateMeter`), the load each tier puts on the cores (and the edge's
    arrival rate) the last ``load_window_s``; frames not seen back within ``stale_s`` are
    forgotten."""

    def __init__(self, profile: SystemProfile, *, alpha: float = 0.1,
                 rate_window_s: float = 2.0, burst_window_s: float = 10.0,
                 burst_bin_s: float = 0.25, stale_s: float = 30.0,
                 load_window_s: float = 2.0, rate_min_span_s: float | None = None) -> None:
        self.profile = profile
        self.alpha = alpha
        self.rate_window_s = rate_window_s
        self.load_window_s = load_window_s
        self.rate_min_span_s = rate_min_span_s
        self.burst_window_s = burst_window_s
        self.burst_bin_s = burst_bin_s
        self.stale_s = stale_s
        self.link = LinkEstimator()
        self._rates: dict[str, RateMeter] = {}
        self._all = RateMeter(burst_window_s)
        self._sizes: dict[str, Ewma] = {}
        # service times start from the profile (a prior worth one sample: the first
        # inference of a model is cold and slow) and take samples clipped at 4x themselves
        self._edge = Ewma(alpha, prior=profile.edge.frame_s(1))
        self._edge_wait = Ewma(alpha)
        self._edge_in = RateMeter(load_window_s)
        self._cloud = Ewma(alpha, prior=profile.cloud.frame_s(1))
        self._pre = Ewma(alpha)  # capture -> routed (before any tier is chosen)
        self._hop = Window(256)  # routed -> received by the edge detector's worker
        self._hop_s: float | None = 0.0  # its low quantile (None: to recompute)
        self._back: dict[Tier, Ewma] = {"edge": Ewma(alpha), "cloud": Ewma(alpha)}
        self._finished: dict[Tier, deque[float]] = {"edge": deque(), "cloud": deque()}
        self.slowdown: dict[Tier, Slowdown] = {"edge": Slowdown(), "cloud": Slowdown()}
        self._out: dict[Tier, OrderedDict[Key, tuple[float, int]]] = {
            "edge": OrderedDict(), "cloud": OrderedDict()}
        self._edge_free = -math.inf
        self._cloud_free = -math.inf
        self._done: deque[tuple[float, float, Tier]] = deque()  # (done_s, e2e_s, tier)

    def __repr__(self) -> str:
        return (f"LiveState({self.profile!r}, alpha={self.alpha}, "
                f"rate_window_s={self.rate_window_s}, burst_window_s={self.burst_window_s}, "
                f"burst_bin_s={self.burst_bin_s}, stale_s={self.stale_s}, "
                f"load_window_s={self.load_window_s}, "
                f"rate_min_span_s={self.rate_min_span_s})")

    # -- inputs -------------------------------------------------------------------------
    def arrive(self, frame: FrameMeta, now_s: float) -> None:
        """A frame reached the router (before any policy decides on it)."""
        if frame.camera not in self._rates:
            self._rates[frame.camera] = RateMeter(self.rate_window_s, self.rate_min_span_s)
        self._rates[frame.camera].update(now_s)
        self._all.update(now_s)
        if frame.size_bytes > 0:
            self._sizes.setdefault(frame.camera, Ewma(self.alpha)).update(frame.size_bytes)

    def dispatch(self, frame: FrameMeta, tier: Tier, now_s: float) -> None:
        """The router sent ``frame`` to ``tier``: count it and advance the virtual clocks."""
        key = (frame.camera, frame.seq)
        size = frame.size_bytes or int(self.size(frame.camera))
        self._out[tier][key] = (now_s, size)
        if tier == "edge":
            self._edge_in.update(now_s)
            self._edge_free = max(now_s, self._edge_free) + self.edge_s
        else:
            arrive = now_s + self.link.backlog_s(now_s) + self.link.wire_s(size) \
                + self.link.delay_s
            self.link.sent(key, size, now_s)
            cloud = self.profile.cloud
            share = self.cloud_scale * cloud.frame_s(cloud.max_batch) / cloud.servers
            self._cloud_free = max(arrive, self._cloud_free) + share

    def learn(self, obs: Observation, now_s: float) -> None:
        """One detection came back."""
        key = (obs.camera, obs.seq)
        out = self._out[obs.tier]
        known = key in out
        if known and obs.tier == "edge":
            while next(iter(out)) != key:  # the edge is FIFO: frames sent earlier are done
                out.popitem(last=False)
        out.pop(key, None)
        service = (obs.infer_ms + obs.decode_ms) / 1000
        other: Tier = "cloud" if obs.tier == "edge" else "edge"
        self.slowdown[obs.tier].update(self.finished(other, now_s), service)
        self._finished[obs.tier].append(now_s)
        self._pre.update((obs.ingest_ms + obs.route_ms) / 1000)
        if obs.back_ms is not None:
            self._back[obs.tier].update(obs.back_ms / 1000)
        if obs.tier == "edge":
            self._edge.update(min(service, 4 * self.edge_s))
            self._hop.update(obs.link_ms / 1000)
            self._hop_s = None
            self._edge_wait.update(max(0.0, (obs.link_ms + obs.queue_ms) / 1000 - self.hop_s))
            if known:
                done = (obs.ts_ms + obs.total_ms) / 1000
                self._edge_free = done + len(out) * self.edge_s
        else:
            self._cloud.update(min(service, 4 * self.cloud_frame_s))
            if obs.link_ms > 0:
                self.link.learn(key, obs.link_ms / 1000)
        if not obs.copy:  # a copy's latency is nobody's: the edge answered that frame
            self._done.append((now_s, obs.total_ms / 1000, obs.tier))
        while self._done and self._done[0][0] < now_s - self.stale_s:
            self._done.popleft()
        for q in self._out.values():
            while q and next(iter(q.values()))[0] < now_s - self.stale_s:
                q.popitem(last=False)

    # -- estimates ----------------------------------------------------------------------
    def rates(self, now_s: float) -> dict[str, float]:
        """Frames per second per camera over the recent window (idle cameras drop out)."""
        out = {cam: m.rate(now_s) for cam, m in self._rates.items()}
        for cam in [c for c, r in out.items() if r == 0.0]:
            del self._rates[cam], out[cam]
            self._sizes.pop(cam, None)
        return out

    def sending(self, now_s: float) -> dict[str, bool]:
        """Per camera in :meth:`rates`: whether its frames still come
        (:meth:`~autosteer.offload.estimate.RateMeter.sending`); a backlog camera that
        dumped its frames at once keeps a rate for a window but sends nothing more."""
        return {cam: m.sending(now_s) for cam, m in self._rates.items()}

    def size(self, camera: str) -> float:
        e = self._sizes.get(camera)
        if e is not None and e.value is not None:
            return e.value
        known = [s.value for s in self._sizes.values() if s.value is not None]
        return sum(known) / len(known) if known else 80_000.0

    @property
    def size_scv(self) -> float:
        scvs = [s.scv for s in self._sizes.values() if s.value is not None]
        return max(scvs) if scvs else 0.01

    @property
    def arrival_scv(self) -> float:
        """Burstiness of arrivals at the router (all cameras merged) over the last
        ``burst_window_s``: the index of dispersion of counts in ``burst_bin_s`` bins (about
        six edge service times; 1 = Poisson)."""
        return self._all.dispersion(bin_s=self.burst_bin_s)

    @property
    def edge_s(self) -> float:
        """Edge seconds per frame (telemetry, else the profile)."""
        return self._edge.get(self.profile.edge.frame_s(1))

    def edge_load(self, now_s: float) -> tuple[float, float]:
        """(utilization, mean queue wait in s) of the edge as measured lately: frames/s
        routed there times the service time, and the reported ``queue_ms``."""
        return self._edge_in.rate(now_s) * self.edge_s, self._edge_wait.get(0.0)

    @property
    def hop_s(self) -> float:
        """The hop from the router to the edge detector when nothing queues there (the 5%
        quantile of the last 256 edge frames' ``link_ms``: a backlog waiting before the
        detector's worker is queueing, not hop; 0 where the edge sits in the router)."""
        if self._hop_s is None:
            self._hop_s = self._hop.quantile(0.05)
        return self._hop_s

    def overhead_s(self, tier: Tier) -> float:
        """Time on ``tier``'s path outside the queues: capture -> routed (ingest, the
        router's own hop), on the edge the hop to its detector, and the result's way back
        beyond what the queues model (:meth:`back_s`)."""
        return (self._pre.get(0.0) + (self.hop_s if tier == "edge" else 0.0)
                + self.back_s(tier))

    def back_s(self, tier: Tier) -> float:
        """The result's way back to the router as measured (``Observation.back_ms``)
        beyond the link's one-way delay, which the cloud path already counts for it: all
        of it on the edge, the excess on the cloud. 0 where it is not measured apart (the
        simulator). On the testbed, with the broker on the cloud host, an edge result
        crosses the link too."""
        back = self._back[tier].value
        if back is None:
            return 0.0
        return back if tier == "edge" else max(0.0, back - self.link.delay_s)

    def finished(self, tier: Tier, now_s: float) -> float:
        """Frames per second ``tier`` finished lately (seen back in the last
        ``load_window_s``): the load it puts on cores it may share with the other tier."""
        q = self._finished[tier]
        while q and q[0] < now_s - self.load_window_s:
            q.popleft()
        return len(q) / self.load_window_s

    def contention(self, now_s: float) -> tuple[float, float]:
        """Edge and cloud service times now over their times alone (1.0 when the tiers do
        not share cores, as far as telemetry shows)."""
        return (self.slowdown["edge"].factor(self.finished("cloud", now_s)),
                self.slowdown["cloud"].factor(self.finished("edge", now_s)))

    @property
    def edge_scv(self) -> float:
        return self._edge.scv if self._edge.n else self.profile.edge.scv

    @property
    def cloud_frame_s(self) -> float:
        """Cloud seconds per frame as reported (a share of its batch)."""
        return self._cloud.get(self.profile.cloud.frame_s(1))

    @property
    def cloud_scale(self) -> float:
        """Measured over profiled cloud time per frame (the batch size is not observed, so
        the profile is read at batch 1: an upper bound on the batch's per-frame cost)."""
        return self.cloud_frame_s / self.profile.cloud.frame_s(1)

    @property
    def edge_scale(self) -> float:
        return self.edge_s / self.profile.edge.frame_s(1)

    def outstanding(self, tier: Tier) -> int:
        """Frames sent to ``tier`` and not seen back yet (its queue, as the router sees it)."""
        return len(self._out[tier])

    def completion_s(self, tier: Tier, size_bytes: int, now_s: float) -> float:
        """Predicted seconds until a frame sent to ``tier`` now has its result back, from
        virtual clocks of the edge queue, the wire and the cloud (resynchronised by
        observations)."""
        if tier == "edge":
            return max(now_s, self._edge_free) - now_s + self.edge_s
        link = self.link
        arrive = now_s + link.backlog_s(now_s) + link.wire_s(size_bytes) + link.delay_s
        cloud = self.profile.cloud
        return (max(arrive, self._cloud_free) - now_s + self.cloud_scale * cloud.service_s(1)
                + link.delay_s)

    def soonest_s(self, size_bytes: int, now_s: float) -> float:
        """The soonest a frame of ``size_bytes`` routed now could have its result back, in
        seconds from now: the edge (plus the hop to its detector), or the cloud at any of
        the profile's quality levels (encode, then the level's bytes on the wire). What
        :class:`~autosteer.offload.slo.SloRule` calls hopeless is judged on this, the same
        for every policy."""
        edge = self.completion_s("edge", size_bytes, now_s) + self.hop_s + self.back_s("edge")
        cloud = self.back_s("cloud") + min(lv.encode_s + self.completion_s(
            "cloud", max(1, int(size_bytes * lv.bytes_ratio)), now_s)
            for lv in self.profile.levels)
        return min(edge, cloud)

    def backlog(self, tier: Tier, now_s: float) -> tuple[list[float], float]:
        """What ``tier`` still holds: the ages (s since capture, oldest first) of the
        frames sent there and not seen back, and the seconds until its virtual clock is
        free of them (the edge queue; for the cloud, the wire and the cloud's queue). The
        known backlog a transient prediction drains
        (:func:`~autosteer.offload.queueing.drain_mean`)."""
        pre = self._pre.get(0.0)
        ages = [now_s - sent + pre for sent, _ in self._out[tier].values()]
        free = self._edge_free if tier == "edge" else self._cloud_free
        return ages, max(0.0, free - now_s)

    def recent(self, since_s: float, tier: Tier | None = None) -> list[float]:
        """End-to-end seconds (result back at the router) of frames seen since ``since_s``."""
        return [e for t, e, k in self._done if t >= since_s and (tier is None or k == tier)]
