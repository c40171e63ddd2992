"""A job's state on each Dask worker, owned by a ``WorkerPlugin`` registered for the job.

The flow registers one :class:`JobWorkerPlugin` per job (named ``pbe-job-<job>-<id>``) when
the job reaches the cluster, and unregisters it when the job ends. On each worker the plugin
owns what the job's tasks share there: its scoring processes (a
:class:`~scoring.pool.ScoringProcessPool`, started in ``setup``), its stop flag, the flow
run's Prefect settings (hydrated once) and one open Prefect API client per worker thread.
``teardown`` closes all of it, so a long-lived cluster keeps nothing from finished jobs.
Tasks find their job's plugin with :func:`job_state`, a dictionary look-up.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import distributed
from distributed.diagnostics.plugin import WorkerPlugin

from flows import prefect_internals as internals
from flows.script_output import UserLogFiles
from scoring.pool import ScoringProcessPool
from scoring.spec import ScoringProcessSpec

logger = logging.getLogger(__name__)

PLUGIN_PREFIX = "pbe-job-"


class JobWorkerPlugin(WorkerPlugin):
    """One job's scoring processes, stop flag, Prefect settings and clients on a worker.

    ``counts`` says how many scoring processes each worker (by address) starts at setup;
    workers that join later start theirs on demand. ``user_logs`` keeps the processes'
    own output in files (:mod:`flows.script_output`).
    """

    def __init__(
        self,
        name: str,
        spec: ScoringProcessSpec,
        counts: dict[str, int] | None = None,
        fork_server: str | None = None,
        user_logs: UserLogFiles | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.counts = dict(counts or {})
        self.fork_server = fork_server
        self.user_logs = user_logs

    def setup(self, worker: distributed.Worker) -> None:
        self.pool = ScoringProcessPool(self.user_logs)
        self.stopped = False
        self._lock = threading.Lock()
        self._settings: tuple[str, Any] | None = None  # (token, SettingsContext)
        self._clients: dict[int, Any] = {}  # thread id -> open SyncClientContext
        count = self.counts.get(worker.address, 0)
        if count:  # a launch that fails here fails again, and is reported, in the mini-batch
            try:
                self.pool.prepare(self.spec, count, self.fork_server)
            except Exception:  # noqa: BLE001 - never fail the plugin (and the job) here
                logger.exception("Starting scoring processes for %s failed", self.name)

    async def teardown(self, worker: distributed.Worker) -> None:
        """Close everything the job left on this worker.

        Usually :func:`close` did already and this is instant; processes still to shut
        down (their ``shutdown()`` may take a while) are closed off the event loop.
        """
        if self.pool.idle:
            errors = await asyncio.get_running_loop().run_in_executor(None, self.close)
        else:
            errors = self.close()
        for error in errors:
            logger.warning("%s: %s", self.name, error)

    def close(self) -> list[str]:
        """Shut down the scoring processes (``shutdown()`` first), close the Prefect clients,
        drop the settings; return the errors of ``shutdown()``. Safe to call twice."""
        errors = self.pool.close()
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
            self._settings = None
        for context in clients:
            try:
                internals.close_client(context)
            except Exception as exc:  # noqa: BLE001 - closing the others matters more
                errors.append(f"closing a Prefect client failed: {exc}")
        return errors

    # --- what the task runner asks for, once per task --------------------------------------

    def settings(self, token: str, serialized: dict[str, Any]) -> Any:
        """A copy of the flow run's ``SettingsContext``, validated once per job and worker."""
        cached = self._settings
        if cached is None or cached[0] != token:
            with self._lock:
                cached = self._settings
                if cached is None or cached[0] != token:
                    cached = (token, internals.hydrate_settings(serialized))
                    self._settings = cached
        return cached[1].model_copy()

    def client_context(self) -> Any:
        """This worker thread's open Prefect API client for the job (opened on first use)."""
        ident = threading.get_ident()
        context = self._clients.get(ident)
        if context is None:
            context = internals.open_client()
            with self._lock:
                self._clients[ident] = context
        return context

    @property
    def open_clients(self) -> int:
        return len(self._clients)


def job_state(name: str) -> JobWorkerPlugin:
    """The job's plugin on the worker running the calling task."""
    try:
        return distributed.get_worker().plugins[name]
    except KeyError:
        raise RuntimeError(f"worker state {name} is not registered on this worker") from None


def register(
    client: distributed.Client,
    name: str,
    spec: ScoringProcessSpec,
    counts: dict[str, int],
    fork_server: str | None,
    user_logs: UserLogFiles | None = None,
) -> None:
    """Install the job's plugin on every worker (and on workers that join later)."""
    client.register_plugin(JobWorkerPlugin(name, spec, counts, fork_server, user_logs), name=name)


def close(client: distributed.Client, name: str) -> dict[str, list[str]]:
    """Close the job's processes and clients on every worker, then remove its plugin.

    Returns the ``shutdown()`` errors per worker (teardown itself only logs on the worker).
    """
    try:
        errors = client.run(_close_on_worker, name, on_error="return")
    finally:
        client.unregister_worker_plugin(name)
    return {
        worker: result if isinstance(result, list) else [f"closing failed: {result!r}"]
        for worker, result in errors.items()
    }


async def _close_on_worker(name: str, dask_worker: distributed.Worker) -> list[str]:
    plugin = dask_worker.plugins.get(name)
    if plugin is None:
        return []
    return await asyncio.get_running_loop().run_in_executor(None, plugin.close)


def registered_on_worker(dask_worker: distributed.Worker) -> dict[str, int]:
    """This worker's job plugins and the Prefect clients each holds open (diagnostics)."""
    return {
        name: plugin.open_clients
        for name, plugin in dask_worker.plugins.items()
        if name.startswith(PLUGIN_PREFIX)
    }
