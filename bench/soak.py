"""Soak: the demo pipeline (RTSP camera -> ingest -> router -> edge/cloud -> results ->
telemetry sink) for N minutes; reports worker RSS over time, lag and lost frames.

Lag is counted in the application (tansu's high watermark is unreliable): frames the
camera put on the input topic minus frames that have a result. Lost = frames sent that
never got a result after the camera stopped and the pipeline drained. A result is not
always a detection: frames shed for their age (``status: "shed"``) or given an earlier
frame's boxes (``"reused"``) are counted apart (``frames_shed``, ``frames_reused``), and
only ``status: "ok"`` results count as ``frames_detected``.

    python bench/soak.py --minutes 30      # by hand
    python bench/soak.py --quick           # 1 minute (CI-sized)

Last line: JSON with rss_growth (after a warm-up), max_lag, frames_lost and the rest.
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

import psutil
from autosteer.infra.broker import LocalBroker
from autosteer.infra.process import free_port
from autosteer.infra.rtsp import RtspTestServer
from autosteer.infra.sample import ensure_sample_video
from autosteer.infra.worker import WorkerProcess
from autosteer.processors.prepare import prepare_models
from autosteer.settings import Settings
from autosteer.topics.admin import ensure_topics
from autosteer.topics.names import TopicNames
from autosteer.topics.records import CameraCommand, Detection
from confluent_kafka import Consumer, Producer


def status(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
        return json.load(r)


def result_counts(by_status: dict[str, set[int]]) -> dict[str, int]:
    """Frames per outcome from ``status -> seqs``: only ``"ok"`` is detected work.

    >>> result_counts({"ok": {0, 1}, "shed": {2, 3}})
    {'frames_detected': 2, 'frames_shed': 2, 'frames_reused': 0}
    """
    ok = by_status.get("ok", set())
    return {"frames_detected": len(ok),
            "frames_shed": len(by_status.get("shed", set()) - ok),
            "frames_reused": len(by_status.get("reused", set()) - ok)}


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--quick", action="store_true", help="1 minute")
    ap.add_argument("--fps", type=float, default=10.0)
    args = ap.parse_args()
    minutes = 1.0 if args.quick else args.minutes
    base = Settings()
    video = ensure_sample_video(base.sample_video)
    prepare_models(base.model_dir, video)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = LocalBroker(free_port(), tmp)
        rtsp = RtspTestServer(video, free_port(), tmp, fps=int(args.fps))
        broker.start()
        rtsp.start()
        s = base.model_copy(update={
            "kafka_bootstrap": broker.bootstrap, "topic_prefix": f"soak{uuid.uuid4().hex[:6]}",
            "store": "embedded", "chdb_path": tmp / "chdb", "web_port": free_port(),
            "state_dir": tmp, "node": "soak"})
        ensure_topics(s)
        names = TopicNames(s.topic_prefix)
        worker = WorkerProcess(s, tmp / "worker.log", loglevel="warning")
        consumer = Consumer(s.consumer_config(f"soak-{uuid.uuid4().hex[:6]}"))
        samples: list[dict] = []
        seen: set[int] = set()
        by_status: dict[str, set[int]] = {}  # status -> seqs: "ok" is the detected work
        try:
            worker.start(create_topics=False)
            consumer.subscribe([names.detections])
            prod = Producer(s.producer_config())
            prod.produce(names.cameras, key=b"soak", value=CameraCommand(
                action="start", camera="soak", url=rtsp.url, max_fps=args.fps).dumps())
            prod.flush(10)
            proc = psutil.Process(worker.pid)
            t0 = time.monotonic()
            next_sample = t0
            while time.monotonic() - t0 < minutes * 60:
                m = consumer.poll(0.2)
                if m is not None and not m.error():
                    d = Detection.parse(m.value())
                    if d.camera == "soak":
                        seen.add(d.seq)
                        by_status.setdefault(d.status, set()).add(d.seq)
                if time.monotonic() >= next_sample:
                    next_sample += 5.0
                    cam = status(s.web_port)["cameras"].get("soak", {})
                    sent = int(cam.get("frames_sent", 0))
                    samples.append({"t": round(time.monotonic() - t0, 1),
                                    "rss_mb": round(proc.memory_info().rss / 2**20, 1),
                                    "sent": sent, "done": len(seen), "lag": sent - len(seen),
                                    "dropped": cam.get("frames_dropped", 0)})
                    print(json.dumps(samples[-1]), flush=True)
            cam = status(s.web_port)["cameras"].get("soak", {})
            prod.produce(names.cameras, key=b"soak",
                         value=CameraCommand(action="stop", camera="soak").dumps())
            prod.flush(10)
            time.sleep(2)
            # The camera leaves /status when stopped: its last numbers, plus what it sent
            # between that reading and the stop. Seqs are contiguous from 0, so a result
            # with a higher seq proves that frame was sent too: ``sent`` grows with the
            # results that arrive while draining (counting them against the earlier,
            # smaller ``sent`` once reported frames_with_result == frames_sent next to
            # frames_lost 2: results past it filled the count, not the gaps). Drain until
            # every frame below the highest seq seen has a result, or 60 s.
            last_sent = int(cam.get("frames_sent", 0))

            def sent_now() -> int:
                return max(last_sent, max(seen, default=-1) + 1)

            drain_until = time.monotonic() + 60
            while len(seen) < sent_now() and time.monotonic() < drain_until:
                m = consumer.poll(0.5)
                if m is not None and not m.error():
                    d = Detection.parse(m.value())
                    if d.camera == "soak":
                        seen.add(d.seq)
                        by_status.setdefault(d.status, set()).add(d.seq)
            sent = sent_now()
        finally:
            consumer.close()
            worker.stop()
            rtsp.stop()
            broker.stop()
    warm = [x for x in samples if x["t"] >= min(60.0, minutes * 60 / 3)]
    rss0 = warm[0]["rss_mb"] if warm else samples[0]["rss_mb"]
    rss1 = samples[-1]["rss_mb"]
    print(json.dumps({
        "bench": "soak", "minutes": minutes, "frames_sent": sent, "frames_with_result": len(seen),
        "frames_lost": len(set(range(sent)) - seen),  # == frames_sent - frames_with_result
        **result_counts(by_status), "max_lag": max(x["lag"] for x in samples),
        "frames_dropped": int(cam.get("frames_dropped", 0)),
        "rss_start_mb": rss0, "rss_end_mb": rss1,
        "rss_growth": round((rss1 - rss0) / rss0, 4)}))


if __name__ == "__main__":
    main()
