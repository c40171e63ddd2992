"""A long-lived external cluster keeps nothing from finished jobs: the job's worker plugin
closes its scoring processes and Prefect clients and drops its settings and stop flag.

Real ``dask scheduler`` and ``dask worker`` processes on loopback, real Prefect API.
"""

from __future__ import annotations

import gc
import os
import sys

import cloudpickle
import distributed
import psutil
import pytest
from prefect.testing.utilities import prefect_test_harness
from support import dask_cluster, make_model, make_spec, write_inputs, write_script

from blocks.compute import DaskCompute
from flows.batch_score import batch_score

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

JOBS = 20

# The workers cannot import this test module: ship the functions run there by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SCRIPT = """
import os

def init():
    pass

def run(mini_batch):
    return [os.path.basename(path) for path in mini_batch]

def shutdown():
    pass
"""


@pytest.fixture(scope="module", autouse=True)
def prefect_api():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _open_clients(dask_worker: distributed.Worker) -> dict[str, int]:
    """Run on a worker: open Prefect API clients and HTTP clients alive in the process (all
    of them, found by the garbage collector, not only ours), and job plugins installed."""
    import httpx
    from prefect.client.orchestration import PrefectClient, SyncPrefectClient

    from flows.prefect_internals import client_is_open
    from flows.worker_state import registered_on_worker

    gc.collect()
    objects = gc.get_objects()
    return {
        "prefect_clients": sum(
            isinstance(o, (PrefectClient, SyncPrefectClient)) and client_is_open(o) for o in objects
        ),
        "httpx_clients": sum(
            isinstance(o, (httpx.Client, httpx.AsyncClient)) and not o.is_closed for o in objects
        ),
        "job_plugins": len(registered_on_worker(dask_worker)),
    }


def _job_plugins_on_scheduler(dask_scheduler) -> list[str]:
    return [name for name in dask_scheduler.worker_plugins if name.startswith("pbe-job-")]


def measure(address: str) -> dict[str, dict[str, int]]:
    """Per worker: what it holds open (read on the worker), then threads, file descriptors
    and child processes (psutil, from outside, on the worker's pid)."""
    with distributed.Client(address, timeout=60) as client:
        pids = client.run(os.getpid)
        held = client.run(_open_clients)
        assert client.run_on_scheduler(_job_plugins_on_scheduler) == []
    figures = {}
    for worker, pid in pids.items():
        process = psutil.Process(pid)
        figures[worker] = {
            "threads": process.num_threads(),
            "fds": process.num_fds(),
            "children": len(process.children(recursive=True)),
            **held[worker],
        }
    return figures


def test_twenty_jobs_on_one_external_cluster_leave_nothing_behind(tmp_path):
    code = write_script(tmp_path / "code", SCRIPT)
    model = make_model(tmp_path / "m")
    write_inputs(tmp_path / "in", 4)
    spec = make_spec(code, model, mini_batch_size=1, max_concurrency_per_instance=2)
    logs = tmp_path / "dask"
    logs.mkdir()
    with dask_cluster(logs, workers=2, threads=1) as address:
        compute = DaskCompute(type="address", address=address)
        figures = []
        for number in range(JOBS):
            output = tmp_path / f"out-{number}"
            state = batch_score(
                input=str(tmp_path / "in"),
                deployment=spec,
                output_path=str(output),
                compute=compute,
                return_state=True,
            )
            assert state.is_completed(), state.message
            assert (output / "predictions.csv").read_text().split() == [
                f"item{n:04d}.txt" for n in range(4)
            ]
            if number + 1 in (1, JOBS // 2, JOBS):
                figures.append(measure(address))
    first, middle, last = figures
    print(f"\nafter 1 job: {first}\nafter {JOBS // 2}: {middle}\nafter {JOBS}: {last}")
    assert first.keys() == last.keys() and len(first) == 2
    for worker in first:
        before, after = first[worker], last[worker]
        # The job's plugin is gone, with its scoring processes and its Prefect clients;
        # what stays open is process-wide (Prefect's log worker's client), from job 1 on.
        assert after["job_plugins"] == before["job_plugins"] == 0
        assert after["children"] == before["children"] == 0
        assert after["prefect_clients"] <= before["prefect_clients"]
        assert after["httpx_clients"] <= before["httpx_clients"]
        # Threads: Prefect's event, log and event-loop threads and the executor thread that
        # closes a job's processes exist from job 1 on; no more may appear.
        assert after["threads"] <= before["threads"]
        # Descriptors: Dask keeps the connections it opens between scheduler and worker in
        # a pool that may grow by one or two when messages overlap (seen: +1 socket after
        # job 2, then flat); that is the only tolerance. Over the last ten jobs: none.
        assert after["fds"] <= before["fds"] + 2
        assert after["fds"] <= middle[worker]["fds"]
        assert after["threads"] <= middle[worker]["threads"]
