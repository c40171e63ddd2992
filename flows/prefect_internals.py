"""The one seam over Prefect's and prefect-dask's private API.

The fast task runner (:mod:`flows.task_runner`) re-implements ``DaskTaskRunner.submit``;
it needs names that Prefect does not document as public. Every such name used anywhere in
this repository is imported or touched here, and only here, each with what it is, why we use
it and which versions were checked. Checked against **prefect 3.9.1 and prefect-dask
0.3.7** (the versions installed; no other Prefect version can be installed on this project's
machines, so the pin in ``pyproject.toml`` stays ``prefect>=3.9,<3.10``). To check another
version: run ``tests/test_task_runners.py``, which runs one job on the fast runner and on
stock ``prefect_dask.DaskTaskRunner`` (``PBE_TASK_RUNNER=stock``) and compares them.

Public names are used directly elsewhere: ``prefect.flow/task/get_client/get_run_logger``,
``prefect.states``, ``prefect.runtime``, ``prefect.artifacts``, ``prefect.cache_policies``,
``prefect.blocks.core.Block`` (whose ``_block_type_name``, ``_block_type_slug`` and
``_description`` class attributes are Prefect's documented way to name a block type),
``prefect.client.orchestration``/``schemas``, ``prefect.settings``,
``prefect.workers.process.ProcessWorker``, ``prefect.deployments``, ``prefect.exceptions``
and ``prefect_dask.DaskTaskRunner``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import distributed

# ``prefect.context``: the context models a task runner ships to a remote task. Prefect's
# own task runners use them; the models are not documented for use outside Prefect.
#   SettingsContext   the active settings; shipped once per flow run, hydrated once per job
#                     on a worker (stock prefect-dask ships and validates them per task).
#   FlowRunContext    the flow run's context; its identity tells when to ship a new copy.
#                     Its ``task_run_assets`` (a dict, undocumented) gets an entry per task
#                     run submitted, kept until the flow ends: we drop the empty ones.
#   TaskRunContext, TagsContext, AssetContext: a task's own context (tags, assets), shipped
#                     per task exactly as ``serialize_context`` would.
#   SyncClientContext the context ``get_client(sync_client=True)`` looks in; we set its
#                     ``__var__`` (a ``ContextVar``, private) to a worker thread's open
#                     client, so the task engine reuses it instead of building two clients
#                     (two SSL contexts, ~60 ms each) per task.
#   serialize_context what prefect-dask sends with every task; we send its shared part once.
from prefect.context import (  # noqa: E402
    AssetContext,
    FlowRunContext,
    SettingsContext,
    SyncClientContext,
    TagsContext,
    TaskRunContext,
    serialize_context,
)

# ``prefect.logging.configuration.ensure_logging_setup`` (internal): makes sure Prefect's
# handlers exist before we lower the console handler's level on a worker.
# ``prefect.logging.handlers.PrefectConsoleHandler``: the handler class whose INFO lines we
# keep off a worker's console (named in Prefect's logging.yml, not in its Python API docs).
from prefect.logging.configuration import ensure_logging_setup  # noqa: E402
from prefect.logging.handlers import PrefectConsoleHandler  # noqa: E402

# ``prefect.task_engine.run_task_sync/run_task_async``: the engine entry points that
# prefect-dask's client calls on the worker; we call them from our own worker function.
from prefect.task_engine import run_task_async, run_task_sync  # noqa: E402

# ``prefect.utilities.engine.collect_task_run_inputs_sync``: a task's upstream inputs for the
# UI's graph, as prefect-dask's client computes them.
from prefect.utilities.engine import collect_task_run_inputs_sync  # noqa: E402

# ``prefect_dask.task_runners.PrefectDaskFuture``: the future type ``DaskTaskRunner.submit``
# returns (not exported by ``prefect_dask``); ours returns the same type.
from prefect_dask.task_runners import PrefectDaskFuture  # noqa: E402

#: Prefect modules a worker imports before its first task (``prefect.task_engine`` is where
#: ``run_task_sync`` lives); local workers are forked from a server that imported them.
ENGINE_MODULES = ["prefect", "prefect.task_engine"]

#: The keys of ``serialize_context()`` that are the same for every task of a flow run.
SHARED_CONTEXT_KEYS = (
    "settings_context",
    "flow_run_context",
    "deployment_id",
    "deployment_parameters",
)


# --- DaskTaskRunner's private members (prefect-dask 0.3.7) --------------------------------


def runner_started(runner: Any) -> bool:
    """``TaskRunner._started``: set by ``__enter__``; ``submit`` refuses work without it."""
    return bool(runner._started)


def optimize_futures(runner: Any, expr: Any) -> Any:
    """``DaskTaskRunner._optimize_futures``: Prefect futures in ``expr`` → their Dask futures,
    so that Dask orders dependent tasks (what stock ``submit`` does first)."""
    return runner._optimize_futures(expr)


def dask_future(future: distributed.Future, task_run_id: uuid.UUID) -> PrefectDaskFuture:
    """The Prefect future ``DaskTaskRunner.submit`` returns, wrapping a Dask future."""
    return PrefectDaskFuture(wrapped_future=future, task_run_id=task_run_id)


# --- the flow side: contexts serialised ----------------------------------------------------


def context_identity() -> tuple[int, int]:
    """Identifies the active settings and flow run: a change means new shared context."""
    return id(SettingsContext.get()), id(FlowRunContext.get())


def shared_context(asset_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The part of ``serialize_context()`` that every task of the flow run shares."""
    full = serialize_context(asset_ctx_kwargs=asset_kwargs)
    return {key: full[key] for key in SHARED_CONTEXT_KEYS}


def task_context(asset_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The part of ``serialize_context()`` that is the task's own."""
    task_run_context = TaskRunContext.get()
    return {
        "task_run_context": task_run_context.serialize() if task_run_context else {},
        "tags_context": TagsContext.get().serialize(),
        "asset_context": AssetContext.from_task_and_inputs(**asset_kwargs).serialize(),
    }


def forget_task_run_assets(task_run_ids: Iterable[uuid.UUID]) -> None:
    """Drop the flow run's empty asset records of these task runs.

    ``AssetContext.from_task_and_inputs`` records, for every task run it prepares, the assets
    downstream task runs inherit (``FlowRunContext.task_run_assets``); for a task without
    assets that is an empty set, held until the flow ends: ~350 bytes per mini-batch, 35 MB
    for a job of 100,000. A record with assets is kept.
    """
    context = FlowRunContext.get()
    if context is None:
        return
    for task_run_id in task_run_ids:
        if not context.task_run_assets.get(task_run_id, True):
            del context.task_run_assets[task_run_id]


def task_inputs(value: Any) -> set[Any]:
    """A parameter's upstream task runs (Dask futures count), as prefect-dask collects them."""
    return collect_task_run_inputs_sync(value, future_cls=distributed.Future)


# --- the worker side ------------------------------------------------------------------------


def hydrate_settings(serialized: dict[str, Any]) -> SettingsContext:
    """A ``SettingsContext`` from its serialised form (validates the whole settings model)."""
    return SettingsContext(**serialized)


def open_client() -> SyncClientContext:
    """A ``SyncClientContext`` whose client is open, for one worker thread's task runs."""
    context = SyncClientContext()
    context.client.__enter__()
    return context


def close_client(context: SyncClientContext) -> None:
    """Close what :func:`open_client` opened (its HTTP connections included)."""
    context.client.__exit__(None, None, None)


def client_is_open(client: Any) -> bool:
    """Whether a Prefect API client (sync or async) was started and not closed.

    Reads ``_started``/``_closed`` of ``SyncPrefectClient``/``PrefectClient``; for counting
    open clients in tests and diagnostics only.
    """
    return bool(getattr(client, "_started", False)) and not getattr(client, "_closed", True)


@contextlib.contextmanager
def using_client(context: SyncClientContext) -> Iterator[None]:
    """Make ``get_client(sync_client=True)`` in this thread return ``context``'s client."""
    reset = SyncClientContext.__var__.set(context)
    try:
        yield
    finally:
        SyncClientContext.__var__.reset(reset)


def quiet_console() -> None:
    """Raise Prefect's console handlers to WARNING in this process (API logging unchanged)."""
    ensure_logging_setup()
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(max(handler.level, logging.WARNING))


def run_task(task: Any, kwargs: dict[str, Any]) -> Any:
    """Run a task run to its final state in this thread, as prefect-dask's worker does."""
    if task.isasync:
        return asyncio.run(run_task_async(**kwargs))
    return run_task_sync(**kwargs)
