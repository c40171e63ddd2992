"""An endpoint reached the Prefect way: a real server and process worker on loopback.

The session's embedded server (``prefect server start`` on a free loopback port) and
worker (``prefect worker start --pool pbe-process``) run every path: ``prefect deployment
run``, ``run_deployment()`` from Python, a cron schedule, and a plain call of the flow.
Changing the endpoint's default deployment does not touch the Prefect deployment.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

RUN_TIMEOUT = 240


@contextmanager
def _api(url: str):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def _rows(path: Path) -> list[str]:
    return path.read_text().splitlines()


#: What the tiny project's script writes for its three input files.
TINY_ROWS = [f"item{i:04d}.txt 42" for i in range(3)]


def _run_endpoint(url: str, endpoint: str, inputs: Path, output: Path):
    """``run_deployment()`` of the endpoint, and the Prefect deployment as read right after."""
    from prefect import get_client
    from prefect.deployments import run_deployment

    with _api(url):
        run = run_deployment(
            f"batch-score/{endpoint}",
            timeout=RUN_TIMEOUT,
            parameters={"input": str(inputs), "output_path": str(output)},
        )
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(f"batch-score/{endpoint}")
    return run, deployment


def _wait(url: str, run_id, timeout: float = RUN_TIMEOUT):
    """The flow run once it is final (fails the test after ``timeout`` seconds)."""
    from prefect import get_client

    deadline = time.monotonic() + timeout
    with _api(url), get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                return run
            assert time.monotonic() < deadline, f"run {run.name} still {run.state.name}"
            time.sleep(2)


@pytest.fixture(scope="module")
def endpoint(pbe, tiny_project):
    """An endpoint with two deployments (``tiny-dpl`` the default) and a per-minute schedule."""
    name = f"native-{uuid.uuid4().hex[:6]}"
    pbe.ok("batch-endpoint", "create", "--file", str(tiny_project.endpoint_yml), "--name", name)
    pbe.ok(
        "batch-deployment",
        "create",
        "--file",
        str(tiny_project.deployment_yml),
        "--endpoint-name",
        name,
        "--set-default",
    )
    pbe.ok(
        "batch-deployment",
        "create",
        "--file",
        str(tiny_project.deployment_yml),
        "--endpoint-name",
        name,
        "--name",
        "tiny-dpl-2",
        "--set",
        "settings.output_file_name=second.csv",
    )
    # set last, so that a run it fires finds the deployments; checked by the last test
    shown = pbe.ok(
        "batch-endpoint",
        "update",
        "--name",
        name,
        "--schedule",
        "* * * * *",
        "--schedule-input",
        str(tiny_project.inputs),
    )
    assert shown["schedule"]["cron"] == "* * * * *"
    yield name
    pbe("batch-endpoint", "delete", "--name", name, "--yes")


def test_prefect_deployment_run(pbe_workspace, endpoint, tiny_project):
    env = {
        **pbe_workspace.env,
        "PREFECT_API_URL": pbe_workspace.api_url,
        "PREFECT_HOME": str(pbe_workspace.root / "prefect-cli"),
    }
    done = subprocess.run(
        [
            "prefect",
            "deployment",
            "run",
            f"batch-score/{endpoint}",
            "--param",
            f"input={tiny_project.inputs}",
            "--param",
            "deployment_name=tiny-dpl",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout).group(1)
    run = _wait(pbe_workspace.api_url, uuid.UUID(run_id))
    assert run.state.type.value == "COMPLETED", run.state.message
    # no output path given: the job writes to the workspace folder named after the run
    from blocks.workspace import default_output_path

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PBE_HOME", str(pbe_workspace.root))
        output = Path(default_output_path(run.name))
    assert _rows(output / "predictions.csv") == TINY_ROWS
    # the flow tags its run, so the deployment's job list has it too
    assert "deployment:tiny-dpl" in run.tags


def test_run_deployment_and_a_default_switch_without_redeploying(
    pbe, pbe_workspace, endpoint, tiny_project, tmp_path
):
    first, before = _run_endpoint(
        pbe_workspace.api_url, endpoint, tiny_project.inputs, tmp_path / "first"
    )
    assert first.state.is_completed(), first.state.message
    assert (tmp_path / "first" / "predictions.csv").is_file()  # tiny-dpl, the default

    pbe.ok(
        "batch-endpoint",
        "update",
        "--name",
        endpoint,
        "--set",
        "defaults.deployment_name=tiny-dpl-2",
    )
    second, after = _run_endpoint(
        pbe_workspace.api_url, endpoint, tiny_project.inputs, tmp_path / "second"
    )
    assert second.state.is_completed(), second.state.message
    assert _rows(tmp_path / "second" / "second.csv")  # tiny-dpl-2 ran
    assert after.parameters == before.parameters == {"endpoint": endpoint}
    assert after.updated == before.updated  # the Prefect deployment was not touched
    pbe.ok(
        "batch-endpoint", "update", "--name", endpoint, "--set", "defaults.deployment_name=tiny-dpl"
    )


def test_plain_flow_call(pbe_workspace, endpoint, tiny_project, tmp_path):
    from flows.batch_score import batch_score

    with _api(pbe_workspace.api_url), pytest.MonkeyPatch.context() as patch:
        patch.setenv("PBE_HOME", str(pbe_workspace.root))
        batch_score(
            input=str(tiny_project.inputs),
            endpoint=endpoint,
            deployment_name="tiny-dpl",
            output_path=str(tmp_path),
            job_name="plain-call",
        )
    assert _rows(tmp_path / "predictions.csv") == TINY_ROWS


def test_schedule_fires(pbe, pbe_workspace, endpoint):
    """The per-minute schedule set by the fixture has fired (within ~70 s) and its job ran."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

    deadline = time.monotonic() + 150
    with _api(pbe_workspace.api_url), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"batch-score/{endpoint}")
        run_filter = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id]))
        while True:
            runs = [
                r
                for r in client.read_flow_runs(flow_run_filter=run_filter)
                if r.auto_scheduled and r.state and r.state.type.value != "SCHEDULED"
            ]
            if runs:
                break
            assert time.monotonic() < deadline, "the schedule did not fire"
            time.sleep(3)
    run = _wait(pbe_workspace.api_url, runs[0].id)
    assert run.state.is_completed(), run.state.message
    assert run.parameters["input"] == os.fspath(
        pbe.ok("batch-endpoint", "show", "--name", endpoint)["schedule"]["input"]
    )
    removed = pbe.ok("batch-endpoint", "update", "--name", endpoint, "--remove-schedule")
    assert removed["schedule"] is None
