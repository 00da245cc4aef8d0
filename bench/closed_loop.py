"""The closed loop on the real pipeline: at t0 night falls on the RTSP camera (contrast
x0.12); drift on the shadow pairs asks for retraining; the retrainer re-quantizes the
edge model on the cloud's answers; the new version is canaried and promoted; the edge's
agreement with the cloud recovers. No restart.

Anchor: the agreement before the drift (the same camera, the same models).

    python bench/closed_loop.py            # 60 s of day, then up to 4 min of night
    python bench/closed_loop.py --quick    # 40 s of day, up to 150 s of night

Writes bench/results/closed_loop.svg (agreement, edge confidence, with the events) and
prints a last JSON line with recovered_fraction, recovery_s, frames_lost.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from autosteer.infra.broker import LocalBroker
from autosteer.infra.process import free_port
from autosteer.infra.rtsp import RtspTestServer
from autosteer.infra.sample import ensure_sample_video
from autosteer.infra.worker import WorkerProcess
from autosteer.processors.prepare import prepare_models
from autosteer.retrain.records import ModelUpdate, RetrainRequest
from autosteer.settings import Settings
from autosteer.telemetry.report import line_chart
from autosteer.topics.admin import ensure_topics
from autosteer.topics.names import TopicNames
from autosteer.topics.records import CameraCommand, Detection, QualityRecord
from confluent_kafka import Consumer, Producer

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    day_s, night_max_s = (40.0, 150.0) if args.quick else (60.0, 240.0)
    base = Settings()
    video = ensure_sample_video(base.sample_video)
    prepare_models(base.model_dir, video)
    events: list[tuple[float, str]] = []
    quality: list[tuple[float, QualityRecord]] = []
    seen: set[int] = set()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = LocalBroker(free_port(), tmp)
        rtsp = RtspTestServer(video, free_port(), tmp, fps=10)
        broker.start()
        rtsp.start()
        s = base.model_copy(update={
            "kafka_bootstrap": broker.bootstrap, "topic_prefix": f"loop{uuid.uuid4().hex[:6]}",
            "roles": "router,edge,cloud,ingest,retrain", "offload_policy": "fixed",
            "edge_ratio": 0.8, "shadow_rate": 0.3, "drift_warmup": 15,
            "retrain_requantize": True, "retrain_collect_s": 10.0, "canary_share": 0.5,
            "registry_dir": tmp / "registry", "web_port": free_port(), "state_dir": tmp,
            "node": "loop"})
        ensure_topics(s)
        names = TopicNames(s.topic_prefix)
        worker = WorkerProcess(s, tmp / "worker.log", loglevel="warning")
        consumer = Consumer(s.consumer_config(f"loop-{uuid.uuid4().hex[:6]}"))
        sent = 0
        try:
            worker.start(create_topics=False)
            consumer.subscribe([names.quality, names.retrain_requests, names.models_updates,
                                names.detections])
            prod = Producer(s.producer_config())
            prod.produce(names.cameras, key=b"cam1", value=CameraCommand(
                action="start", camera="cam1", url=rtsp.url, max_fps=5).dumps())
            prod.flush(10)
            t0 = time.monotonic()
            night_at = None
            promoted_at = None
            while True:
                now = time.monotonic() - t0
                if night_at is None and now >= day_s:
                    rtsp.night()
                    night_at = now
                    events.append((now, "night falls"))
                    print(f"t={now:.0f}s night falls", flush=True)
                if night_at is not None and (now - night_at > night_max_s or (
                        promoted_at is not None and now - promoted_at > 30)):
                    break
                m = consumer.poll(0.2)
                if m is None or m.error():
                    continue
                topic = m.topic()
                if topic == names.quality:
                    quality.append((now, QualityRecord.parse(m.value())))
                elif topic == names.detections:
                    seen.add(Detection.parse(m.value()).seq)
                elif topic == names.retrain_requests:
                    req = RetrainRequest.parse(m.value())
                    events.append((now, "retrain requested"))
                    print(f"t={now:.0f}s retrain requested: {req.reason}", flush=True)
                elif topic == names.models_updates:
                    up = ModelUpdate.parse(m.value())
                    what = ("promoted" if up.canary >= 1 else "rolled back" if up.canary == 0
                            else f"canary {up.canary:.0%}")
                    events.append((now, f"{up.version} {what}"))
                    print(f"t={now:.0f}s model {up.version}: {what} {up.metrics}", flush=True)
                    if up.canary >= 1:
                        promoted_at = now
            with urllib.request.urlopen(f"http://127.0.0.1:{s.web_port}/status", timeout=5) as r:
                sent = int(json.load(r)["cameras"]["cam1"]["frames_sent"])
            prod.produce(names.cameras, key=b"cam1",
                         value=CameraCommand(action="stop", camera="cam1").dumps())
            prod.flush(10)
            drain = time.monotonic() + 30
            while len(seen) < sent and time.monotonic() < drain:
                m = consumer.poll(0.5)
                if m is not None and not m.error() and m.topic() == names.detections:
                    seen.add(Detection.parse(m.value()).seq)
        finally:
            consumer.close()
            worker.stop()
            rtsp.stop()
            broker.stop()

    night = night_at if night_at is not None else float("inf")
    before = [q.agreement for t, q in quality if day_s / 2 <= t < night]
    pre = statistics.mean(before) if before else float("nan")
    dark = [q.agreement for t, q in quality if night + 5 <= t and
            (promoted_at is None or t < promoted_at)]
    after = [q.agreement for t, q in quality if promoted_at is not None and t >= promoted_at + 3]
    recovered = statistics.mean(after) / pre if after and pre == pre else 0.0
    recovery_s = None
    if promoted_at is not None:  # first 10 s window after the swap at >= 95 % of before
        for t, _ in quality:
            if t < promoted_at:
                continue
            w = [q.agreement for u, q in quality if t <= u < t + 10]
            if len(w) >= 3 and statistics.mean(w) >= 0.95 * pre:
                recovery_s = round(t + 10 - night, 1)
                break
    RESULTS.mkdir(exist_ok=True)
    roll = []
    for i, (t, _) in enumerate(quality):
        w = [q.agreement for u, q in quality[max(0, i - 9):i + 1]]
        roll.append((t, statistics.mean(w)))
    conf = [(t, q.edge_mean_score) for t, q in quality]
    title = "; ".join(f"{t:.0f}s {e}" for t, e in events)
    svg = line_chart({"agreement (10-pair mean)": roll, "edge mean confidence": conf},
                     f"closed loop: {title}", "", width=900)
    (RESULTS / "closed_loop.svg").write_text(svg)
    print(json.dumps({
        "bench": "closed_loop", "quick": args.quick, "agreement_before": round(pre, 3),
        "agreement_in_the_dark": round(statistics.mean(dark), 3) if dark else None,
        "agreement_after": round(statistics.mean(after), 3) if after else None,
        "recovered_fraction": round(recovered, 3), "recovery_s": recovery_s,
        "frames_sent": sent, "frames_lost": len(set(range(sent)) - seen),
        "events": [f"{t:.0f}s {e}" for t, e in events]}))


if __name__ == "__main__":
    main()
