"""The web UI: `embpipe ui` (dagster dev with workspace.yaml) serves the asset graph and runs the job.

One test drives the UI in headless Chromium (Debian's chromium + chromedriver, through selenium): it opens
the asset graph, launches a materialization with the asset page's Materialize button, waits for the run to
succeed and saves screenshots under data/screenshots/. Another drives the GraphQL API the UI's
"Materialize all" uses, with the fake teacher chosen through run config, through the whole job. The server
is stopped by killing its process group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from embpipe_tests.conftest import GRAPH_SAMPLE_DIR, REPO

pytestmark = pytest.mark.slow

LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["data"]


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError:
            pass
        time.sleep(2)
    raise TimeoutError(what)


@pytest.fixture
def ui_server(data_dir):
    port = free_port()
    env = {
        **os.environ,
        "EMBPIPE_DATA_DIR": str(data_dir),
        "EMBPIPE_DOCUMENTS": str(GRAPH_SAMPLE_DIR),
        "EMBPIPE_AUTOMATION": "stopped",  # no sensor-launched runs beside the test's own
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "embpipe.cli", "ui", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: graphql(port, "{ version }")["version"], 180, "dagster dev did not start")
        yield port
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


SCREENSHOTS = REPO / "data" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
]


@pytest.fixture
def browser():
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip("needs Debian's chromium and chromium-driver: sudo apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


def page_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


COMMUNITY_DIALOG = "Join the Dagster community"


def dismiss_dialogs(driver, settle_s: float = 3.0) -> None:
    """Close Dagster's first-visit newsletter dialog, which can open a moment after the page renders, and
    make sure nothing covers the page (a screenshot of the dialog would pass for one of the graph)."""
    from selenium.webdriver.common.by import By

    driver.implicitly_wait(0)
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        buttons = driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']")
        for button in buttons:
            button.click()
        if buttons:
            wait_until(lambda: COMMUNITY_DIALOG not in page_text(driver), 10, "the community dialog stayed open")
        time.sleep(0.2)
    driver.implicitly_wait(5)
    assert COMMUNITY_DIALOG not in page_text(driver)


def latest_run_status(port: int) -> str | None:
    runs = graphql(port, "{ runsOrError(limit: 1) { ... on Runs { results { status } } } }")["runsOrError"]["results"]
    return runs[0]["status"] if runs else None


def test_chromium_opens_the_asset_graph_and_materializes_an_asset(ui_server, browser, data_dir):
    from selenium.webdriver.common.by import By

    port = ui_server
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(f"http://127.0.0.1:{port}/asset-groups")
    wait_until(lambda: "Global asset lineage" in page_text(browser), 120, "the asset graph did not render")
    dismiss_dialogs(browser)
    groups = ("ingest", "synthesis", "lmar", "embgen", "training", "evaluation", "lineage", "deploy")
    wait_until(lambda: all(g in page_text(browser) for g in groups), 60, "not every asset group is shown")
    graph = browser.find_elements(By.CSS_SELECTOR, "svg")  # the lineage canvas, with a box per group
    assert graph and any(el.is_displayed() for el in graph)
    assert browser.save_screenshot(str(SCREENSHOTS / "asset-graph.png"))
    assert COMMUNITY_DIALOG not in page_text(browser)

    browser.get(f"http://127.0.0.1:{port}/assets/documents")
    wait_until(lambda: "Never materialized" in page_text(browser), 120, "the asset page did not render")
    dismiss_dialogs(browser)
    browser.find_element(By.XPATH, "//button[normalize-space()='Materialize']").click()
    # documents comes with rejected_documents (one multi-asset): the UI asks to confirm materializing both
    wait_until(lambda: browser.find_elements(By.XPATH, "//button[normalize-space()='Confirm']"), 60, "no confirm")
    browser.find_element(By.XPATH, "//button[normalize-space()='Confirm']").click()
    wait_until(lambda: latest_run_status(port) in {"SUCCESS", "FAILURE", "CANCELED"}, 300, "no finished run")
    assert latest_run_status(port) == "SUCCESS"
    assert (data_dir / "assets" / "documents.parquet").is_file()

    browser.get(f"http://127.0.0.1:{port}/assets/documents")
    wait_until(lambda: "documents" in page_text(browser) and "Never materialized" not in page_text(browser), 120, "")
    dismiss_dialogs(browser)
    wait_until(lambda: "config_fingerprint" in page_text(browser), 60, "the materialization's metadata is not shown")
    shown = page_text(browser)  # what a user checks after a run: when, and the stage's recorded figures
    assert "Latest materialization" in shown and "ingest" in shown
    assert all(key in shown for key in ("documents", "rejected", "folder", "path"))
    assert browser.save_screenshot(str(SCREENSHOTS / "documents-materialized.png"))


def test_ui_serves_the_graph_and_materializes_all(ui_server, data_dir):
    port = ui_server
    nodes = wait_until(
        lambda: graphql(port, "{ assetNodes { assetKey { path } groupName } }")["assetNodes"], 120, "no asset nodes"
    )
    assert {n["assetKey"]["path"][0] for n in nodes} >= {"documents", "chunks", "embedding_model", "retrieval_report"}
    repo = graphql(port, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }")
    [repository] = repo["repositoriesOrError"]["nodes"]
    run_config = {  # the whole graph at its smallest: what is tested is the UI's launch, not the stages
        "execution": {"config": {"in_process": {}}},  # one process for the run, not one per step
        "resources": {"teacher": {"config": {"model": "fake/teacher"}}, "methods": {"config": {"lmar": False}}},
        "ops": {
            "read_documents": {"config": {"folder": str(GRAPH_SAMPLE_DIR)}},
            "synthetic_queries": {"config": {"max_chunks": 12}},
            "passage_pairs": {"config": {"max_pairs": 8}},
            "labeled_triplets": {"config": {"anchors": 16}},
            "cluster_profiles": {"config": {"max_clusters": 4}},
            "mining_rounds": {"config": {"rounds": 1, "student_epochs": 1}},
            "embedding_model": {"config": {"epochs": 1}},
        },
    }
    params = {
        "selector": {
            "repositoryLocationName": repository["location"]["name"],
            "repositoryName": repository["name"],
            "jobName": "adapt_model",
        },
        "runConfigData": run_config,
        "mode": "default",
    }
    launched = graphql(port, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    status_query = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"

    def finished():
        status = graphql(port, status_query, {"id": run_id})["runOrError"]["status"]
        return status if status in {"SUCCESS", "FAILURE", "CANCELED"} else None

    assert wait_until(finished, 900, "run did not finish") == "SUCCESS"
    assert (data_dir / "assets" / "retrieval_report.parquet").is_file()
    assert (data_dir / "dagster" / "dagster.yaml").is_file()  # the instance lives under data/
