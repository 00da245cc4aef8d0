"""Does Faust ``processing_guarantee="exactly_once"`` (aiokafka transactions) work against
Apache Kafka 4.x? A yes/no proof on the local 3-node cluster.

    python bench/faust_exactly_once.py [--messages 300] [--kill]

It starts a ``LocalKafkaCluster`` in a temporary directory, fills topic ``eos-in`` with
numbered messages, and runs a Faust worker (a child process) whose one agent copies every
message to ``eos-out`` under ``exactly_once``. With ``--kill`` the worker is SIGKILLed once
part of the output is committed, and started again. A ``read_committed`` consumer then
counts each number on ``eos-out``: exactly once means 0 missing and 0 duplicates.
Prints one JSON line with the verdict and the counts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

IN, OUT = "eos-in", "eos-out"


def worker(bootstrap: str, datadir: str, guarantee: str) -> None:
    """The Faust worker: copy eos-in to eos-out under ``guarantee``."""
    import asyncio

    import faust

    app = faust.App(
        "eos-proof", broker=";".join(f"kafka://{h}" for h in bootstrap.split(",")),
        processing_guarantee=guarantee, topic_disable_leader=True, topic_allow_declare=False,
        web_enabled=False, datadir=datadir, key_serializer="raw", value_serializer="raw",
        broker_commit_interval=0.5, consumer_auto_offset_reset="earliest", autodiscover=False,
        producer_acks=-1,
    )
    source = app.topic(IN, partitions=4)
    sink = app.topic(OUT, partitions=4)

    @app.agent(source)
    async def copy(stream):  # noqa: ANN001 - Faust's stream
        async for event in stream.events():
            await asyncio.sleep(0.03)  # "processing": slow enough to kill mid-stream
            await sink.send(key=event.key, value=event.value)

    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()


def count_committed(bootstrap: str, isolation: str, expect: int, timeout_s: float,
                    settle: bool = True) -> Counter:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"eos-check-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "isolation.level": isolation,
                  "enable.auto.commit": False})
    c.subscribe([OUT])
    seen: Counter = Counter()
    deadline = time.monotonic() + timeout_s
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                if len(seen) >= expect:
                    quiet_until = quiet_until or time.monotonic() + 3
                    if time.monotonic() > quiet_until:
                        break
                continue
            seen[int(m.value())] += 1
            if not settle and len(seen) >= expect:
                break
    finally:
        c.close()
    return seen


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=300)
    p.add_argument("--kill", action="store_true", help="SIGKILL the worker mid-stream once")
    p.add_argument("--guarantee", default="exactly_once")
    p.add_argument("--partitioner", default="consistent_random",
                   help="librdkafka partitioner of the input (murmur2_random: Faust's)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from autosteer.infra.kafka import LocalKafkaCluster
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    tmp = Path(tempfile.mkdtemp(prefix="eos-"))
    cluster = LocalKafkaCluster(tmp)
    cluster.start()
    procs: list[subprocess.Popen] = []
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        for fut in admin.create_topics([NewTopic(t, 4, 3) for t in (IN, OUT)]).values():
            fut.result(30)
        prod = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                         "enable.idempotence": True, "partitioner": args.partitioner})
        for i in range(args.messages):
            prod.produce(IN, key=str(i % 16).encode(), value=str(i).encode())
        assert prod.flush(30) == 0

        def start() -> subprocess.Popen:
            logf = open(tmp / f"worker-{len(procs)}.log", "wb")  # noqa: SIM115
            proc = subprocess.Popen(
                [sys.executable, __file__, "--worker", cluster.bootstrap,
                 str(tmp / f"faust-{len(procs)}"), args.guarantee],
                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(proc)
            return proc

        started = time.monotonic()
        w = start()
        if args.kill:
            part = count_committed(cluster.bootstrap, "read_committed", args.messages // 3, 90,
                                   settle=False)
            os.killpg(w.pid, signal.SIGKILL)
            w.wait()
            killed_after = len(part)
            start()
        seen = count_committed(cluster.bootstrap, "read_committed", args.messages, 150)
        raw = count_committed(cluster.bootstrap, "read_uncommitted", args.messages, 20)
        missing = sorted(set(range(args.messages)) - set(seen))
        dupes = sum(n - 1 for n in seen.values() if n > 1)
        logs = "".join((tmp / f"worker-{i}.log").read_text(errors="replace")[-3000:]
                       for i in range(len(procs)))
        result = {
            "kafka": cluster.version, "guarantee": args.guarantee,
            "input_partitioner": args.partitioner, "messages": args.messages,
            "killed": args.kill, "committed_seen_before_kill": killed_after if args.kill else None,
            "read_committed_distinct": len(seen), "missing": len(missing),
            "duplicates_read_committed": dupes,
            "duplicated": sorted(n for n, c in seen.items() if c > 1),
            "records_read_uncommitted": sum(raw.values()),
            "seconds": round(time.monotonic() - started, 1),
            "exactly_once": not missing and dupes == 0,
        }
        print(json.dumps(result))
        if not result["exactly_once"]:
            print(logs, file=sys.stderr)
        return 0 if result["exactly_once"] else 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        cluster.stop()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(main())
