"""Large jobs: bounded submission, results released as recorded, paced to the server.

Units for the window and the result log; then real jobs (real Prefect API, real Dask
LocalCluster) with a tiny window and a tiny pacing bound, whose every task run the server
must record in its final state (counted through the API).
"""

from __future__ import annotations

import csv
import logging
import time
import uuid

import pytest
from prefect import get_client
from prefect.testing.utilities import prefect_test_harness
from support import make_model, make_spec, write_inputs, write_script

from flows.batch_score import batch_score
from flows.event_pace import EventPace
from flows.planning import plan_mini_batches
from flows.report import stream_processed_csv
from flows.result_log import ResultLog, in_index_order
from flows.results import MiniBatchResult
from flows.window import SubmitWindow, submit_window


def _result(index: int, status: str = "succeeded") -> MiniBatchResult:
    return MiniBatchResult(index, 3, 3, 0, 1, status, process="host:1", start_time="t")


def test_the_result_log_reads_back_in_index_order_whatever_the_arrival_order():
    log = ResultLog(5)
    for index in (3, 0, 4, 1, 2):
        log.record(_result(index))
    log.record(_result(3, "failed"))  # recorded twice: the first stays
    assert [r.index for r in log] == [0, 1, 2, 3, 4]
    assert log[3].status == "succeeded" and log.recorded == 5
    assert 4 in log and 5 not in log
    assert in_index_order(log) is log
    assert [r.index for r in in_index_order([_result(2), _result(0)])] == [0, 2]


def test_a_result_not_yet_recorded_is_not_read():
    log = ResultLog(2)
    log.record(_result(1))
    assert 0 not in log
    with pytest.raises(LookupError):
        log[0]


def test_the_report_streams_in_chunks_and_equals_the_whole():
    log = ResultLog(12)
    for index in reversed(range(12)):
        log.record(_result(index))
    chunks = list(stream_processed_csv(log, rows_per_chunk=5))
    assert len(chunks) == 3
    whole = b"".join(stream_processed_csv([log[i] for i in reversed(range(12))]))
    assert b"".join(chunks) == whole  # a list of results in any order gives the same
    rows = list(csv.DictReader(b"".join(chunks).decode().splitlines()))
    assert [int(r["mini_batch_id"]) for r in rows] == list(range(12))


def test_the_window_tops_up_in_chunks_and_ends_with_the_tail():
    plan = plan_mini_batches([f"{i}.png" for i in range(10)], 1)
    window = SubmitWindow(len(plan), 8)
    assert window.room(0) == 8
    assert [mb.index for mb in window.take(plan, 8)] == list(range(8))
    assert window.room(7) == 0  # one slot free: less than a chunk (2)
    assert window.room(6) == 2  # the tail of the job
    window.take(plan, 2)
    assert window.done and window.room(0) == 0


def test_the_window_size_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("PBE_SUBMIT_WINDOW", "16")
    assert submit_window() == 16
    monkeypatch.setenv("PBE_SUBMIT_WINDOW", "1")
    with pytest.raises(Exception, match="PBE_SUBMIT_WINDOW"):
        submit_window()


def test_pacing_without_a_flow_run_never_holds_a_job_back():
    pace = EventPace(None, 10, logging.getLogger(__name__))
    assert not pace.enabled and pace.room(10**6) > 0


# --- real jobs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefect_api():
    with prefect_test_harness(server_startup_timeout=120):
        yield


FINAL = ["COMPLETED", "FAILED", "CANCELLED", "CRASHED"]

SCRIPT = """
import os
def init(): pass
def run(mini_batch):
    return [os.path.basename(path) for path in mini_batch]
"""


def _task_runs(flow_run_id: uuid.UUID) -> tuple[int, int]:
    """(all, final) ``mini-batch-*`` task runs of the flow run, as the server has them."""

    def count(**task_runs) -> int:
        with get_client(sync_client=True) as client:
            return int(
                client.request(
                    "POST",
                    "/task_runs/count",
                    json={
                        "flow_runs": {"id": {"any_": [str(flow_run_id)]}},
                        "task_runs": {"name": {"like_": "mini-batch-"}, **task_runs},
                    },
                ).json()
            )

    return count(), count(state={"type": {"any_": FINAL}})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_windowed_paced_job_scores_everything_and_the_server_records_every_task_run(
    prefect_api, tmp_path, monkeypatch
):
    monkeypatch.setenv("PBE_SUBMIT_WINDOW", "4")  # many top-ups
    monkeypatch.setenv("PBE_EVENT_LAG", "6")  # the job waits for the server over and over
    code = write_script(tmp_path / "code", SCRIPT)
    write_inputs(tmp_path / "in", 40)
    spec = make_spec(
        code, make_model(tmp_path / "m"), mini_batch_size=2, max_concurrency_per_instance=2
    )
    state = batch_score(
        input=str(tmp_path / "in"),
        deployment=spec,
        output_path=str(tmp_path / "out"),
        return_state=True,
    )
    assert state.is_completed(), state.message
    rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert rows == [f"item{i:04d}.txt" for i in range(40)]
    with open(tmp_path / "out" / "logs" / "processed_mini-batches.csv") as handle:
        report = list(csv.DictReader(handle))
    assert [int(r["mini_batch_id"]) for r in report] == list(range(20))
    assert {r["status"] for r in report} == {"succeeded"}
    # paced: when the job ends the server is at most the bound behind; it then catches up
    flow_run_id = state.state_details.flow_run_id
    deadline = time.monotonic() + 60
    while (counts := _task_runs(flow_run_id)) != (20, 20) and time.monotonic() < deadline:
        time.sleep(1)
    assert counts == (20, 20)


def test_submitted_mini_batches_leave_no_asset_record_in_the_flow_run(prefect_api):
    """Prefect records each prepared task run's assets in the flow run's context until the
    flow ends; the runner drops the empty records, or a job would hold one per mini-batch."""
    from prefect import flow, task

    from flows import prefect_internals as internals
    from flows.task_runner import ScoringTaskRunner

    @task
    def echo(value: int) -> int:
        return value

    runner = ScoringTaskRunner(cluster_kwargs={"n_workers": 1, "processes": False})

    @flow(task_runner=runner)
    def submit_some() -> tuple[list[int], int]:
        futures = internals.FlowRunContext.get().task_runner.submit_many(
            echo, [{"value": n} for n in range(5)]
        )
        return [f.result() for f in futures], len(internals.FlowRunContext.get().task_run_assets)

    values, records = submit_some()
    assert values == list(range(5)) and records == 0
