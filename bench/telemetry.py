"""Telemetry throughput and sketch accuracy, each against its anchor in the same run.

1. insert: rows/s through the exactly-once ``Sink`` into a ClickHouse server vs a raw
   clickhouse-driver columnar insert of the same rows (same columns, same batch size),
   each into its own fresh table, the anchor first in even rounds.
2. agent: telemetry messages/s from the topic through a worker's Faust sink agents into
   ClickHouse vs a raw aiokafka consumer that only reads the same topic.
3. sketch: seeded lognormal latencies through the node's ``WindowAggregator`` in 10
   windows, stored, then p99 merged by SQL alone (quantileExactWeighted over ARRAY JOIN)
   vs the exact p99: rank error, value error, and stored rows/values vs raw rows.

    python bench/telemetry.py            # full
    python bench/telemetry.py --quick    # CI-sized

Last line: one JSON object with insert_ratio, agent_ratio, p99_rank_error, row_reduction.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from autosteer.infra.broker import LocalBroker
from autosteer.infra.clickhouse import LocalClickHouse
from autosteer.infra.process import free_port
from autosteer.infra.worker import WorkerProcess
from autosteer.settings import Settings
from autosteer.telemetry.schema import FRAMES, WINDOWS
from autosteer.telemetry.sink import Position, Positions, Sink
from autosteer.telemetry.store import EmbeddedStore, ServerStore
from autosteer.telemetry.window import Sample, WindowAggregator
from autosteer.topics.names import TopicNames
from autosteer.topics.records import TelemetryRecord
from confluent_kafka import Producer

T0 = 1_763_000_000_000


def records(n: int, seed: int = 1) -> list[TelemetryRecord]:
    rng = np.random.default_rng(seed)
    lat = rng.lognormal(3.5, 0.6, n)
    return [TelemetryRecord(
        ts_ms=T0 + i * 10, node=f"n{i % 4}", camera=f"cam{i % 16}", seq=i,
        tier="edge" if i % 3 else "cloud", model_id="ssd", model_version="1", batch_size=4,
        queue_depth=i % 9, ingest_ms=2.0, route_ms=1.0, queue_ms=5.0, decode_ms=2.5,
        infer_ms=20.0, total_ms=float(lat[i]), n_detections=i % 8, max_score=0.9,
        mean_score=0.6) for i in range(n)]


# --- 1. insert -------------------------------------------------------------------------
def bench_insert(url: str, recs: list[TelemetryRecord], batch: int, rounds: int) -> dict:
    from clickhouse_driver import Client

    rows = [FRAMES.to_row(r) for r in recs]
    raw_client = Client.from_url(url.rsplit("/", 1)[0] + "/default")
    ours, raw = [], []
    server = url.rsplit("/", 1)[0]
    full = [(*row, "t", 0, j) for j, row in enumerate(rows)]
    # both sides get their source positions ready-made, as the loader hands them over
    # (Positions, built while parsing) and as the raw insert's rows carry them
    batches = [(rows[i:i + batch], Positions.of(Position("t", 0, j) for j in range(
        i, min(i + batch, len(rows))))) for i in range(0, len(rows), batch)]

    def sink_rate() -> float:
        store = ServerStore(f"{server}/bench_ins_{uuid.uuid4().hex[:6]}")
        store.setup()
        sink = Sink(store)
        t0 = time.perf_counter()
        for chunk, positions in batches:
            sink.write(FRAMES, chunk, positions)
        rate = len(rows) / (time.perf_counter() - t0)
        _, stored = store.query(f"SELECT count() FROM {store.database}.{FRAMES.name}")
        store.close()
        if stored[0][0] != len(rows):
            raise SystemExit(f"the sink stored {stored[0][0]} of {len(rows)} rows")
        return rate

    def raw_rate() -> float:
        store = ServerStore(f"{server}/bench_raw_{uuid.uuid4().hex[:6]}")
        store.setup()  # its own fresh table: not one the other side's merges are busy on
        sql = f"INSERT INTO {store.database}.{FRAMES.name} ({', '.join(FRAMES.columns)}) VALUES"
        t0 = time.perf_counter()
        for i in range(0, len(full), batch):
            cols = list(zip(*full[i:i + batch], strict=True))  # one transpose, as the sink
            raw_client.execute(sql, cols, columnar=True)
        rate = len(rows) / (time.perf_counter() - t0)
        store.close()
        return rate

    def settle() -> None:
        """Wait for the server's background merges of the last side's parts: they
        would take CPU from the side timed next (measured: ~2x in either order)."""
        deadline = time.monotonic() + 30
        while raw_client.execute("SELECT count() FROM system.merges")[0][0] and \
                time.monotonic() < deadline:
            time.sleep(0.1)

    for r in range(rounds):  # the anchor goes first in even rounds, second in odd ones
        settle()
        if r % 2 == 0:
            raw.append(raw_rate())
            settle()
            ours.append(sink_rate())
        else:
            ours.append(sink_rate())
            settle()
            raw.append(raw_rate())
        print(f"insert round {r + 1}: sink {ours[-1]:,.0f} rows/s, raw {raw[-1]:,.0f} rows/s",
              flush=True)
    raw_client.disconnect()
    return {"sink_rows_s": round(statistics.median(ours)), "raw_rows_s": round(statistics.median(raw)),
            "insert_ratio": round(statistics.median(o / r for o, r in zip(ours, raw, strict=True)), 3)}


# --- 2. agent --------------------------------------------------------------------------
def produce_all(s: Settings, topic: str, payloads: list[bytes]) -> None:
    p = Producer({**s.producer_config(), "linger.ms": 20, "batch.num.messages": 10000})
    for v in payloads:
        while True:
            try:
                p.produce(topic, key=b"n", value=v)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    p.flush(60)


def raw_consume_rate(s: Settings, topic: str, payloads: list[bytes]) -> float:
    """A fresh topic read from the beginning (tansu's "latest" offset is unreliable)."""
    from aiokafka import AIOKafkaConsumer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(s.confluent_config())
    for fut in admin.create_topics([NewTopic(topic, num_partitions=s.partitions,
                                             replication_factor=1)]).values():
        fut.result(15)

    async def run() -> float:
        c = AIOKafkaConsumer(topic, bootstrap_servers=s.kafka_bootstrap,
                             group_id=f"raw-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest",
                             fetch_max_wait_ms=25, max_partition_fetch_bytes=s.max_message_bytes)
        await c.start()
        while not c.assignment():
            await c.getmany(timeout_ms=100)
        await asyncio.sleep(1.0)
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        fut = loop.run_in_executor(None, produce_all, s, topic, payloads)
        got = 0
        while got < len(payloads):
            batches = await c.getmany(timeout_ms=200, max_records=10000)
            got += sum(len(v) for v in batches.values())
        elapsed = time.perf_counter() - t0
        await fut
        await c.stop()
        return len(payloads) / elapsed

    return asyncio.run(run())


def agent_rate(s: Settings, store: ServerStore, topic: str, payloads: list[bytes],
               node: str) -> float:
    t0 = time.perf_counter()
    produce_all(s, topic, payloads)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        _, rows = store.query(f"SELECT count() FROM {store.database}.{FRAMES.name} "
                              f"WHERE node = '{node}'")
        if rows[0][0] >= len(payloads):
            return len(payloads) / (time.perf_counter() - t0)
        time.sleep(0.05)
    raise SystemExit("the sink did not store every row within 600 s")


def bench_agent(tmp: Path, ch: LocalClickHouse, n: int, rounds: int) -> dict:
    broker = LocalBroker(free_port(), tmp)
    broker.start()
    database = f"bench_agent_{uuid.uuid4().hex[:6]}"
    s = Settings(kafka_bootstrap=broker.bootstrap, topic_prefix=f"tb{uuid.uuid4().hex[:6]}",
                 roles="sink", store="server", clickhouse_url=ch.url(database),
                 web_port=free_port(), state_dir=tmp, partitions=4, node="bench")
    topic = TopicNames(s.topic_prefix).telemetry
    worker = WorkerProcess(s, tmp / "worker.log", loglevel="warning")
    store = ServerStore(s.clickhouse_url)
    store.setup()
    ours, raw = [], []
    try:
        worker.start()
        warm = [r.model_copy(update={"node": "warmup"}).dumps() for r in records(200, seed=9)]
        agent_rate(s, store, topic, warm, "warmup")  # partitions assigned, store open
        for r in range(rounds):
            node = f"round{r}"
            payloads = [rec.model_copy(update={"node": node}).dumps() for rec in records(n, r)]
            # the worker's round first: right after the raw consumer's group left the
            # broker, the sink's 10k rows took 5.2 s in 3 of 5 quick runs (1.9k msg/s)
            ours.append(agent_rate(s, store, topic, payloads, node))
            raw.append(raw_consume_rate(s, f"{s.topic_prefix}.raw{r}", payloads))
            print(f"agent round {r + 1}: sink agent {ours[-1]:,.0f} msg/s, "
                  f"raw aiokafka {raw[-1]:,.0f} msg/s", flush=True)
    finally:
        store.close()
        worker.stop()
        broker.stop()
    return {"agent_msgs_s": round(statistics.median(ours)), "raw_msgs_s": round(statistics.median(raw)),
            "agent_ratio": round(statistics.median(o / r for o, r in zip(ours, raw, strict=True)), 3)}


# --- 3. sketch -------------------------------------------------------------------------
def bench_sketch(tmp: Path, n: int, windows: int = 10) -> dict:
    rng = np.random.default_rng(42)
    lat = rng.lognormal(3.5, 0.8, n)
    agg = WindowAggregator("n1", window_s=10)
    per = n // windows
    for i, v in enumerate(lat):
        agg.update(Sample(ts_ms=T0 + (i // per) * 10_000 + 1, camera="c", seq=i, tier="edge",
                          model_id="m", model_version="1", total_ms=float(v), infer_ms=1.0,
                          queue_ms=1.0, queue_depth=0))
    ws = agg.flush(0, force=True)
    store = EmbeddedStore(tmp / "chdb", database="bench")
    try:
        store.setup()
        Sink(store).write(WINDOWS, [WINDOWS.to_row(w) for w in ws],
                          [Position("w", 0, i) for i in range(len(ws))])
        _, rows = store.query("SELECT quantileExactWeighted(0.99)(v, w), count(), "
                              "uniqExact(ts_ms) FROM bench.telemetry_windows "
                              "ARRAY JOIN total_ms_values AS v, total_ms_weights AS w")
    finally:
        store.close()
    p99_sql, stored_values, n_windows = float(rows[0][0]), int(rows[0][1]), int(rows[0][2])
    exact = float(np.quantile(lat, 0.99))
    rank = float((lat <= p99_sql).mean())
    return {"raw_rows": n, "windows": n_windows, "stored_values": stored_values,
            "p99_exact_ms": round(exact, 3), "p99_sql_ms": round(p99_sql, 3),
            "p99_rank_error": round(abs(rank - 0.99), 5),
            "p99_value_error": round(abs(p99_sql - exact) / exact, 5),
            "row_reduction": round(n / n_windows, 1),
            "value_reduction": round(n / stored_values, 1)}


def main() -> None:
    # a killed run still stops the servers it started (finally blocks run on SystemExit)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    q = args.quick
    out: dict = {"bench": "telemetry", "quick": q}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ch = LocalClickHouse(free_port(), free_port(), tmp)
        ch.start()
        try:
            out.update(bench_insert(ch.url("bench"), records(50_000 if q else 200_000),
                                    10_000, 2 if q else 4))
            out.update(bench_agent(tmp, ch, 10_000 if q else 50_000, 1 if q else 3))
        finally:
            ch.stop()
        out.update(bench_sketch(tmp, 200_000 if q else 1_000_000))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
