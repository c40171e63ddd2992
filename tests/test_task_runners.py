"""The fast task runner and stock prefect-dask run a job to the same outputs and task runs.

``PBE_TASK_RUNNER=stock`` runs the job on ``prefect_dask.DaskTaskRunner``; the default runs
it on :class:`flows.task_runner.ScoringTaskRunner`, which reaches into Prefect's private API
(:mod:`flows.prefect_internals`). This is the test to run against another Prefect version.
"""

from __future__ import annotations

import csv
import re
import time

import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.testing.utilities import prefect_test_harness
from support import make_model, make_spec, write_inputs, write_script

from blocks.errors import SpecError
from flows.batch_score import batch_score
from flows.task_runner import RUNNER_VARIABLE, ScoringTaskRunner, make_task_runner

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Mini-batch 1 (item0002, item0003) fails on its first attempt only; mini-batch 3
# (item0006, item0007) fails on every attempt. The marker lives in the job's output folder.
SCRIPT = """
import os

def init():
    pass

def run(mini_batch):
    names = [os.path.basename(path) for path in mini_batch]
    if "item0006.txt" in names:
        raise ValueError("item0006 cannot be scored")
    marker = os.path.join(os.environ["AZUREML_BI_OUTPUT_PATH"], "failed-once")
    if "item0003.txt" in names and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("transient failure")
    return [f"{name} {len(name)}" for name in names]
"""

REPORT_FIELDS = (
    "mini_batch_id",
    "attempts",
    "total_items",
    "succeeded",
    "failed",
    "status",
    "error_category",
    "error_message",
)


@pytest.fixture(scope="module", autouse=True)
def prefect_api():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def task_runs_of(flow_run_id, expected: int, wait: float = 60.0) -> list[tuple]:
    """(name, final state type, run count) of the flow run's task runs, from the API, once
    all ``expected`` are final (the server records them after the job)."""
    deadline = time.monotonic() + wait
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        rows = sorted(
            (_name(run.name), run.state.type.value if run.state else None, run.run_count)
            for run in runs
        )
        final = [r for r in rows if r[1] in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")]
        if len(final) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def _name(name: str) -> str:
    """A task run's name without the random suffix Prefect gives unnamed task runs."""
    return name if name.startswith("mini-batch-") else re.sub(r"-[0-9a-f]{3}$", "", name)


def report_of(output) -> list[tuple]:
    with open(output / "logs" / "processed_mini-batches.csv") as handle:
        return [tuple(row[f] for f in REPORT_FIELDS) for row in csv.DictReader(handle)]


def test_stock_and_fast_runners_give_the_same_outputs_and_task_runs(tmp_path, monkeypatch):
    code = write_script(tmp_path / "code", SCRIPT)
    write_inputs(tmp_path / "in", 8)
    spec = make_spec(
        code,
        make_model(tmp_path / "m"),
        mini_batch_size=2,
        max_retries=2,
        max_concurrency_per_instance=2,
    )
    seen = {}
    for runner in ("stock", "fast"):  # each: 4 mini-batches and the merge, 5 task runs
        monkeypatch.setenv(RUNNER_VARIABLE, runner)
        output = tmp_path / f"out-{runner}"
        state = batch_score(
            input=str(tmp_path / "in"),
            deployment=spec,
            output_path=str(output),
            job_name="same-job",
            return_state=True,
        )
        assert state.is_completed(), state.message
        mini_batch_runs = [
            row
            for row in task_runs_of(state.state_details.flow_run_id, expected=5)
            if row[0].startswith("mini-batch-")
        ]
        seen[runner] = {
            "message": state.message,
            "predictions": (output / "predictions.csv").read_bytes(),
            "report": report_of(output),
            "task_runs": task_runs_of(state.state_details.flow_run_id, expected=5),
            "mini_batch_runs": mini_batch_runs,
        }
    stock, fast = seen["stock"], seen["fast"]
    assert fast["predictions"] == stock["predictions"]  # byte for byte
    assert fast["predictions"].decode().split("\n")[:2] == ["item0000.txt 12", "item0001.txt 12"]
    assert fast["report"] == stock["report"]
    assert fast["task_runs"] == stock["task_runs"]
    assert fast["message"] == stock["message"]
    assert fast["mini_batch_runs"] == [
        ("mini-batch-0", "COMPLETED", 1),
        ("mini-batch-1", "COMPLETED", 2),  # failed once, retried
        ("mini-batch-2", "COMPLETED", 1),
        ("mini-batch-3", "FAILED", 2),  # failed on both attempts
    ]


def test_the_runner_switch(monkeypatch):
    kwargs = {"cluster_kwargs": {"n_workers": 1}}
    monkeypatch.delenv(RUNNER_VARIABLE, raising=False)
    assert type(make_task_runner(kwargs)) is ScoringTaskRunner
    monkeypatch.setenv(RUNNER_VARIABLE, "stock")
    from prefect_dask import DaskTaskRunner

    assert type(make_task_runner(kwargs)) is DaskTaskRunner
    monkeypatch.setenv(RUNNER_VARIABLE, "turbo")
    with pytest.raises(SpecError, match="PBE_TASK_RUNNER"):
        make_task_runner(kwargs)


# Two jobs at once on one external cluster: each job's task runs belong to its own flow run.
# The shared part of the runner's context once went out as a scattered dict, whose items Dask
# keeps under their own names ("flow_run_context", "token", …): the second job's tasks got the
# first job's values, and its task runs joined the first job's flow run.
SLOW_SCRIPT = """
import os, time

def init():
    pass

def run(mini_batch):
    time.sleep(0.3 * len(mini_batch))
    return [f"{WHO} {os.path.basename(path)}" for path in mini_batch]
"""


def test_two_jobs_on_one_external_cluster_keep_their_own_task_runs(tmp_path):
    import threading

    from support import dask_cluster

    from blocks.compute import DaskCompute

    counts = {"a": 16, "b": 4}
    specs = {}
    for who, count in counts.items():
        code = write_script(tmp_path / f"code-{who}", f"WHO = {who!r}\n" + SLOW_SCRIPT)
        write_inputs(tmp_path / f"in-{who}", count)
        specs[who] = make_spec(
            code,
            make_model(tmp_path / f"m-{who}"),
            name=f"dpl-{who}",
            mini_batch_size=2,
            max_concurrency_per_instance=2,
        )
    (tmp_path / "dask").mkdir()
    states = {}
    with dask_cluster(tmp_path / "dask", workers=2) as address:

        def job(who: str) -> None:
            states[who] = batch_score(
                input=str(tmp_path / f"in-{who}"),
                deployment=specs[who],
                output_path=str(tmp_path / f"out-{who}"),
                job_name=f"job-{who}",
                compute=DaskCompute(type="address", address=address),
                return_state=True,
            )

        first = threading.Thread(target=job, args=("a",))
        first.start()
        deadline = time.monotonic() + 120
        while not list((tmp_path / "out-a").glob(".pbe-staging-*/parts/*")):
            assert time.monotonic() < deadline and first.is_alive(), "job a scored nothing"
            time.sleep(0.05)
        job("b")  # while job a runs
        first.join(timeout=120)
    for who, count in counts.items():
        state = states[who]
        assert state.is_completed(), state.message
        rows = (tmp_path / f"out-{who}" / "predictions.csv").read_text().splitlines()
        assert rows == [f"{who} item{n:04d}.txt" for n in range(count)]
        runs = task_runs_of(state.state_details.flow_run_id, expected=count // 2)
        names = sorted(row[0] for row in runs if row[0].startswith("mini-batch-"))
        assert names == sorted(f"mini-batch-{n}" for n in range(count // 2)), (who, names)
