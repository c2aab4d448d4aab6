"""The web UI: `embpipe ui` (dagster dev with workspace.yaml) serves the asset graph and runs the job.

Drives the same GraphQL API the UI's "Materialize all" uses, with the fake teacher chosen through run
config, then stops the server by killing its process group.
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

import pytest

from embpipe_tests.conftest import REPO, SAMPLE_DIR

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
    env = {**os.environ, "EMBPIPE_DATA_DIR": str(data_dir)}
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


def test_ui_serves_the_graph_and_materializes_all(ui_server, data_dir):
    port = ui_server
    nodes = wait_until(
        lambda: graphql(port, "{ assetNodes { assetKey { path } groupName } }")["assetNodes"], 120, "no asset nodes"
    )
    assert {n["assetKey"]["path"][0] for n in nodes} >= {"documents", "chunks", "embedding_model", "retrieval_report"}
    repo = graphql(port, "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }")
    [repository] = repo["repositoriesOrError"]["nodes"]
    run_config = {
        "resources": {"teacher": {"config": {"model": "fake/teacher"}}},
        "ops": {
            "read_documents": {"config": {"folder": str(SAMPLE_DIR)}},
            "synthetic_queries": {"config": {"max_chunks": 12}},
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
