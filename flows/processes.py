"""A job's scoring processes: started early, and forked from the job's fork server if local.

For a cluster the flow starts on its own machine, the job's fork server
(:mod:`scoring.fork_server`) starts before the cluster. When the job reaches the cluster
each worker starts its scoring processes at once instead of on its first mini-batch: they
belong to the job's worker plugin (:mod:`flows.worker_state`), registered then. At the end
the workers shut down their idle processes (calling ``shutdown()``), the plugin is removed
(closing the rest of the job's state on the workers) and the fork server stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator

import dask
import distributed
from prefect_dask import DaskTaskRunner

from flows import worker_state
from flows.job import ScoringJob
from flows.script_output import UserLogFiles
from flows.task_runner import local_worker_threads
from scoring import fork_server


@contextlib.contextmanager
def fork_server_for(
    runner: DaskTaskRunner,
    job: ScoringJob,
    mini_batches: int,
    logger: logging.Logger | logging.LoggerAdapter,
) -> Iterator[ScoringJob]:
    """Start the job's fork server before its cluster, when the runner will start a local one.

    The server imports the script's libraries while the cluster starts and the job is
    submitted. Only for two or more processes starting at once: one gains nothing from it.
    Yields the job as its tasks should see it; stops the server when the job is done.
    """
    workers = local_worker_threads(runner)
    server = None
    if workers is not None and min(workers, mini_batches) >= 2 and fork_server.enabled():
        try:
            server = fork_server.ForkServer(
                job.process, job.process.environment(_local_worker_environment())
            )
        except OSError as exc:  # e.g. no room for the socket: workers spawn their processes
            logger.warning("No fork server (%s); scoring processes are spawned.", exc)
    if server is None:
        yield job
        return
    try:
        yield dataclasses.replace(job, fork_server=server.address)
    finally:
        server.stop()


def _local_worker_environment() -> dict[str, str]:
    """The environment Dask's nanny gives a local worker process, so that forked scoring
    processes see what spawned ones would: ours, with ``distributed.nanny.pre-spawn-environ``
    and ``distributed.nanny.environ`` for what is not set (thread limits such as
    ``OMP_NUM_THREADS=1``, which libraries read when imported) and Dask's hash seed."""
    environment = dict(os.environ)
    pre_spawn = _configured("distributed.nanny.pre-spawn-environ")
    if pre_spawn.get("PYTHONHASHSEED") in (None, "0"):
        pre_spawn["PYTHONHASHSEED"] = "6640"
    environment.update(pre_spawn)
    environment.update(_configured("distributed.nanny.environ"))
    return environment


def _configured(key: str) -> dict[str, str]:
    """A Dask environment setting; variables already set in ours win, as in Dask."""
    configured = dask.config.get(key, default={}) or {}
    return {k: os.environ.get(k, str(v)) for k, v in configured.items() if v is not None}


@contextlib.contextmanager
def job_processes(
    client: distributed.Client,
    job: ScoringJob,
    mini_batches: int,
    logger: logging.Logger | logging.LoggerAdapter,
) -> Iterator[str]:
    """Register the job's worker plugin, which starts its scoring processes on the workers
    now; yield the plugin's name; shut the processes down and remove the plugin after."""
    name = job.worker_state
    counts = _processes_per_worker(client, mini_batches)
    user_logs = UserLogFiles(job.logs) if job.logs is not None else None
    worker_state.register(client, name, job.process, counts, job.fork_server, user_logs)
    try:
        yield name
    except BaseException:
        with contextlib.suppress(Exception):  # the job's own error is the one to report
            worker_state.close(client, name)
        raise
    for worker, errors in worker_state.close(client, name).items():
        for error in errors:
            logger.warning("%s on %s", error, worker)


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
