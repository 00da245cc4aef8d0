"""The closed loop on the real pipeline: at t0 night falls on the RTSP camera (contrast
x0.12); drift on the shadow pairs asks for retraining; the retrainer re-quantizes the
edge model on the cloud's answers (its stem kept in FP32); the new version is canaried
and promoted; the edge's agreement with the cloud recovers. No restart. The settings are
``autosteer demo --drift``'s (``streams.demo.DRIFT_DEMO``).

Anchor: the agreement before the drift (the same camera, the same models).

    python bench/closed_loop.py            # 60 s of day, then up to 4 min of night
    python bench/closed_loop.py --quick    # 40 s of day, up to 150 s of night

Writes bench/results/closed_loop.svg (agreement, edge confidence and latency over time,
the events marked) and
prints a last JSON line with recovered_fraction, recovery_s, frames_lost.
"""

from __future__ import annotations

import argparse
import json
import signal
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
from autosteer.settings import Settings
from autosteer.streams.demo import DRIFT_DEMO
from autosteer.streams.loop_watch import LoopWatch
from autosteer.topics.admin import ensure_topics
from autosteer.topics.records import CameraCommand
from confluent_kafka import Producer

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
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = LocalBroker(free_port(), tmp)
        rtsp = RtspTestServer(video, free_port(), tmp, fps=10)
        broker.start()
        rtsp.start()
        s = base.model_copy(update={
            "kafka_bootstrap": broker.bootstrap, "topic_prefix": f"loop{uuid.uuid4().hex[:6]}",
            "state_dir": tmp, "registry_dir": tmp / "registry", "web_port": free_port(),
            "node": "loop", **DRIFT_DEMO})
        ensure_topics(s)
        worker = WorkerProcess(s, tmp / "worker.log", loglevel="warning")
        watch = None
        sent = 0
        try:
            worker.start(create_topics=False)
            watch = LoopWatch(s)
            prod = Producer(s.producer_config())
            names = watch.names
            prod.produce(names.cameras, key=b"cam1", value=CameraCommand(
                action="start", camera="cam1", url=rtsp.url, max_fps=5).dumps())
            prod.flush(10)
            watch.follow(rtsp.night, day_s, night_max_s, settle_s=30.0,
                         echo=lambda line: print(line, flush=True))
            with urllib.request.urlopen(f"http://127.0.0.1:{s.web_port}/status", timeout=5) as r:
                sent = int(json.load(r)["cameras"]["cam1"]["frames_sent"])
            prod.produce(names.cameras, key=b"cam1",
                         value=CameraCommand(action="stop", camera="cam1").dumps())
            prod.flush(10)
            drain = time.monotonic() + 30
            while len(watch.seen) < sent and time.monotonic() < drain:
                watch.poll(0.5)
        finally:
            if watch is not None:
                watch.close()
            worker.stop()
            rtsp.stop()
            broker.stop()

    score = watch.score(day_from_s=day_s / 2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "closed_loop.svg").write_text(watch.chart())
    lost = set(range(sent)) - {seq for cam, seq in watch.seen if cam == "cam1"}
    print(json.dumps({
        "bench": "closed_loop", "quick": args.quick, **score.as_dict(),
        "frames_sent": sent, "frames_lost": len(lost),
        "events": [f"{t:.0f}s {e}" for t, e in watch.events]}))


if __name__ == "__main__":
    main()
