"""Fanning mini-batches out on Dask and collecting their results as they arrive.

A window of them at a time (:mod:`flows.window`), paced to what the Prefect server has
recorded (:mod:`flows.event_pace`), each result recorded in the job's
:class:`~flows.result_log.ResultLog` and released from Dask.

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
from prefect.runtime import flow_run
from prefect.states import State
from prefect_dask import DaskTaskRunner

from blocks.errors import ErrorCategory, MiniBatchAttemptError
from flows.cancel import request_stop
from flows.event_pace import EventPace, configured_lag
from flows.job import ScoringJob
from flows.planning import MiniBatch
from flows.processes import job_processes
from flows.result_log import ResultLog
from flows.results import MiniBatchResult
from flows.task_runner import ScoringTaskRunner
from flows.tasks import score_mini_batch
from flows.threshold import ErrorBudget
from flows.window import SubmitWindow, submit_window

#: Called with the job's results so far (their running counts: ``results.counts``), at
#: most every 2 s and once all are in.
ProgressCallback = Callable[[ResultLog], None]


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
    todo: Sequence[MiniBatch],
    results: ResultLog,
    *,
    max_retries: int,
    budget: ErrorBudget,
    logger: logging.Logger | logging.LoggerAdapter,
    on_progress: ProgressCallback | None = None,
    pace: EventPace | None = None,
) -> None:
    """Run the mini-batches ``todo`` (one Prefect task each) and record their results.

    At most :func:`~flows.window.submit_window` mini-batches are in Dask at a time, and each
    result is released from Dask and the flow as soon as it is recorded, so memory does not
    grow with the job; ``pace`` holds submissions back while the Prefect server lags (by
    default :class:`~flows.event_pace.EventPace` for the current flow run). Mini-batches
    that never ran (the job stopped first) are recorded as canceled.
    """
    own_pace = pace is None
    if pace is None:
        pace = EventPace(flow_run.get_id(), configured_lag(), logger)
    try:
        with job_processes(runner.client, job, len(todo), logger):
            _score(runner, job, todo, max_retries, budget, logger, on_progress, pace, results)
    finally:
        if own_pace:
            pace.close()
    for mini_batch in todo:
        if mini_batch.index not in results:
            results.record(MiniBatchResult.canceled(mini_batch.index, len(mini_batch)))


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
    todo: Sequence[MiniBatch],
    max_retries: int,
    budget: ErrorBudget,
    logger: logging.Logger | logging.LoggerAdapter,
    on_progress: ProgressCallback | None,
    pace: EventPace,
    results: ResultLog,
) -> None:
    """Submit the mini-batches window by window and record their results until done or
    over the threshold."""
    client = runner.client
    task = score_mini_batch.with_options(retries=max_retries - 1)
    window = SubmitWindow(len(todo), submit_window())
    pending: dict[str, tuple[distributed.Future, MiniBatch]] = {}
    stream = distributed.as_completed([], loop=client.loop)
    last_report = 0.0

    def top_up() -> None:
        room = window.room(len(pending))
        if room:
            room = min(room, pace.room(window.submitted))
        if room <= 0:
            return
        chunk = window.take(todo, room)
        futures = [f.wrapped_future for f in _submit(runner, task, job, chunk)]
        pending.update((f.key, (f, mb)) for f, mb in zip(futures, chunk, strict=True))
        stream.update(futures)

    while True:
        top_up()
        if not pending:
            if window.done:
                return
            pace.wait(window.submitted)  # nothing in flight: only the server holds it back
            continue
        batch = stream.next_batch(block=True)
        by_key = {f.key: pending.pop(f.key)[1] for f in batch}
        for _mini_batch, result in _results_of(client, batch, by_key):
            results.record(result)
            budget.record(result.failed if result.status == "failed" else 0)
        del batch, by_key  # the results are recorded: Dask may forget them
        if budget.exceeded:
            logger.error(
                "%d failed items exceed the error threshold %d; stopping the job.",
                budget.failed_items,
                budget.threshold,
            )
            futures = [f for f, _ in pending.values()]
            _stop(client, job, futures)
            ended = {  # those that were on a worker: reported as they ended, not as canceled
                f.key: mini_batch
                for f, mini_batch in pending.values()
                if f.status in ("finished", "error") and mini_batch.index not in results
            }
            ended_futures = [f for f in futures if f.key in ended]
            for _mini_batch, result in _results_of(client, ended_futures, ended):
                results.record(result)
            return
        if on_progress and (time.monotonic() - last_report > 2 or window.done and not pending):
            _report_progress(on_progress, results, logger)
            last_report = time.monotonic()


def _report_progress(
    on_progress: ProgressCallback,
    results: ResultLog,
    logger: logging.Logger | logging.LoggerAdapter,
) -> None:
    """Report progress; a failure (e.g. a busy Prefect API answering 500) never stops a job."""
    try:
        on_progress(results)
    except Exception as exc:  # noqa: BLE001 - progress is informative only
        logger.warning("Updating the job's progress failed (%s); the job goes on.", exc)
