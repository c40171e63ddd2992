"""A job's scoring processes on the cluster: started early, from a fork server where possible.

When the job reaches the cluster the flow asks each worker to start its scoring processes
at once instead of on its first mini-batch; for a cluster on the flow's own machine it
first starts the job's fork server (:mod:`scoring.fork_server`) for them to fork from.
At the end the workers shut down their idle processes (calling ``shutdown()``) and the
fork server stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator

import distributed

from flows.job import ScoringJob
from flows.task_runner import ScoringTaskRunner
from scoring import fork_server
from scoring.pool import POOL
from scoring.spec import ScoringProcessSpec


@contextlib.contextmanager
def job_processes(
    runner: ScoringTaskRunner,
    job: ScoringJob,
    mini_batches: int,
    logger: logging.Logger | logging.LoggerAdapter,
) -> Iterator[ScoringJob]:
    """Start the job's scoring processes; yield the job as its tasks should see it."""
    client = runner.client
    counts = _processes_per_worker(client, mini_batches)
    server = None
    if sum(counts.values()) >= 2 and runner.cluster_on_this_machine and fork_server.enabled():
        server = _start_fork_server(client, job, sorted(counts)[0], logger)
    if server is not None:
        job = dataclasses.replace(job, fork_server=server.address)
    try:
        if counts:  # a launch that fails here fails again, and is reported, in the mini-batch
            client.run(
                _prepare_on_worker, job.process, counts, job.fork_server,
                workers=list(counts), on_error="ignore",
            )
        yield job
        for worker, errors in client.run(_close_job_processes, job.name).items():
            for error in errors:
                logger.warning("%s on %s", error, worker)
    finally:
        if server is not None:
            server.stop()


def _processes_per_worker(client: distributed.Client, mini_batches: int) -> dict[str, int]:
    """How many scoring processes each worker starts at once, before its first mini-batch.

    Interpreter start (or fork), imports and ``init()`` then overlap with the submission of
    the job and the first task runs' set-up. Workers get one process per thread, up to one
    process per mini-batch in all; workers that join later start theirs on demand.
    """
    counts: dict[str, int] = {}
    remaining = mini_batches
    workers = client.scheduler_info(n_workers=-1)["workers"]
    for address, info in sorted(workers.items()):
        count = min(int(info.get("nthreads", 1)), remaining)
        if count > 0:
            counts[address] = count
            remaining -= count
    return counts


def _start_fork_server(
    client: distributed.Client,
    job: ScoringJob,
    worker: str,
    logger: logging.Logger | logging.LoggerAdapter,
) -> fork_server.ForkServer | None:
    """The job's fork server, for workers on this machine that start two or more processes
    at once (one start gains nothing from it).

    It gets a worker's environment (Dask sets thread limits such as ``OMP_NUM_THREADS``
    in its workers) so that forked processes see what spawned ones would.
    """
    environment = client.run(_environment, workers=[worker])[worker]
    try:
        return fork_server.ForkServer(job.process, job.process.environment(environment))
    except OSError as exc:  # e.g. no room for the socket: workers spawn their processes
        logger.warning("Could not start a fork server (%s); scoring processes are spawned.", exc)
        return None


def _environment() -> dict[str, str]:
    return dict(os.environ)


def _prepare_on_worker(
    spec: ScoringProcessSpec,
    counts: dict[str, int],
    fork_server_address: str | None,
    dask_worker: distributed.Worker,
) -> int:
    return POOL.prepare(spec, counts.get(dask_worker.address, 0), fork_server_address)


def _close_job_processes(job_name: str) -> list[str]:
    return POOL.close_job(job_name)
