"""A DaskTaskRunner whose per-task cost does not include Prefect's settings or clients.

prefect-dask spends ~70–190 ms per task on a two-core machine (``benchmarks/overhead.py``;
upstream PrefectHQ/prefect#18191), almost all of it on work that is the same for every task
of a flow run. Profiled here:

- the flow process serialises the whole Prefect settings model for every submission
  (~65 ms), and Dask tokenises the resulting arguments (~10 ms);
- each worker validates those settings again, and builds two new Prefect API clients per
  task, each loading the system's CA bundle into a fresh SSL context (~60 ms apiece).

This runner ships the settings once per flow run (a Dask future every task depends on),
hydrates them once per job on each worker, and keeps one API client per worker thread; both
belong to the job's worker plugin (:mod:`flows.worker_state`), which closes the clients when
the job ends. Every private Prefect name it needs goes through :mod:`flows.prefect_internals`.
``PBE_TASK_RUNNER=stock`` runs jobs on prefect-dask's own ``DaskTaskRunner`` instead.
Everything else about a task run (its context, tags, parameters, retries, its states in the
Prefect UI) is what prefect-dask does.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import Any

import dask
import distributed
from distributed.utils import get_mp_context
from prefect_dask import DaskTaskRunner

from blocks.errors import SpecError
from flows import prefect_internals as internals
from flows.worker_state import JobWorkerPlugin

#: ``PBE_TASK_RUNNER``: ``fast`` (default) for :class:`ScoringTaskRunner`, ``stock`` for
#: prefect-dask's own ``DaskTaskRunner`` (same task runs, ~10× the overhead per task).
RUNNER_VARIABLE = "PBE_TASK_RUNNER"
RUNNERS = ("fast", "stock")


def make_task_runner(kwargs: dict[str, Any]) -> DaskTaskRunner:
    """The task runner ``PBE_TASK_RUNNER`` asks for, built from ``DaskTaskRunner`` kwargs."""
    choice = os.environ.get(RUNNER_VARIABLE, "fast").strip().lower() or "fast"
    if choice not in RUNNERS:
        raise SpecError(
            f"{RUNNER_VARIABLE}={choice!r} is not a task runner",
            key=RUNNER_VARIABLE,
            hint="use fast (the default) or stock (prefect-dask's DaskTaskRunner)",
        )
    return ScoringTaskRunner(**kwargs) if choice == "fast" else DaskTaskRunner(**kwargs)


def local_worker_threads(runner: DaskTaskRunner) -> int | None:
    """Worker threads of the ``LocalCluster`` a runner starts; None for other clusters."""
    if runner.address is not None or runner.cluster_class is not None:
        return None
    kwargs = runner.cluster_kwargs or {}
    if "n_workers" not in kwargs:
        return os.cpu_count() or 1
    return int(kwargs["n_workers"]) * int(kwargs.get("threads_per_worker") or 1)


class ScoringTaskRunner(DaskTaskRunner):
    """``DaskTaskRunner`` with the settings shipped once per flow run, not once per task.

    Takes exactly the arguments of :class:`prefect_dask.DaskTaskRunner`: ``address`` for an
    existing scheduler, or ``cluster_class`` + ``cluster_kwargs`` (+ ``adapt_kwargs``).
    With :attr:`worker_state` naming a job's worker plugin, its tasks take the hydrated
    settings and the per-thread API clients from that plugin, which closes them at the
    job's end; without one, each task hydrates the settings and Prefect builds its clients.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shared: tuple[tuple[Any, ...], distributed.Future] | None = None
        self._task_future: tuple[Any, distributed.Future] | None = None
        #: The name of the job's :class:`~flows.worker_state.JobWorkerPlugin`, if any.
        self.worker_state: str | None = None

    def __enter__(self) -> ScoringTaskRunner:
        if self.address is None and self.cluster_class is None:
            _fork_local_workers()
        return super().__enter__()

    @property
    def local_worker_threads(self) -> int | None:
        """Worker threads of the ``LocalCluster`` this runner starts; None for other clusters."""
        return local_worker_threads(self)

    def submit(  # type: ignore[override]
        self,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Any = None,
        dependencies: dict[str, set[Any]] | None = None,
    ) -> Any:
        self._require_started()
        parameters = internals.optimize_futures(self, parameters)
        wait_for = internals.optimize_futures(self, wait_for) if wait_for else None
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
        return internals.dask_future(future, task_run_id)

    def submit_many(self, task: Any, parameter_sets: Sequence[dict[str, Any]]) -> list[Any]:
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
        internals.forget_task_run_assets(ids)  # else held per mini-batch until the job ends
        task_future = self._shared_task(task)
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
            internals.dask_future(future, task_run_id)
            for future, task_run_id in zip(futures, ids, strict=True)
        ]

    def _shared_task(self, task: Any) -> distributed.Future:
        """The task object for the workers, shipped once for the submissions of a job
        (a job submits its mini-batches window by window, :mod:`flows.window`)."""
        if self._task_future is None or self._task_future[0] is not task:
            self._task_future = (task, _share(self.client, task, "pbe-task"))
        return self._task_future[1]

    def _require_started(self) -> None:
        if not internals.runner_started(self):
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
                seen[id(value)] = internals.task_inputs(value)
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

        The shared part (settings, the flow run's context, deployment values, the job's
        worker plugin) is serialised and shipped once per flow run; each task carries only
        its own context.
        """
        identity = (*internals.context_identity(), self.worker_state)
        if self._shared is None or self._shared[0] != identity:
            shared = internals.shared_context(asset_kwargs)
            shared["token"] = uuid.uuid4().hex
            shared["worker_state"] = self.worker_state
            future = _share(self.client, shared, "pbe-shared")
            self._shared = (identity, future)
        return self._shared[1], internals.task_context(asset_kwargs)


class _Held:
    """A value Dask ships whole, without looking inside it for keys or futures."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _held_value(held: _Held) -> Any:
    return held.value


def _share(client: distributed.Client, value: Any, name: str) -> distributed.Future:
    """A future of ``value`` that every task of the flow run depends on (``name-<uuid>``).

    Made by a task, not scattered: Dask cannot make scattered data again, so when every
    worker that held it is lost (a one-worker cluster whose worker is killed) each task
    still to run would be cancelled; a task's result it computes again. And under a key of
    the flow run's own: a scattered dict puts each item under its own name (``token``,
    ``flow_run_context``, …), names every job on a shared cluster uses, and Dask keeps the
    first value of a key, so a second job's task runs would join the first job's flow run.
    Each worker fetches it once, from a worker that has it, before its first task.
    """
    return client.submit(_held_value, _Held(value), key=f"{name}-{uuid.uuid4().hex}", pure=False)


#: What a local worker needs before its first task; imported once, in the fork server.
_WORKER_PRELOAD = [
    "distributed",
    "numpy",
    "pandas",
    *internals.ENGINE_MODULES,
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
    if not shared.get("settings_context"):
        return internals.run_task(task, kwargs)
    plugin = _worker_state(shared.get("worker_state"))
    if plugin is None:  # no job plugin: the settings per task, Prefect's own clients
        with internals.hydrate_settings(shared["settings_context"]):
            _quiet_worker_console()
            return internals.run_task(task, kwargs)
    with plugin.settings(shared["token"], shared["settings_context"]):
        _quiet_worker_console()
        # The engine's get_client() finds this thread's open client instead of building a
        # new one (and a new SSL context) twice per task.
        with internals.using_client(plugin.client_context()):
            return internals.run_task(task, kwargs)


def _worker_state(name: str | None) -> JobWorkerPlugin | None:
    if name is None:
        return None
    return distributed.get_worker().plugins.get(name)


_console_quieted = False


def _quiet_worker_console() -> None:
    """Keep INFO task logs off the worker's console (they still reach the Prefect API).

    A worker's console is the flow's terminal for a LocalCluster: a line per task ("Finished
    in state Completed()") buries the flow's own messages and costs ~5 ms of rich rendering
    per task. Warnings and errors still show there. Done once per worker process: it is the
    process's logging configuration, not a job's state.
    """
    global _console_quieted
    if not _console_quieted:
        internals.quiet_console()
        _console_quieted = True
