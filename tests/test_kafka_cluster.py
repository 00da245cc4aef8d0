"""The local 3-node Apache Kafka cluster itself: it serves three brokers and replicates
topics three times; a node killed with SIGKILL under a produce load (``acks=all``, an
idempotent producer) loses nothing and the load keeps flowing; the node comes back in
sync; a rolling restart of all three loses nothing. The numbers go to
bench/results/reliability.json with an ``@kafka`` suffix."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from autosteer.infra.kafka import LocalKafkaCluster
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from helpers import unique

pytestmark = pytest.mark.integration

PARTITIONS = 6


@pytest.fixture
def cluster(kafka_cluster: LocalKafkaCluster) -> Iterator[LocalKafkaCluster]:
    """The session's cluster; whatever a test killed is started again after it."""
    yield kafka_cluster
    dead = [n.node_id for n in kafka_cluster.nodes if not n.running()]
    for number in dead:
        kafka_cluster.restart(number, graceful=False)


def new_topic(cluster: LocalKafkaCluster, partitions: int = PARTITIONS) -> str:
    name = unique("kc")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(name, partitions)])[name].result(30)  # broker defaults
    deadline = time.monotonic() + 30  # until every partition has a leader in the metadata
    while time.monotonic() < deadline:
        parts = admin.list_topics(name, timeout=10).topics[name].partitions
        if len(parts) == partitions and all(p.leader >= 0 for p in parts.values()):
            break
        time.sleep(0.1)
    return name


def leaders(cluster: LocalKafkaCluster, topic: str) -> dict[int, int]:
    md = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(topic, timeout=10)
    return {p.id: p.leader for p in md.topics[topic].partitions.values()}


class Load:
    """A producer thread sending numbered messages at ``rate``/s with ``acks=all`` and
    idempotence, remembering when each was acknowledged."""

    def __init__(self, bootstrap: str, topic: str, rate: float = 200.0) -> None:
        self.topic, self.rate = topic, rate
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
            "linger.ms": 5, "delivery.timeout.ms": 120_000, "log_level": 0})
        self.sent = 0
        self.acked: list[tuple[float, int, int]] = []  # (monotonic, seq, partition)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))
        else:
            self.acked.append((time.monotonic(), int(msg.value()), msg.partition()))

    def _run(self) -> None:
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.producer.produce(self.topic, key=str(self.sent % 64).encode(),
                                  value=str(self.sent).encode(), on_delivery=self._delivered)
            self.sent += 1
            next_at += period
            self.producer.poll(max(0.0, next_at - time.monotonic()))

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert self.producer.flush(120) == 0, "messages still unacknowledged after 120 s"

    def gaps(self, since: float, until: float) -> tuple[float, float]:
        """The longest pause between acknowledgements in [since, until]: across the topic,
        and within one partition."""
        def longest(times: list[float]) -> float:
            times = sorted(t for t in times if since <= t <= until)
            edges = [since, *times, until]
            return max(b - a for a, b in zip(edges, edges[1:], strict=False))

        overall = longest([t for t, _, _ in self.acked])
        per_partition = max(longest([t for t, _, p in self.acked if p == part])
                            for part in {p for _, _, p in self.acked})
        return overall, per_partition


def read_all(bootstrap: str, topic: str, expect: int, timeout_s: float = 60) -> Counter:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g"),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    c.subscribe([topic])
    seen: Counter = Counter()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and sum(seen.values()) < expect:
            m = c.poll(0.5)
            if m is not None and not m.error():
                seen[int(m.value())] += 1
        # a little longer: duplicates would arrive after the expected count
        end = time.monotonic() + 2
        while time.monotonic() < end:
            m = c.poll(0.2)
            if m is not None and not m.error():
                seen[int(m.value())] += 1
    finally:
        c.close()
    return seen


def check_delivery(cluster: LocalKafkaCluster, load: Load, topic: str) -> tuple[int, int]:
    """(lost, duplicated) messages of ``load``, read back from the topic."""
    assert not load.errors, load.errors[:5]
    assert len(load.acked) == load.sent
    seen = read_all(cluster.bootstrap, topic, load.sent)
    lost = load.sent - len(set(seen) & set(range(load.sent)))
    duplicated = sum(n - 1 for n in seen.values())
    return lost, duplicated


def test_the_cluster_serves_three_brokers_and_replicates_topics_three_times(
        cluster: LocalKafkaCluster) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    md = admin.list_topics(timeout=10)
    assert sorted(md.brokers) == [1, 2, 3]
    assert cluster.running() and len(cluster.status()) == 3
    assert all(state.startswith("running") for _, _, state in cluster.status())
    topic = new_topic(cluster)
    parts = admin.list_topics(topic, timeout=10).topics[topic].partitions
    assert len(parts) == PARTITIONS
    assert all(sorted(p.replicas) == [1, 2, 3] for p in parts.values())
    cfg = admin.describe_configs([ConfigResource("topic", topic)])
    values = next(iter(cfg.values())).result(10)
    assert values["min.insync.replicas"].value == "2"
    assert int(values["max.message.bytes"].value) >= 10 * 1024 * 1024
    cluster.start()  # idempotent: already running, returns at once
    assert sorted(admin.list_topics(timeout=10).brokers) == [1, 2, 3]


def test_a_broker_killed_under_load_loses_nothing_and_comes_back_in_sync(
        cluster: LocalKafkaCluster, measurements: dict) -> None:
    topic = new_topic(cluster)
    by_leader = Counter(leaders(cluster, topic).values())
    victim = by_leader.most_common(1)[0][0]  # the node leading most partitions
    load = Load(cluster.bootstrap, topic).start()
    time.sleep(3)
    cluster.kill(victim)
    killed_at = time.monotonic()
    time.sleep(15)  # the load goes on with two nodes
    overall_gap, partition_gap = load.gaps(killed_at, time.monotonic())
    after_kill = sum(1 for t, _, _ in load.acked if t > killed_at)
    assert victim not in set(leaders(cluster, topic).values())
    cluster.restart(victim, graceful=False)  # waits until it serves and is back in sync
    back_in_sync_s = time.monotonic() - killed_at - 15
    time.sleep(2)
    load.stop()
    lost, duplicated = check_delivery(cluster, load, topic)
    measurements["broker_kill9@kafka"] = {
        "messages": load.sent, "lost": lost, "duplicates": duplicated,
        "acked_in_15s_after_kill": after_kill, "killed_node_led_partitions": by_leader[victim],
        "partitions": PARTITIONS, "longest_ack_gap_s": round(overall_gap, 2),
        "longest_partition_stall_s": round(partition_gap, 2),
        "restart_back_in_sync_s": round(back_in_sync_s, 1),
        "producer": "confluent-kafka, acks=all, enable.idempotence, 200 msg/s"}
    assert lost == 0 and duplicated == 0
    assert partition_gap < 15, f"a partition stalled {partition_gap:.1f}s"
    assert after_kill > 15 * 200 * 0.5, "the load kept flowing on the other nodes"


def test_a_rolling_restart_of_all_three_nodes_loses_nothing(
        cluster: LocalKafkaCluster, measurements: dict) -> None:
    topic = new_topic(cluster)
    load = Load(cluster.bootstrap, topic).start()
    time.sleep(2)
    started = time.monotonic()
    per_node: dict[str, float] = {}
    for n in cluster.nodes:
        t = time.monotonic()
        cluster.restart(n.node_id)  # SIGTERM, start, wait until back in sync
        per_node[str(n.node_id)] = round(time.monotonic() - t, 1)
    total = time.monotonic() - started
    overall_gap, partition_gap = load.gaps(started, time.monotonic())
    time.sleep(2)
    load.stop()
    lost, duplicated = check_delivery(cluster, load, topic)
    measurements["rolling_restart@kafka"] = {
        "messages": load.sent, "lost": lost, "duplicates": duplicated,
        "restart_s_per_node": per_node, "total_s": round(total, 1),
        "longest_ack_gap_s": round(overall_gap, 2),
        "longest_partition_stall_s": round(partition_gap, 2)}
    assert lost == 0 and duplicated == 0
    assert sorted(AdminClient({"bootstrap.servers": cluster.bootstrap})
                  .list_topics(timeout=10).brokers) == [1, 2, 3]
