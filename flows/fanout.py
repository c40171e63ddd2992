"""Fanning mini-batches out on Dask and collecting their results as they arrive.

``allow_failure`` is not honoured on Dask, and a Dask failure is not always reported as a
Prefect state, so the loop reads each task's final state from its Dask future itself, turns
it into a concrete :class:`MiniBatchResult`, and stops the job the moment the error
threshold is exceeded: outstanding mini-batches are cancelled and never run, and those
already running end and are reported as they ended.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import distributed
from prefect.states import State
from prefect_dask import DaskTaskRunner

from blocks.errors import ErrorCategory, MiniBatchAttemptError
from flows.cancel import request_stop
from flows.job import ScoringJob
from flows.planning import MiniBatch
from flows.processes import job_processes
from flows.results import MiniBatchResult
from flows.task_runner import ScoringTaskRunner
from flows.tasks import score_mini_batch
from flows.threshold import ErrorBudget

#: Called with the results so far and the number of mini-batches, at most every 2 s.
ProgressCallback = Callable[[list[MiniBatchResult], int], None]


def _failed(mini_batch: MiniBatch, error: BaseException) -> MiniBatchResult:
    if isinstance(error, MiniBatchAttemptError):
        return MiniBatchResult(
            index=mini_batch.index,
            total_items=len(mini_batch),
            succeeded=0,
            failed=len(mini_batch),
            attempts=error.attempt,
            status="failed",
            process=error.process,
            error_category=error.category,
            error_message=error.detail,
        )
    return MiniBatchResult(
        index=mini_batch.index,
        total_items=len(mini_batch),
        succeeded=0,
        failed=len(mini_batch),
        attempts=1,
        status="failed",
        error_category=ErrorCategory.SYSTEM_ERROR,
        error_message=f"{type(error).__name__}: {error}",
    )


def result_of(mini_batch: MiniBatch, dask_future: distributed.Future) -> MiniBatchResult:
    """The concrete outcome of one task, whatever Dask or Prefect made of it."""
    try:
        state: State = dask_future.result()
    except Exception as exc:  # KilledWorker, CancelledError, a lost scheduler …
        return _failed(mini_batch, exc)
    return _from_state(mini_batch, state)


def _from_state(mini_batch: MiniBatch, state: State) -> MiniBatchResult:
    if state.is_cancelled():
        return MiniBatchResult.canceled(mini_batch.index, len(mini_batch))
    value: Any = state.result(raise_on_failure=False)
    if isinstance(value, MiniBatchResult):
        return value
    if isinstance(value, BaseException):
        return _failed(mini_batch, value)
    return _failed(mini_batch, RuntimeError(f"unexpected task result {value!r}"))


def _results_of(
    client: distributed.Client, batch: list[distributed.Future], by_key: dict[str, MiniBatch]
) -> list[tuple[MiniBatch, MiniBatchResult]]:
    """The outcomes of a batch of finished futures, fetched in one round trip where possible."""
    finished = [f for f in batch if f.status == "finished"]
    others = [f for f in batch if f.status != "finished"]
    try:
        states = client.gather(finished) if finished else []
    except Exception:  # a worker lost between finishing and the gather: one by one
        others, states, finished = batch, [], []
    outcomes = [
        (by_key[f.key], _from_state(by_key[f.key], state))
        for f, state in zip(finished, states, strict=True)
    ]
    outcomes += [(by_key[f.key], result_of(by_key[f.key], f)) for f in others]
    return outcomes


def _stop(client: distributed.Client, job: ScoringJob, futures: list[distributed.Future]) -> None:
    """Cancel the mini-batches no worker has taken; let the ones on workers end.

    Those already on a worker check the stop event before each attempt, and a running
    attempt is bounded by the timeout, so their task runs reach a final state instead of
    staying Running in the UI.
    """
    request_stop(client, job.worker_state)
    on_workers = {key for keys in client.processing().values() for key in keys}
    pending = [f for f in futures if not f.done()]
    client.cancel([f for f in pending if f.key not in on_workers])
    with client.as_current(), contextlib.suppress(TimeoutError):
        distributed.wait([f for f in pending if f.key in on_workers], timeout=job.timeout + 10)


def score_all(
    runner: DaskTaskRunner,
    job: ScoringJob,
    plan: Sequence[MiniBatch],
    *,
    max_retries: int,
    budget: ErrorBudget,
    logger: logging.Logger | logging.LoggerAdapter,
    on_progress: ProgressCallback | None = None,
) -> list[MiniBatchResult]:
    """Run every mini-batch (one Prefect task each) and return their results by index."""
    with job_processes(runner.client, job, len(plan), logger):
        results = _score(runner, job, plan, max_retries, budget, logger, on_progress)
    for mini_batch in plan:
        if mini_batch.index not in results:
            results[mini_batch.index] = MiniBatchResult.canceled(mini_batch.index, len(mini_batch))
    return [results[index] for index in sorted(results)]


def _submit(runner: DaskTaskRunner, task: Any, job: ScoringJob, plan: Sequence[MiniBatch]):
    """One task run per mini-batch: as one graph on the fast runner, one by one on stock."""
    parameter_sets = [{"job": job, "mini_batch": mini_batch} for mini_batch in plan]
    if isinstance(runner, ScoringTaskRunner):
        runner.worker_state = job.worker_state
        return runner.submit_many(task, parameter_sets)
    return [runner.submit(task, parameters) for parameters in parameter_sets]


def _score(
    runner: DaskTaskRunner,
    job: ScoringJob,
    plan: Sequence[MiniBatch],
    max_retries: int,
    budget: ErrorBudget,
    logger: logging.Logger | logging.LoggerAdapter,
    on_progress: ProgressCallback | None,
) -> dict[int, MiniBatchResult]:
    """Submit the mini-batches and collect their results until done or over the threshold."""
    client = runner.client
    task = score_mini_batch.with_options(retries=max_retries - 1)
    submitted = _submit(runner, task, job, plan)
    futures = [future.wrapped_future for future in submitted]
    by_key = {future.key: mini_batch for future, mini_batch in zip(futures, plan, strict=True)}

    results: dict[int, MiniBatchResult] = {}
    last_report = 0.0
    stream = distributed.as_completed(futures, loop=client.loop)
    for batch in stream.batches():
        for mini_batch, result in _results_of(client, batch, by_key):
            results[mini_batch.index] = result
            budget.record(result.failed if result.status == "failed" else 0)
            if budget.exceeded:
                break
        if budget.exceeded:
            logger.error(
                "%d failed items exceed the error threshold %d; stopping the job.",
                budget.failed_items,
                budget.threshold,
            )
            _stop(client, job, futures)
            ended = [
                f
                for f in futures
                if f.status in ("finished", "error") and by_key[f.key].index not in results
            ]  # those that were on a worker: reported as they ended, not as canceled
            for mini_batch, result in _results_of(client, ended, by_key):
                results[mini_batch.index] = result
            break
        if on_progress and (time.monotonic() - last_report > 2 or len(results) == len(plan)):
            on_progress(list(results.values()), len(plan))
            last_report = time.monotonic()
    return results
