"""Stopping a job's remaining mini-batches: a Dask event every attempt checks first.

Cancelling Dask futures stops mini-batches that have not started; the event also stops
the retries of those already running, so a job past its error threshold ends promptly.
"""

from __future__ import annotations

import distributed


def _event_name(job_name: str) -> str:
    return f"pbe-cancel-{job_name}"


def _on_dask_worker() -> bool:
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def request_stop(client: distributed.Client, job_name: str) -> None:
    """Tell every worker that the job's remaining attempts must not start."""
    distributed.Event(_event_name(job_name), client=client).set()


def clear_stop(client: distributed.Client, job_name: str) -> None:
    distributed.Event(_event_name(job_name), client=client).clear()


def stop_requested(job_name: str) -> bool:
    """True when the job was told to stop (always False outside a Dask worker)."""
    if not _on_dask_worker():
        return False
    return distributed.Event(_event_name(job_name)).is_set()
