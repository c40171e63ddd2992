"""Seeing a job: the script's own lines in its task runs and files, the summary and table
artifacts, the counts and the progress in the terminal. A real job on the session's
embedded Prefect server, read back through its API."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from pathlib import Path

import httpx
import pytest

from deployments.progress import ProgressView, Rate, describe

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHATTY = """\
import logging, os, sys, time

def init():
    print("chatty init")

def run(mini_batch):
    names = [os.path.basename(path) for path in mini_batch]
    print("scoring " + " ".join(names))
    print("a warning on stderr", file=sys.stderr)
    logging.getLogger("chatty").error("an error record for %s", names[0])
    if "item0000.txt" not in names:
        time.sleep(2)  # time enough to see the job running, with counts so far
    if "item0002.txt" in names:
        for number in range(150):
            print(f"noise {number}")
        raise ValueError("cannot score item0002.txt")
    return names
"""


class Api:
    """The Prefect REST API of the session's server."""

    def __init__(self, url: str) -> None:
        self.url = url

    def post(self, path: str, body: dict) -> list[dict]:
        response = httpx.post(f"{self.url}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def artifact(self, key: str) -> dict:
        [found] = self.post(
            "/artifacts/filter",
            {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1},
        )
        return found

    def task_runs(self, flow_run_id: str) -> dict[str, str]:
        runs = self.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
        return {run["id"]: run["name"] for run in runs}

    def logs(self, flow_run_id: str) -> list[dict]:
        logs, offset = [], 0
        while page := self.post(
            "/logs/filter",
            {
                "logs": {"flow_run_id": {"any_": [flow_run_id]}},
                "sort": "TIMESTAMP_ASC",
                "offset": offset,
                "limit": 200,
            },
        ):
            logs += page
            offset += len(page)
        return logs


@pytest.fixture(scope="module")
def chatty_job(pbe, pbe_workspace, tiny_project):
    """A finished job of a script that prints, warns, logs and fails on one mini-batch."""
    (tiny_project.folder / "code" / "chatty.py").write_text(CHATTY)
    endpoint = f"see-{uuid.uuid4().hex[:6]}"
    pbe.ok("batch-endpoint", "create", "--file", str(tiny_project.endpoint_yml), "--name", endpoint)
    pbe.ok(
        "batch-deployment",
        "create",
        "--file",
        str(tiny_project.deployment_yml),
        "--endpoint-name",
        endpoint,
        "--name",
        "chatty-dpl",
        "--set-default",
        "--set",
        "code_configuration.scoring_script=chatty.py",
        "--set",
        "settings.mini_batch_size=1",
    )
    pbe.ok(
        "batch-deployment",
        "create",
        "--file",
        str(tiny_project.deployment_yml),
        "--endpoint-name",
        endpoint,
    )  # tiny-dpl: echoes, never fails
    job = pbe.ok(
        "batch-endpoint",
        "invoke",
        "--name",
        endpoint,
        "--input",
        str(tiny_project.inputs),
        "--set",
        "max_retries=1",
        "--set",
        "error_threshold=-1",
    )
    running = []  # what job show said while the job ran
    deadline = time.monotonic() + 240
    while (shown := pbe.ok("job", "show", "-n", job["name"]))["status"] not in (
        "Completed",
        "Failed",
        "Canceled",
    ):
        assert time.monotonic() < deadline, "the job did not end"
        if shown["status"] == "Running":
            running.append(shown["properties"])
        time.sleep(0.5)
    yield {
        "job": shown,
        "endpoint": endpoint,
        "running": running,
        "api": Api(pbe_workspace.api_url),
    }
    pbe("batch-endpoint", "delete", "--name", endpoint, "--yes")


def test_the_summary_and_table_artifacts_describe_the_job(chatty_job):
    api, job, endpoint = chatty_job["api"], chatty_job["job"], chatty_job["endpoint"]
    summary = api.artifact(f"{endpoint}--chatty-dpl-summary")
    assert summary["type"] == "markdown" and summary["flow_run_id"] == job["id"]
    text = summary["data"]
    assert f"# Job {job['name']}: Completed" in text
    assert "| failed | 1 | 1 |" in text and "| succeeded | 2 | 2 |" in text
    assert job["outputs"]["score"]["path"] in text
    assert "**Error threshold:** -1" in text
    for phase in ("prepare", "cluster start", "scoring", "finish"):
        assert f"| {phase} |" in text
    assert "| user_error | 1 | 1 | ValueError: cannot score item0002.txt |" in text

    table = api.artifact(f"{endpoint}--chatty-dpl-mini-batches")
    rows = json.loads(table["data"]) if isinstance(table["data"], str) else table["data"]
    assert [(r["mini_batch_id"], r["status"]) for r in rows] == [
        (2, "failed"),
        (0, "succeeded"),
        (1, "succeeded"),
    ]  # failed ones first
    assert "logs/processed_mini-batches.csv" in table["description"]

    progress = api.artifact(f"{endpoint}--chatty-dpl-progress")
    assert progress["type"] == "progress" and progress["data"] == 100.0
    assert (
        "3/3 mini-batches done (2 succeeded, 1 failed); 3/3 items done" in (progress["description"])
    )


def test_the_scripts_lines_reach_their_task_runs_within_the_budget(chatty_job):
    api, job = chatty_job["api"], chatty_job["job"]
    names = api.task_runs(job["id"])
    script = [
        (names.get(log["task_run_id"]), log["level"], log["message"])
        for log in api.logs(job["id"])
        if log["name"] == "prefect.task_runs.script"
    ]
    assert ("mini-batch-0", logging.INFO, "scoring item0000.txt") in script
    assert ("mini-batch-2", logging.INFO, "scoring item0002.txt") in script
    assert ("mini-batch-1", logging.WARNING, "a warning on stderr") in script
    assert ("mini-batch-1", logging.ERROR, "chatty: an error record for item0001.txt") in script
    assert [where for where, _, message in script if message == "chatty init"] == [
        "mini-batch-0"
    ]  # one process: its init() output goes to its first mini-batch
    noise = [m for where, _, m in script if where == "mini-batch-2" and m.startswith("noise")]
    assert 0 < len(noise) < 150  # the budget (100 lines a mini-batch) held
    [summary] = [m for where, _, m in script if where == "mini-batch-2" and "more lines" in m]
    assert "than the 100 sent here per mini-batch" in summary and "/logs/user/stdout/" in summary


def test_the_scripts_output_is_kept_whole_beside_the_output(chatty_job):
    user = Path(chatty_job["job"]["outputs"]["score"]["path"]) / "logs" / "user"
    [stdout] = (user / "stdout").iterdir()
    lines = stdout.read_text().splitlines()
    assert lines[0] == "chatty init"
    assert [line for line in lines if line.startswith("noise")] == [
        f"noise {n}" for n in range(150)
    ]
    stderr = (user / "stderr" / stdout.name).read_text()
    assert stderr.count("a warning on stderr") == 3
    assert "ERROR chatty: an error record for item0002.txt" in stderr


def test_job_show_gives_a_running_jobs_counts_so_far(chatty_job):
    partial = [p for p in chatty_job["running"] if "mini_batches_done" in p]
    assert partial, "job show never gave counts while the job ran"
    assert all(p["mini_batches"] == 3 and p["items"] == 3 for p in partial)
    assert any(0 < p["mini_batches_done"] < 3 for p in partial)
    assert {k: v for k, v in chatty_job["job"]["properties"].items() if "items" in k} == {
        "items": 3,
        "items_succeeded": 2,
        "items_failed": 1,
    }  # the end: the final counts


def test_invoke_wait_shows_progress_on_stderr(pbe, chatty_job, tiny_project):
    waited = pbe(
        "batch-endpoint",
        "invoke",
        "--name",
        chatty_job["endpoint"],
        "--deployment-name",
        "tiny-dpl",
        "--input",
        str(tiny_project.inputs),
        "--wait",
    )
    assert waited.code == 0, waited.err
    assert "Progress: 2/2 mini-batches (0 failed), 3/3 items" in waited.err  # not a terminal


def test_job_stream_gives_each_lines_mini_batch_and_progress(chatty_job, pbe):
    name = chatty_job["job"]["name"]
    streamed = pbe.run("job", "stream", "-n", name)  # not a terminal: plain lines
    assert "| mini-batch-2 | script - scoring item0002.txt" in streamed.out
    assert "| WARNING | mini-batch-1 | script - a warning on stderr" in streamed.out
    assert "Progress: 3/3 mini-batches (1 failed), 3/3 items" in streamed.out


def test_on_a_terminal_stream_draws_a_live_bar(chatty_job, pbe_workspace, monkeypatch):
    from deployments.api import connect
    from deployments.job_actions import stream_job

    monkeypatch.setenv("PBE_HOME", str(pbe_workspace.root))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    out = io.StringIO()
    with connect():
        record = stream_job(chatty_job["job"]["name"], out, live=True)
    assert record["status"] == "Completed"
    text = out.getvalue()
    assert "\x1b[" in text and "━" in text  # rich drew a bar with terminal codes
    assert "3/3 mini-batches (1 failed)" in text and "Execution Summary" in text


def test_progress_line_rate_and_time_left():
    rate = Rate()
    rate.add(100, now=0.0)
    rate.add(300, now=10.0)
    counts = {
        "mini_batches": 40,
        "mini_batches_done": 12,
        "mini_batches_failed": 1,
        "items": 1000,
        "items_done": 300,
    }
    assert describe(counts, rate) == (
        "12/40 mini-batches (1 failed), 300/1000 items, 20.0 items/s, about 35s left"
    )
    out = io.StringIO()
    with ProgressView(out, live=False) as view:
        view.update(counts, "Running")
        view.update(counts, "Running")  # unchanged: printed once
    assert out.getvalue().count("Progress: 12/40 mini-batches (1 failed)") == 2  # and at the end
