"""Stopping a job's remaining mini-batches: a flag every attempt checks first.

Cancelling Dask futures stops mini-batches that no worker has taken; the flag, set on every
worker of the cluster with ``Client.run``, also stops those already queued on a worker and
the retries of those running, so a job past its error threshold ends promptly. Checking the
flag costs nothing: it is a set in this module, in each worker process.
"""

from __future__ import annotations

import distributed

_stopped_jobs: set[str] = set()


def _mark(job_name: str, stopped: bool) -> None:
    if stopped:
        _stopped_jobs.add(job_name)
    else:
        _stopped_jobs.discard(job_name)


def request_stop(client: distributed.Client, job_name: str) -> None:
    """Tell every worker that the job's remaining attempts must not start."""
    client.run(_mark, job_name, True)


def clear_stop(client: distributed.Client, job_name: str) -> None:
    """Forget an earlier stop of a job with this name (a re-run)."""
    client.run(_mark, job_name, False)


def stop_requested(job_name: str) -> bool:
    """True when the job was told to stop (checked in the worker running the attempt)."""
    return job_name in _stopped_jobs
