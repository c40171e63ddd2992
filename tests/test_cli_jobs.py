"""Jobs through ``pbe``: waiting, failing, streaming, cancelling."""

from __future__ import annotations

import time
import uuid

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def endpoint(pbe, tiny_project):
    """An endpoint whose deployments sleep (``sleepy-dpl``), fail (``failing-dpl``) or
    succeed (``tiny-dpl``)."""
    name = f"jobs-{uuid.uuid4().hex[:6]}"
    pbe.ok("batch-endpoint", "create", "--file", str(tiny_project.endpoint_yml), "--name", name)
    pbe.ok(
        "batch-deployment",
        "create",
        "--file",
        str(tiny_project.deployment_yml),
        "--endpoint-name",
        name,
    )
    for script in ("sleepy", "failing"):
        pbe.ok(
            "batch-deployment",
            "create",
            "--file",
            str(tiny_project.deployment_yml),
            "--endpoint-name",
            name,
            "--name",
            f"{script}-dpl",
            "--set",
            f"code_configuration.scoring_script={script}.py",
        )
    yield name
    pbe("batch-endpoint", "delete", "--name", name, "--yes")


def test_a_failed_job_fails_invoke_wait_and_stream(pbe, endpoint, tiny_project):
    result = pbe(
        "batch-endpoint",
        "invoke",
        "--name",
        endpoint,
        "--deployment-name",
        "failing-dpl",
        "--input",
        str(tiny_project.inputs),
        "--set",
        "max_retries=1",
        "--wait",
    )
    assert result.code == 1, result.err
    job = result.json()
    assert job["status"] == "Failed"
    assert "No item succeeded" in job["message"]
    # the final message says why, and where the full report is
    assert "Most failed attempts: ValueError: this model cannot score" in job["message"]
    assert "Full report: " in job["message"] and "errors.txt" in job["message"]
    assert f"job '{job['name']}' ended Failed" in result.err
    streamed = pbe.run("job", "stream", "-n", job["name"])
    assert streamed.code == 1
    assert "this model cannot score" in streamed.out  # the scoring error reached the logs
    assert "Status: Failed" in streamed.out
    # the script's traceback, not Prefect's engine's
    assert 'raise ValueError("this model cannot score "' in streamed.out
    assert "flow_engine.py" not in streamed.out and "task_engine.py" not in streamed.out


def test_a_script_that_cannot_run_is_not_retried(pbe, endpoint, tiny_project, tmp_path):
    (tiny_project.folder / "code" / "broken.py").write_text("def init(:\n    pass\n")
    pbe.ok("batch-deployment", "create", "--file", str(tiny_project.deployment_yml),
           "--endpoint-name", endpoint, "--name", "broken-dpl",
           "--set", "code_configuration.scoring_script=broken.py")  # fmt: skip
    result = pbe("batch-endpoint", "invoke", "--name", endpoint, "--deployment-name",
                 "broken-dpl", "--input", str(tiny_project.inputs), "--set", "max_retries=3",
                 "--output-path", str(tmp_path / "out"), "--wait")  # fmt: skip
    assert result.code == 1
    assert "SyntaxError" in result.json()["message"]
    report = (tmp_path / "out" / "logs" / "processed_mini-batches.csv").read_text()
    rows = [line.split(",") for line in report.splitlines()[1:]]
    assert rows and all(row[1] == "1" for row in rows), report  # one attempt, not three


def test_cancel_a_running_job(pbe, endpoint, tiny_project):
    job = pbe.ok(
        "batch-endpoint",
        "invoke",
        "--name",
        endpoint,
        "--deployment-name",
        "sleepy-dpl",
        "--input",
        str(tiny_project.inputs),
    )
    assert job["status"] in ("Queued", "Preparing", "Running")
    deadline = time.monotonic() + 120
    while pbe.ok("job", "show", "-n", job["name"])["status"] != "Running":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(1)
    assert pbe.ok("job", "cancel", "-n", job["name"])["status"] in ("CancelRequested", "Canceled")
    while (status := pbe.ok("job", "show", "-n", job["name"])["status"]) != "Canceled":
        assert status == "CancelRequested" and time.monotonic() < deadline, status
        time.sleep(1)
    again = pbe("job", "cancel", "-n", job["name"])
    assert again.code == 1 and "already ended (Canceled)" in again.err
    listed = pbe.ok(
        "batch-deployment",
        "list-jobs",
        "--name",
        "sleepy-dpl",
        "--endpoint-name",
        endpoint,
        "--query",
        "[].[name, status]",
    )
    assert listed == [[job["name"], "Canceled"]]


def test_a_running_job_holds_its_output_and_releases_it_when_canceled(
    pbe, endpoint, tiny_project, tmp_path
):
    from flows.claims import holder_of
    from flows.storage import Location

    output = str(tmp_path / "shared-out")
    first = pbe.ok(
        "batch-endpoint",
        "invoke",
        "--name",
        endpoint,
        "--deployment-name",
        "sleepy-dpl",
        "--input",
        str(tiny_project.inputs),
        "--output-path",
        output,
    )
    target = Location(output).join("predictions.csv")
    deadline = time.monotonic() + 120
    while holder_of(target) is None:
        assert time.monotonic() < deadline, "the first job never claimed its output"
        time.sleep(0.5)
    assert holder_of(target) == first["name"]
    second = pbe(
        "batch-endpoint",
        "invoke",
        "--name",
        endpoint,
        "--deployment-name",
        "failing-dpl",
        "--input",
        str(tiny_project.inputs),
        "--output-path",
        output,
    )
    assert second.code == 1 and f"claimed by job '{first['name']}'" in second.err
    pbe.ok("job", "cancel", "-n", first["name"])
    while pbe.ok("job", "show", "-n", first["name"])["status"] != "Canceled":
        assert time.monotonic() < deadline + 120
        time.sleep(1)
    assert holder_of(target) is None  # released however the job ended


def test_downloads_never_destroy(pbe, endpoint, tiny_project, tmp_path):
    job = pbe.ok(
        "batch-endpoint",
        "invoke",
        "--name",
        endpoint,
        "--deployment-name",
        "tiny-dpl",
        "--input",
        str(tiny_project.inputs),
        "--wait",
    )
    where = tmp_path / "download"
    got = pbe.ok("job", "download", "-n", job["name"], "--download-path", str(where))
    predictions = where / "named-outputs" / "score" / "predictions.csv"
    assert predictions.read_text().splitlines() == [f"item{i:04d}.txt 42" for i in range(3)]
    score = where / "named-outputs" / "score"
    downloaded = sorted(str(p.relative_to(score)) for p in score.rglob("*") if p.is_file())
    assert got["files"] == len(downloaded)
    assert {"predictions.csv", "logs/errors.txt", "logs/processed_mini-batches.csv",
            "logs/job.json"} <= set(downloaded)  # fmt: skip
    assert not any(".pbe-staging-" in p or p.endswith(".claim") for p in downloaded)
    assert (where / "named-outputs" / "score" / "logs" / "errors.txt").is_file()

    predictions.write_text("my own edits\n")
    again = pbe("job", "download", "-n", job["name"], "--download-path", str(where))
    assert again.code == 1 and "already in" in again.err and "--overwrite" in again.err
    assert predictions.read_text() == "my own edits\n"  # untouched
    pbe.ok("job", "download", "-n", job["name"], "--download-path", str(where), "--overwrite")
    assert predictions.read_text().startswith("item0000.txt 42")

    canceled = pbe.ok(
        "batch-endpoint",
        "invoke",
        "--name",
        endpoint,
        "--deployment-name",
        "sleepy-dpl",
        "--input",
        str(tiny_project.inputs),
    )
    pbe.ok("job", "cancel", "-n", canceled["name"])
    deadline = time.monotonic() + 120
    while pbe.ok("job", "show", "-n", canceled["name"])["status"] != "Canceled":
        assert time.monotonic() < deadline
        time.sleep(1)
    nothing = pbe("job", "download", "-n", canceled["name"], "--download-path", str(where))
    assert nothing.code == 1 and "has nothing to download" in nothing.err
