"""``pbe job resume`` on real jobs of the session's workspace: after the flow process was
killed with SIGKILL at about half way, and after a cancel. Real processes, real kills."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import psutil
import pytest
from support import write_inputs, write_script

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# every file scored leaves a line in <markers>/<name>; a file named in the flag file makes
# run() sleep (a mini-batch to cancel in the middle of)
SCRIPT = """
import os
import time

MARKERS = {markers!r}
FLAG = {flag!r}

def init():
    os.makedirs(MARKERS, exist_ok=True)

def run(mini_batch):
    time.sleep(0.4)
    if os.path.exists(FLAG):
        stuck = open(FLAG).read().split()
        if any(os.path.basename(p) in stuck for p in mini_batch):
            time.sleep(600)
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        with open(os.path.join(MARKERS, name), "a") as marker:
            marker.write(f"{{os.getpid()}}\\n")
        rows.append(f"{{name}} {{open(path).read().strip()}}")
    return rows
"""

DEPLOYMENT = """\
name: {name}
endpoint_name: {endpoint}
type: model
model: azureml:tiny-model@latest
code_configuration:
  code: code
  scoring_script: score.py
compute: azureml:tiny-cluster
resources:
  instance_count: 1
settings:
  max_concurrency_per_instance: 1
  mini_batch_size: 2
  output_file_name: predictions.csv
  retry_settings:
    max_retries: 1
    timeout: 20
"""

FILES = 40


@pytest.fixture
def project(pbe, tiny_project, tmp_path):
    """An endpoint of its own whose script leaves markers (see SCRIPT)."""
    endpoint = f"resume-{uuid.uuid4().hex[:6]}"
    markers, flag = tmp_path / "markers", tmp_path / "flag.txt"
    write_script(tmp_path / "code", SCRIPT.format(markers=str(markers), flag=str(flag)))
    (tmp_path / "deployment.yml").write_text(DEPLOYMENT.format(name="marked", endpoint=endpoint))
    write_inputs(tmp_path / "inputs", FILES)
    pbe.ok("batch-endpoint", "create", "--name", endpoint)
    pbe.ok(
        "batch-deployment",
        "create",
        "--file",
        str(tmp_path / "deployment.yml"),
        "--endpoint-name",
        endpoint,
        "--set-default",
    )
    yield endpoint, tmp_path
    pbe("batch-endpoint", "delete", "--name", endpoint, "--yes")


def expected_rows() -> str:
    """What a plain loop over the inputs with this script writes."""
    return "".join(f"item{n:04d}.txt {n}\n" for n in range(FILES))


def wait_for(pbe, name: str, statuses: tuple[str, ...], within: float = 180) -> dict:
    deadline = time.monotonic() + within
    while (job := pbe.ok("job", "show", "-n", name))["status"] not in statuses:
        assert time.monotonic() < deadline, f"{name} still {job['status']}"
        time.sleep(0.5)
    return job


def markers_of(root: Path) -> dict[str, int]:
    folder = root / "markers"
    if not folder.exists():
        return {}
    return {p.name: len(p.read_text().splitlines()) for p in folder.iterdir()}


def flow_process(flow_run_id: str) -> psutil.Process | None:
    """The flow run's own process: the topmost one with its flow run id in its environment."""
    found = []
    for process in psutil.process_iter(["pid"]):
        try:
            if process.environ().get("PREFECT__FLOW_RUN_ID") == flow_run_id:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    pids = {p.pid for p in found}
    top = [p for p in found if p.ppid() not in pids]
    return top[0] if top else None


def committed_files(output: Path, job: str) -> set[str]:
    parts = output / f".pbe-staging-{job}" / "parts"
    indices = [int(p.name.split(".")[0]) for p in parts.iterdir() if p.name.endswith(".rows")]
    return {f"item{n:04d}.txt" for index in indices for n in (2 * index, 2 * index + 1)}


def test_a_job_killed_at_half_way_resumes_without_scoring_anything_twice(pbe, project):
    endpoint, root = project
    output = root / "out"
    job = pbe.ok(
        "batch-endpoint",
        "invoke",
        "--name",
        endpoint,
        "--input",
        str(root / "inputs"),
        "--output-path",
        str(output),
    )
    name = job["name"]
    deadline = time.monotonic() + 180
    while len(markers_of(root)) < FILES // 2:
        assert time.monotonic() < deadline, "the job never got half way"
        time.sleep(0.1)
    process = flow_process(job["id"])
    assert process is not None
    descendants = process.children(recursive=True)
    process.send_signal(signal.SIGKILL)
    crashed = wait_for(pbe, name, ("Failed", "Completed", "Canceled"))
    assert crashed["status"] == "Failed" and crashed["properties"]["prefect_state"] == "Crashed"
    assert not (output / "predictions.csv").exists()
    assert (output / ".predictions.csv.claim").exists()  # left by the killed run
    committed = committed_files(output, name)
    assert 0 < len(committed) < FILES
    assert crashed["properties"]["record_status"] == "Running"  # it never wrote its end

    resumed = pbe.ok("job", "resume", "-n", name, "--wait")
    assert resumed["status"] == "Completed", resumed["message"]
    assert (output / "predictions.csv").read_text() == expected_rows()
    markers = markers_of(root)
    assert set(markers) == {f"item{n:04d}.txt" for n in range(FILES)}
    assert all(markers[f] == 1 for f in committed), {f: markers[f] for f in committed}
    shown = pbe.ok("job", "show", "-n", name)["properties"]
    assert shown["resumed"] is True and len(shown["attempts"]) == 2
    assert shown["attempts"][1]["mini_batches_skipped"] == len(committed) // 2
    assert shown["attempts"][1]["mini_batches_scored"] == (FILES - len(committed)) // 2
    assert not (output / f".pbe-staging-{name}").exists()
    assert not (output / ".predictions.csv.claim").exists()
    left = [p.pid for p in descendants if p.is_running() and p.status() != "zombie"]
    assert not left, f"processes of the killed run still alive: {left}"


def test_a_canceled_job_keeps_its_staging_and_resumes(pbe, project):
    endpoint, root = project
    output = root / "out"
    (root / "flag.txt").write_text("item0010.txt")  # mini-batch 5 hangs
    job = pbe.ok(
        "batch-endpoint",
        "invoke",
        "--name",
        endpoint,
        "--input",
        str(root / "inputs"),
        "--output-path",
        str(output),
        "--set",
        "timeout=600",
    )
    name = job["name"]
    deadline = time.monotonic() + 180
    while len(markers_of(root)) < 10:
        assert time.monotonic() < deadline, "the job never started scoring"
        time.sleep(0.1)
    time.sleep(1.0)  # mini-batch 5 is in run(), asleep
    started = time.monotonic()
    pbe.ok("job", "cancel", "-n", name)
    canceled = wait_for(pbe, name, ("Canceled", "Failed", "Completed"), within=120)
    assert canceled["status"] == "Canceled"
    assert time.monotonic() - started < 60
    assert not (output / "predictions.csv").exists()
    staging = output / f".pbe-staging-{name}"
    assert staging.exists() and len(committed_files(output, name)) >= 10
    refused = pbe("job", "resume", "-n", name, "--set", "mini_batch_size=4")
    assert refused.code == 1 and "mini_batch_size cannot change" in refused.err

    (root / "flag.txt").unlink()
    resumed = pbe.ok("job", "resume", "-n", name, "--wait")
    assert resumed["status"] == "Completed", resumed["message"]
    assert (output / "predictions.csv").read_text() == expected_rows()
    again = pbe("job", "resume", "-n", name)
    assert again.code == 1 and "it completed" in again.err


def test_resume_refuses_a_changed_input_before_anything_runs(pbe, project):
    endpoint, root = project
    output = root / "out"
    (root / "flag.txt").write_text("item0004.txt")
    job = pbe.ok(
        "batch-endpoint",
        "invoke",
        "--name",
        endpoint,
        "--input",
        str(root / "inputs"),
        "--output-path",
        str(output),
        "--set",
        "timeout=2",
    )
    failed = wait_for(pbe, job["name"], ("Failed", "Completed", "Canceled"))
    assert failed["status"] == "Failed"
    os.remove(root / "inputs" / "item0007.txt")
    (root / "inputs" / "item0001.txt").write_text("other\n")
    refused = pbe("job", "resume", "-n", job["name"])
    assert refused.code == 1
    assert "item0007.txt" in refused.err and "item0001.txt" in refused.err
    assert "start a new job" in refused.err
    assert pbe.ok("job", "show", "-n", job["name"])["status"] == "Failed"  # nothing ran


def test_retrying_the_failed_flow_run_the_prefect_way_continues_the_job(
    pbe, project, pbe_workspace
):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import AwaitingRetry

    endpoint, root = project
    output = root / "out"
    (root / "flag.txt").write_text("item0030.txt")  # mini-batch 15 times out
    job = pbe.ok(
        "batch-endpoint",
        "invoke",
        "--name",
        endpoint,
        "--input",
        str(root / "inputs"),
        "--output-path",
        str(output),
        "--set",
        "timeout=2",
    )
    failed = wait_for(pbe, job["name"], ("Failed", "Completed", "Canceled"))
    assert failed["status"] == "Failed"
    committed = committed_files(output, job["name"])
    assert committed and "item0030.txt" not in committed
    (root / "flag.txt").unlink()
    # what the UI's Retry button does: the same flow run, scheduled again
    with temporary_settings({PREFECT_API_URL: pbe_workspace.api_url}):
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(
                job["id"], AwaitingRetry(message="Retry from the UI"), force=True
            )
    done = wait_for(pbe, job["name"], ("Completed", "Failed", "Canceled"))
    assert done["status"] == "Completed", done["message"]
    assert done["id"] == job["id"]  # the same flow run
    assert (output / "predictions.csv").read_text() == expected_rows()
    markers = markers_of(root)
    assert all(markers[f] == 1 for f in committed)
    assert pbe.ok("job", "show", "-n", job["name"])["properties"]["resumed"] is True
