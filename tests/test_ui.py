"""The monitoring UI in a real browser (headless Chromium) on the real stack: tansu,
the ClickHouse 18.16 server, the RTSP camera and two worker processes."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from autosteer.infra.clickhouse import LocalClickHouse
from autosteer.infra.rtsp import RtspTestServer
from autosteer.settings import Settings
from autosteer.topics.names import TopicNames
from autosteer.topics.records import CameraCommand
from helpers import Worker, produce, unique

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "ui.png"

NODE_STATES = """return Array.from(document.querySelectorAll('#graph g.chip'),
                                  g => [g.dataset.node, g.dataset.state]);"""
RATES = """return Object.fromEntries(Array.from(document.querySelectorAll('#graph text.rate'),
                                            t => [t.dataset.edge, Number(t.dataset.rate)]));"""
CAMERA = """const c = document.querySelector(`.camera[data-camera="${CSS.escape(arguments[0])}"]`);
if (!c) return null;
const img = c.querySelector('.thumb img');
const text = (cls) => c.querySelector('.' + cls).textContent;
return {detected: Number(text('detected')), fps_in: text('fps-in'), fps_out: text('fps-out'),
        latency: text('latency'), drops: text('drops'),
        thumbnail: Boolean(img && img.complete && img.naturalWidth > 0)};"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("the UI test needs Debian's Chromium and its driver: "
                    "sudo apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}",
                "--window-size=1400,1500"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def states(driver: Any) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for node, state in driver.execute_script(NODE_STATES):
        out.setdefault(node, set()).add(state)
    return out


def flowing(driver: Any) -> bool:
    rates = driver.execute_script(RATES)
    return all(rates.get(e, 0) > 0 for e in ("cameras-router", "router-edge", "router-cloud",
                                              "edge-results", "cloud-results"))


def until(driver: Any, pred: Callable[[Any], Any], timeout_s: float, what: str) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:  # the page re-renders its tables each second: a row read mid-render is read again
        return WebDriverWait(driver, timeout_s, poll_frequency=0.5,
                             ignored_exceptions=(StaleElementReferenceException,)).until(pred)
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}; the page "
                             f"shows nodes {states(driver)} and rates "
                             f"{driver.execute_script(RATES)}") from None


def test_ui_shows_the_live_pipeline_and_a_killed_worker_as_dead(
        make_settings: Callable[..., Settings], start_worker: Callable[[Settings], Worker],
        clickhouse: LocalClickHouse, rtsp: RtspTestServer, browser: Any,
        tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url = clickhouse.url(unique("db"))
    main = make_settings(store="server", clickhouse_url=url, heartbeat_s=1.0, window_s=2,
                         edge_ratio=0.5, node=unique("main"))
    spare = make_settings(store="server", clickhouse_url=url, heartbeat_s=1.0,
                          topic_prefix=main.topic_prefix, roles="router", node=unique("spare"))
    start_worker(main)
    spare_worker = start_worker(spare)
    cam = unique("cam")
    produce(main, TopicNames(main.topic_prefix).cameras, [(cam.encode(), CameraCommand(
        action="start", camera=cam, url=rtsp.url, max_fps=4).dumps())])

    browser.get(f"http://127.0.0.1:{main.web_port}/ui/")
    until(browser, lambda d: states(d).get(main.node) == {"ok"}
          and states(d).get(spare.node) == {"ok"}, 90, "both workers alive in the graph")
    stages = {e.get_attribute("data-stage"): e.get_attribute("data-state")
              for e in browser.find_elements(By.CSS_SELECTOR, "#graph g.stage")}
    assert set(stages) == {"cameras", "router", "edge", "cloud", "results"}
    until(browser, flowing, 90, "frames flowing on every arrow")
    assert "to cloud" in browser.find_element(
        By.CSS_SELECTOR, '#graph g.stage[data-stage="router"] .subtitle').text

    first = until(browser, lambda d: (lambda c: c if c and c["detected"] > 0 else None)(
        d.execute_script(CAMERA, cam)), 60, f"a card for {cam}")
    later = until(browser, lambda d: (lambda c: c if c["detected"] > first["detected"] + 3
                                      and c["thumbnail"] else None)(
        d.execute_script(CAMERA, cam)), 60, "the camera's numbers to change")
    assert later["fps_in"] != "–" and later["fps_out"] != "–" and " ms" in later["latency"]
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-latency polyline")
          and d.find_elements(By.CSS_SELECTOR, "#chart-throughput polyline"), 60,
          "latency and throughput timelines")
    until(browser, lambda d: {e.get_attribute("data-tier") for e in d.find_elements(
        By.CSS_SELECTOR, "#feed-models li")} == {"edge", "cloud"}, 30, "model versions")
    assert browser.find_element(By.ID, "ready").text == "ready"
    agents = until(browser, lambda d: {
        r.find_elements(By.TAG_NAME, "td")[0].text: r.get_attribute("data-state")
        for r in d.find_elements(By.CSS_SELECTOR, "#agents tbody tr")}, 30, "the agents table")
    assert agents.get("detect-edge") == "running" and agents.get("router") == "running"
    assert agents.get("telemetry-loader") == "running", agents

    spare_worker.stop(signal.SIGKILL)
    killed = time.monotonic()
    until(browser, lambda d: states(d).get(spare.node) == {"dead"}, 30,
          "the killed worker shown as dead")
    dead_after = time.monotonic() - killed
    assert dead_after < 15, f"took {dead_after:.1f}s to show the dead worker"
    until(browser, lambda d: states(d).get(main.node) == {"ok"}, 60,
          "the surviving worker alive")  # its heartbeats may pause while Kafka rebalances
    stage_router = browser.find_element(By.CSS_SELECTOR, '#graph g.stage[data-stage="router"]')
    assert stage_router.get_attribute("data-state") in ("ok", "late")  # main still routes
    until(browser, flowing, 60, "frames flowing again once Kafka gave main the partitions")
    row = browser.find_element(By.CSS_SELECTOR, f'#nodes tr[data-node="{spare.node}"]')
    assert row.get_attribute("data-state") == "dead"

    browser.find_element(By.ID, "sql-run").click()  # the prefilled heartbeat query
    until(browser, lambda d: spare.node in d.find_element(By.ID, "sql-result").text, 20,
          "the SQL box's result")
    browser.find_element(By.ID, "sql").clear()
    browser.find_element(By.ID, "sql").send_keys("DROP TABLE x")
    browser.find_element(By.ID, "sql-run").click()
    until(browser, lambda d: "only SELECT" in d.find_element(By.ID, "sql-error").text, 20,
          "the SQL box to refuse writes")

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(3000, height + 140))
    browser.find_element(By.ID, "sql").clear()
    browser.find_element(By.ID, "sql").send_keys(
        f"SELECT node, max(ts) AS last_seen, count() AS heartbeats "
        f"FROM {main.clickhouse_url.rsplit('/', 1)[1]}.telemetry_nodes GROUP BY node")
    browser.find_element(By.ID, "sql-run").click()
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#sql-table tbody tr")
          and not d.find_element(By.ID, "sql-error").text, 20, "the SQL table")
    until(browser, lambda d: d.execute_script(CAMERA, cam)["thumbnail"], 20, "the thumbnail")
    Select(browser.find_element(By.ID, "minutes")).select_by_value("5")
    until(browser, lambda d: "5 s buckets" in d.find_element(By.ID, "timeline-note").text, 20,
          "5 s buckets for the last 5 minutes")
    shot = tmp_path / "ui.png"
    assert browser.save_screenshot(str(shot))
    shutil.copyfile(shot, DOCS_SCREENSHOT)
    produce(main, TopicNames(main.topic_prefix).cameras, [(cam.encode(), CameraCommand(
        action="stop", camera=cam).dumps())])
