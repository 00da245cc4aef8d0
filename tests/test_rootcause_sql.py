"""Root-cause analysis end to end on both stores (ClickHouse 18.16 server and chdb): the
simulated pipeline's rows go in through the real Sink, the AnomalyMonitor pages, the
analyzer's SQL runs read-only, names the injected fault, and every cause's SQL returns
exactly the numbers in its evidence."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from autosteer.anomaly import Anomaly, AnomalyMonitor
from autosteer.rootcause import (
    Fault,
    RootCause,
    RootCauseAnalyzer,
    Topology,
    ZScoreRanker,
    simulate,
    write,
)
from autosteer.rootcause.simulate import Telemetry
from autosteer.telemetry.store import EmbeddedStore, ServerStore, TelemetryStore
from helpers import unique

pytestmark = pytest.mark.integration

T0 = 1_763_000_000_000
ONSET = T0 + 720_000
FAULTS = {
    "canary_deploy": Fault("bad_deploy", "edge-2", ONSET, ONSET + 3_600_000, 0.7, version="1.5"),
    "camera_kill": Fault("camera_failure", "cam5", ONSET, ONSET + 3_600_000, 0.5, variant="kill"),
    "memory_leak": Fault("memory_leak", "cloud-1", ONSET, ONSET + 3_600_000, 0.8),
    "link": Fault("link_degradation", "cloud", ONSET, ONSET + 3_600_000, 0.5),
}



def telemetry(fault: Fault, seed: int = 7) -> Telemetry:
    return simulate(Topology(), [fault], start_ms=T0, seconds=1_140, seed=seed)


def first_anomaly(tel: Telemetry) -> Anomaly:
    """Windows and heartbeats in publication order; the first anomaly after the onset."""
    feed = sorted([(w.ts_ms + 11_000, 0, i) for i, w in enumerate(tel.windows)]
                  + [(n.ts_ms, 1, i) for i, n in enumerate(tel.nodes)])
    monitor = AnomalyMonitor()
    for _, kind, i in feed:
        found = monitor.update(tel.windows[i]) if kind == 0 else monitor.update_node(tel.nodes[i])
        late = [a for a in found if a.end_ms > ONSET]
        if late:
            return late[0]
    raise AssertionError("the monitor never paged")


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return (a is None or math.isnan(a)) and (b is None or math.isnan(b))
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def check_sql(store: TelemetryStore, rc: RootCause) -> None:
    for sql in rc.sql:
        cols, _ = store.query(sql, readonly=True)
        assert cols[:2] == ["bucket_ms", "node"]
    for c in rc.causes:
        cols, rows = store.query(c.sql, readonly=True)
        assert cols == ["baseline", "anomaly"] and len(rows) == 1, c.sql
        assert close(rows[0][0], c.baseline) and close(rows[0][1], c.anomaly), (c.key, rows)


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_the_injected_fault_is_the_top_cause_and_its_sql_shows_it(
        store: TelemetryStore, name: str) -> None:
    fault = FAULTS[name]
    tel = telemetry(fault)
    write(store, tel)
    anomaly = first_anomaly(tel)
    rc = RootCauseAnalyzer(store).analyze(anomaly)
    assert rc.causes[0].key == fault.cause, [c.key for c in rc.causes[:5]]
    assert rc.cause_type == fault.cause_type
    assert rc.database == store.database and rc.anomaly_id == anomaly.id
    assert rc.start_ms <= anomaly.start_ms and rc.end_ms >= anomaly.end_ms
    assert RootCause.parse(rc.dumps()) == rc
    check_sql(store, rc)


def test_naive_ranker_sql_runs_read_only_too(store: TelemetryStore) -> None:
    tel = telemetry(FAULTS["canary_deploy"], seed=8)
    write(store, tel)
    rc = RootCauseAnalyzer(store, ranker=ZScoreRanker()).analyze(first_anomaly(tel))
    assert rc.ranker == "ZScoreRanker(top=10)" and len(rc.causes) == 10
    check_sql(store, rc)


def test_server_and_embedded_give_the_same_analysis(clickhouse, tmp_path: Path) -> None:
    tel = telemetry(FAULTS["canary_deploy"], seed=9)
    anomaly = first_anomaly(tel)
    results = []
    for st in (ServerStore(clickhouse.url(unique("db"))),
               EmbeddedStore(tmp_path / "chdb", database=unique("db"))):
        try:
            write(st, tel)
            results.append(RootCauseAnalyzer(st).analyze(anomaly))
        finally:
            st.close()
    server, embedded = results
    assert [c.key for c in server.causes] == [c.key for c in embedded.causes]
    for a, b in zip(server.causes, embedded.causes, strict=True):
        assert close(a.baseline, b.baseline) and close(a.anomaly, b.anomaly)
        assert a.score == pytest.approx(b.score, rel=1e-6)
