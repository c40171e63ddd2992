"""Stopping a job's remaining mini-batches: a flag every attempt checks first.

Cancelling Dask futures stops mini-batches that no worker has taken; the flag, set on every
worker of the cluster with ``Client.run``, also stops those already queued on a worker and
the retries of those running, so a job past its error threshold ends promptly. The flag is
an attribute of the job's worker plugin (:mod:`flows.worker_state`), so it goes with the job;
checking it costs an attribute read.
"""

from __future__ import annotations

import distributed

from flows.worker_state import JobWorkerPlugin


def request_stop(client: distributed.Client, plugin_name: str) -> None:
    """Tell every worker that the job's remaining attempts must not start."""
    client.run(_mark_stopped, plugin_name)


def _mark_stopped(plugin_name: str, dask_worker: distributed.Worker) -> None:
    plugin = dask_worker.plugins.get(plugin_name)
    if plugin is not None:
        plugin.stopped = True


def stop_requested(state: JobWorkerPlugin) -> bool:
    """True when the job was told to stop (checked in the worker running the attempt)."""
    return state.stopped
