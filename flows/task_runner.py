"""A DaskTaskRunner whose per-task cost does not include Prefect's settings or clients.

prefect-dask spends ~100–350 ms per task on two cores (upstream PrefectHQ/prefect#18191),
almost all of it on work that is the same for every task of a flow run. Profiled here:

- the flow process serialises the whole Prefect settings model for every submission
  (~65 ms), and Dask tokenises the resulting arguments (~10 ms);
- each worker validates those settings again, and builds two new Prefect API clients per
  task, each loading the system's CA bundle into a fresh SSL context (~60 ms apiece).

This runner ships the settings once per flow run (a Dask future every task depends on),
hydrates them once per worker process, and keeps one API client per worker thread.
Everything else about a task run (its context, tags, parameters, retries, its states in the
Prefect UI) is what prefect-dask does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import dask
import distributed
from distributed.utils import get_mp_context
from prefect.context import (
    AssetContext,
    FlowRunContext,
    SettingsContext,
    SyncClientContext,
    TagsContext,
    TaskRunContext,
    serialize_context,
)
from prefect.logging.configuration import ensure_logging_setup
from prefect.logging.handlers import PrefectConsoleHandler
from prefect.task_engine import run_task_async, run_task_sync
from prefect.utilities.engine import collect_task_run_inputs_sync
from prefect_dask import DaskTaskRunner
from prefect_dask.task_runners import PrefectDaskFuture

_SHARED_KEYS = (
    "settings_context",
    "flow_run_context",
    "deployment_id",
    "deployment_parameters",
)


class ScoringTaskRunner(DaskTaskRunner):
    """``DaskTaskRunner`` with the settings shipped once per flow run, not once per task.

    Takes exactly the arguments of :class:`prefect_dask.DaskTaskRunner`: ``address`` for an
    existing scheduler, or ``cluster_class`` + ``cluster_kwargs`` (+ ``adapt_kwargs``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shared: tuple[tuple[int, int], distributed.Future] | None = None

    def __enter__(self) -> ScoringTaskRunner:
        if self.address is None and self.cluster_class is None:
            _fork_local_workers()
        return super().__enter__()

    @property
    def local_worker_threads(self) -> int | None:
        """Worker threads of the ``LocalCluster`` this runner starts; None for other clusters."""
        if self.address is not None or self.cluster_class is not None:
            return None
        kwargs = self.cluster_kwargs or {}
        if "n_workers" not in kwargs:
            return os.cpu_count() or 1
        return int(kwargs["n_workers"]) * int(kwargs.get("threads_per_worker") or 1)

    def submit(  # type: ignore[override]
        self,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Any = None,
        dependencies: dict[str, set[Any]] | None = None,
    ) -> PrefectDaskFuture[Any]:
        self._require_started()
        parameters = self._optimize_futures(parameters)
        wait_for = self._optimize_futures(wait_for) if wait_for else None
        task_run_id, task_inputs, context, shared = self._prepare_run(
            task, parameters, dependencies
        )
        future = self.client.submit(
            _run_task_on_worker,
            task,
            task_run_id,
            parameters,
            wait_for,
            task_inputs,
            context,
            shared,
            key=f"{task.name}-{task_run_id.hex}",
            pure=False,
        )
        return PrefectDaskFuture(wrapped_future=future, task_run_id=task_run_id)

    def submit_many(
        self, task: Any, parameter_sets: Sequence[dict[str, Any]]
    ) -> list[PrefectDaskFuture[Any]]:
        """One task run per parameter set, submitted to Dask as one graph.

        Same task runs as calling :meth:`submit` for each, but the scheduler receives one
        message instead of one per task, and the task object travels once per worker.
        """
        self._require_started()
        seen: dict[int, set[Any]] = {}  # a value shared by every run (the job) is walked once
        prepared = [
            self._prepare_run(task, parameters, None, seen) for parameters in parameter_sets
        ]
        if not prepared:
            return []
        ids, inputs, contexts, shared = zip(*prepared, strict=True)
        task_future = self.client.scatter(task, broadcast=True, hash=False)
        futures = self.client.map(
            _run_mapped_task_on_worker,
            ids,
            list(parameter_sets),
            inputs,
            contexts,
            key=[f"{task.name}-{task_run_id.hex}" for task_run_id in ids],
            pure=False,
            task=task_future,
            shared=shared[0],
        )
        return [
            PrefectDaskFuture(wrapped_future=future, task_run_id=task_run_id)
            for future, task_run_id in zip(futures, ids, strict=True)
        ]

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")

    def _prepare_run(
        self,
        task: Any,
        parameters: dict[str, Any],
        dependencies: dict[str, set[Any]] | None,
        seen: dict[int, set[Any]] | None = None,
    ) -> tuple[uuid.UUID, dict[str, Any], dict[str, Any], distributed.Future]:
        """A new task run's id, its inputs for the UI, its own context and the shared one."""
        task_run_id = uuid.uuid4()
        seen = {} if seen is None else seen
        task_inputs = {}
        for name, value in parameters.items():
            if id(value) not in seen:
                seen[id(value)] = collect_task_run_inputs_sync(value, future_cls=distributed.Future)
            task_inputs[name] = seen[id(value)]
        for name, extra in (dependencies or {}).items():
            task_inputs[name] = task_inputs.get(name, set()) | extra
        asset_kwargs = {
            "task": task,
            "task_run_id": task_run_id,
            "task_inputs": task_inputs,
            "copy_to_child_ctx": True,
        }
        shared, context = self._contexts(asset_kwargs)
        return task_run_id, task_inputs, context, shared

    def _contexts(self, asset_kwargs: dict[str, Any]) -> tuple[distributed.Future, dict[str, Any]]:
        """The per-task context, and a future of the part shared by all tasks of the run.

        The shared part (settings, the flow run's context, deployment values) is serialised
        and shipped once per flow run; each task carries only its own context.
        """
        settings = SettingsContext.get()
        flow_run_context = FlowRunContext.get()
        identity = (id(settings), id(flow_run_context))
        if self._shared is None or self._shared[0] != identity:
            full = serialize_context(asset_ctx_kwargs=asset_kwargs)
            shared = {key: full[key] for key in _SHARED_KEYS}
            shared["token"] = uuid.uuid4().hex
            future = self.client.scatter(shared, broadcast=True, hash=False)
            self._shared = (identity, future)
        task_run_context = TaskRunContext.get()
        context = {
            "task_run_context": task_run_context.serialize() if task_run_context else {},
            "tags_context": TagsContext.get().serialize(),
            "asset_context": AssetContext.from_task_and_inputs(**asset_kwargs).serialize(),
        }
        return self._shared[1], context


#: What a local worker needs before its first task; imported once, in the fork server.
_WORKER_PRELOAD = [
    "distributed",
    "numpy",
    "pandas",
    "prefect",
    "prefect.task_engine",
    "flows.tasks",
    "flows.task_runner",
]


def _fork_local_workers() -> None:
    """Start LocalCluster workers from a fork server that has Prefect imported already.

    With Dask's default ``spawn`` every worker process imports Prefect and this package
    itself (~3 s of CPU each on two cores); forked from a preloaded fork server they are
    ready at once, so a job's cluster starts in about half the time.
    """
    dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
    context = get_mp_context()  # lets distributed register its own preload first
    context.set_forkserver_preload(_WORKER_PRELOAD)


_hydrated: dict[str, SettingsContext] = {}
_hydrated_lock = threading.Lock()
_thread_clients = threading.local()


def _settings_context(shared: dict[str, Any]) -> SettingsContext | None:
    """The flow run's settings, validated once per worker process."""
    if not shared.get("settings_context"):
        return None
    with _hydrated_lock:
        context = _hydrated.get(shared["token"])
        if context is None:
            context = SettingsContext(**shared["settings_context"])
            _hydrated.clear()
            _hydrated[shared["token"]] = context
    return context.model_copy()


def _run_mapped_task_on_worker(
    task_run_id: uuid.UUID,
    parameters: dict[str, Any],
    task_inputs: dict[str, Any],
    context: dict[str, Any],
    *,
    task: Any,
    shared: dict[str, Any],
) -> Any:
    return _run_task_on_worker(task, task_run_id, parameters, None, task_inputs, context, shared)


def _run_task_on_worker(
    task: Any,
    task_run_id: uuid.UUID,
    parameters: dict[str, Any],
    wait_for: Any,
    task_inputs: dict[str, Any],
    context: dict[str, Any],
    shared: dict[str, Any],
) -> Any:
    context = {
        **context,
        "flow_run_context": shared["flow_run_context"],
        "settings_context": {},
        "deployment_id": shared.get("deployment_id"),
        "deployment_parameters": shared.get("deployment_parameters"),
    }
    kwargs = dict(
        task=task,
        task_run_id=task_run_id,
        parameters=parameters,
        wait_for=wait_for,
        return_type="state",
        dependencies=task_inputs,
        context=context,
    )
    settings = _settings_context(shared)
    if settings is None:
        return _run(task, kwargs)
    with settings:
        _quiet_worker_console()
        client_context = _client_context(shared["token"])
        # Make the engine's get_client() find this thread's open client instead of
        # building a new one (and a new SSL context) twice per task.
        reset = SyncClientContext.__var__.set(client_context)
        try:
            return _run(task, kwargs)
        finally:
            SyncClientContext.__var__.reset(reset)


_console_quieted = False


def _quiet_worker_console() -> None:
    """Keep INFO task logs off the worker's console (they still reach the Prefect API).

    A worker's console is the flow's terminal for a LocalCluster: a line per task ("Finished
    in state Completed()") buries the flow's own messages and costs ~5 ms of rich rendering
    per task. Warnings and errors still show there.
    """
    global _console_quieted
    if _console_quieted:
        return
    ensure_logging_setup()
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(max(handler.level, logging.WARNING))
    _console_quieted = True


def _client_context(token: str) -> SyncClientContext:
    """An open Prefect API client for this worker thread and flow run's settings."""
    cached = getattr(_thread_clients, "context", None)
    if cached is not None and cached[0] == token:
        return cached[1]
    context = SyncClientContext()
    context.client.__enter__()
    _thread_clients.context = (token, context)
    return context


def _run(task: Any, kwargs: dict[str, Any]) -> Any:
    if task.isasync:
        return asyncio.run(run_task_async(**kwargs))
    return run_task_sync(**kwargs)
