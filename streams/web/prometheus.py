"""Prometheus text format: histograms, metric families, and this worker's metrics."""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autosteer.streams.web.live import CounterRates, LiveView
    from autosteer.streams.worker import WorkerView


log = logging.getLogger(__name__)

TIERS = ("edge", "cloud")
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)



class Histogram:
    """Cumulative-bucket histogram of observations (for ``/metrics``).

    >>> h = Histogram((0.1, 1.0))
    >>> for v in (0.05, 0.5, 0.5, 3.0):
    ...     h.observe(v)
    >>> h.cumulative(), h.count, h.sum
    ([(0.1, 1), (1.0, 3), (inf, 4)], 4, 4.05)
    """

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS_S) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, v)] += 1
        self.count += 1
        self.sum += v

    def cumulative(self) -> list[tuple[float, int]]:
        out, n = [], 0
        for le, c in zip((*self.bounds, math.inf), self.counts, strict=True):
            n += c
            out.append((le, n))
        return out


@dataclass
class Family:
    """One metric family: its samples are (name suffix, labels, value)."""

    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: Any) -> Family:
        self.samples.append((suffix, {k: str(v) for k, v in labels.items()}, float(value)))
        return self

    def add_histogram(self, h: Histogram, **labels: Any) -> Family:
        for le, n in h.cumulative():
            self.add(n, "_bucket", **labels, le=_num(le))
        self.add(h.sum, "_sum", **labels)
        return self.add(h.count, "_count", **labels)


def _num(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def exposition(families: Iterable[Family]) -> str:
    """Families in the Prometheus text format (version 0.0.4).

    >>> print(exposition([Family("x_total", "counter", "Things.").add(3, tier='e"dge')]))
    # HELP x_total Things.
    # TYPE x_total counter
    x_total{tier="e\\"dge"} 3
    <BLANKLINE>
    """
    lines = []
    for f in families:
        lines.append(f"# HELP {f.name} {f.help.replace(chr(92), chr(92) * 2)}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        for suffix, labels, value in f.samples:
            lab = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            lines.append(f"{f.name}{suffix}{{{lab}}} {_num(value)}" if lab
                         else f"{f.name}{suffix} {_num(value)}")
    return "\n".join(lines) + "\n"


# --- live state of this worker ----------------------------------------------------------


def rounded(v: float | None, nd: int = 2) -> float | None:
    """``v`` rounded to ``nd`` digits (None stays None)."""
    return None if v is None else round(v, nd)


def _queue_depths(app: Any) -> dict[str, int]:
    """Messages waiting in each agent's stream buffer."""
    out: dict[str, int] = {}
    for name, agent in list(app.agents.items()):
        n = 0
        for actor in list(getattr(agent, "_actors", ())):
            try:
                n += int(actor.stream.channel.queue.qsize())
            except Exception:
                continue
        out[str(name)] = n
    return out


def _consumer_lag(app: Any) -> dict[tuple[str, int], int]:
    """Per assigned partition: end offset minus committed (or read) offset."""
    mon = app.monitor
    try:
        assigned = set(app.consumer.assignment())
    except Exception:
        assigned = None
    out = {}
    for tp, end in list(mon.tp_end_offsets.items()):
        if assigned is not None and tp not in assigned:
            continue
        done = mon.tp_committed_offsets.get(tp)
        if done is None and tp in mon.tp_read_offsets:
            done = mon.tp_read_offsets[tp] + 1
        if done is not None:
            out[(tp.topic, tp.partition)] = max(0, int(end) - int(done))
    return out


def metric_families(view: WorkerView, app: Any, live: LiveView,
                    meter: CounterRates) -> list[Family]:
    """This worker's metrics: counters since it started, latency histograms of the
    detections it published, queue depths, consumer lag, models in use."""
    s, c = view.settings, view.counts()
    node_info = Family("autosteer_node_info", "gauge", "This worker: node name and roles.")
    node_info.add(1, node=s.node, roles=",".join(sorted(view.roles)))
    routed = Family("autosteer_frames_routed_total", "counter",
                    "Frames the router sent to each tier.")
    detected = Family("autosteer_frames_detected_total", "counter",
                      "Frames each tier's detector published detections for.")
    for t in TIERS:
        routed.add(c[f"routed_{t}"], tier=t)
        detected.add(c[f"detected_{t}"], tier=t)
    plain = [Family(f"autosteer_{name}_total", "counter", text).add(c[attr])
             for name, attr, text in (
                 ("dead_letters", "dead_letters", "Messages sent to the dead-letter topic."),
                 ("send_failures", "send_failures", "Produce requests that failed."),
                 ("telemetry_rows", "telemetry_rows", "Telemetry rows the sink stored."),
                 ("store_retries", "store_retries", "Failed telemetry store writes (retried)."),
                 ("frames_shed", "frames_shed", "Frames this worker answered status shed: "
                  "detectors, for their age (AUTOSTEER_MAX_FRAME_AGE_MS); the router, when no "
                  "tier could meet AUTOSTEER_SLO_MS."))]
    plain.append(Family("autosteer_frames_reused_total", "counter", "Frames this worker's "
                        "router answered with their camera's last detection (motion gate, "
                        "AUTOSTEER_MOTION_GATE); never detected.").add(c.get("frames_reused", 0)))
    cam_frames = Family("autosteer_camera_frames_total", "counter",
                        "Camera frames read, sent, skipped (fps cap) and dropped (producer "
                        "full) by this worker's ingest.")
    cam_up = Family("autosteer_camera_up", "gauge", "1 while the camera is streaming.")
    for name, ing in sorted(view.cameras().items()):
        st = ing.stats
        for outcome in ("read", "sent", "skipped", "dropped"):
            cam_frames.add(getattr(st, f"frames_{outcome}"), camera=name, outcome=outcome)
        cam_up.add(1 if st.state == "streaming" else 0, camera=name)
    cam_det = Family("autosteer_camera_frames_detected_total", "counter",
                     "Detections this worker published, per camera.")
    for name, cl in sorted(live.cameras.items()):
        if cl.detected:
            cam_det.add(cl.detected, camera=name)
    latency = Family("autosteer_detection_latency_seconds", "histogram",
                     "Latency of the detections this worker published: total (capture to "
                     "published), infer (model) and queue (waiting for the detector).")
    for (tier, stage), h in sorted(live.latency.items()):
        latency.add_histogram(h, tier=tier, stage=stage)
    edge, cloud = (meter.rate(f"routed_{t}") for t in TIERS)
    offload = Family("autosteer_offload_ratio", "gauge",
                     "Share of frames this worker's router sent to the cloud tier over the "
                     "last 5 s (since start when none came meanwhile; NaN before the first).")
    windowed = edge is not None and cloud is not None and edge + cloud > 0
    offload.add(cloud / (edge + cloud) if windowed else view.offload_ratio())  # type: ignore[operator]
    depth = Family("autosteer_queue_depth", "gauge", "Messages waiting in each agent's buffer.")
    for agent, n in sorted(_queue_depths(app).items()):
        depth.add(n, agent=agent)
    lag = Family("autosteer_consumer_lag", "gauge",
                 "Messages behind the end of each assigned partition (committed offset).")
    for (topic, part), n in sorted(_consumer_lag(app).items()):
        lag.add(n, topic=topic, partition=part)
    broker_lag = Family("autosteer_broker_consumer_lag", "gauge",
                        "Per topic and consumer group of this deployment: the partitions' "
                        "high watermarks minus the group's committed offsets, as the broker "
                        "reports them (Kafka only: tansu's watermarks are wrong).")
    for (topic, group), n in sorted(view.broker_lag().items()):
        broker_lag.add(n, topic=topic, group=group, source="broker")
    delivery = Family("autosteer_delivery_info", "gauge",
                      "The delivery guarantee of this worker's detection results.")
    delivery.add(1, guarantee=view.delivery.guarantee)
    model = Family("autosteer_model_info", "gauge",
                   "Model each detector tier of this worker last used.")
    for tier, (mid, ver, _) in sorted(live.models.items()):
        model.add(1, tier=tier, model_id=mid, model_version=ver)
    sensor_errors = Family("autosteer_ui_sensor_errors_total", "counter",
                           "Messages the UI sensor could not read (see the worker log).")
    sensor_errors.add(live.errors)
    return [node_info, routed, detected, *plain, cam_frames, cam_up, cam_det, latency,
            offload, depth, lag, broker_lag, delivery, model, sensor_errors,
            *agent_families(view.health)]


def agent_families(health: Any) -> list[Family]:
    """Per agent and consumer thread: restarts, crashes, up, and the age of its last
    progress (what ``/ready`` judges)."""
    restarts = Family("autosteer_agent_restarts_total", "counter",
                      "Times each agent or consumer thread was restarted after a crash.")
    up = Family("autosteer_agent_up", "gauge",
                "1 while the agent runs (0 while crashed or stalled with work waiting).")
    age = Family("autosteer_agent_progress_age_seconds", "gauge",
                 "Seconds since each agent or thread last finished a batch (or poll).")
    for a in health.snapshot():
        restarts.add(a["restarts"], agent=a["name"], kind=a["kind"])
        up.add(1 if a["state"] == "running" else 0, agent=a["name"], kind=a["kind"])
        age.add(a["progress_age_s"], agent=a["name"], kind=a["kind"])
    return [restarts, up, age]
