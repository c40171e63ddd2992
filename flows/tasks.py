"""The Prefect tasks of a batch job: one ``score-mini-batch`` task per mini-batch."""

from __future__ import annotations

import socket
import time
from datetime import datetime, timezone

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run
from prefect.states import Cancelled, State

from blocks.datastore import mask
from blocks.errors import ErrorCategory, MiniBatchAttemptError
from flows.cancel import stop_requested
from flows.inputs import local_copies
from flows.job import ScoringJob
from flows.planning import MiniBatch
from flows.results import MiniBatchResult
from flows.script_output import ScriptLog
from flows.worker_state import job_state
from scoring.dependencies import pip_name
from scoring.process import ScoringFailure
from scoring.results import ItemCounts


def _attempt_error(
    job: ScoringJob, mini_batch: MiniBatch, attempt: int, failure: ScoringFailure, process: str
) -> MiniBatchAttemptError:
    detail = failure.detail
    package = pip_name(failure.missing_module) if failure.missing_module else None
    if package and f"install {package}" not in detail:  # unless the error says it already
        detail += f" (the scoring environment lacks it: pip install {package})"
    return MiniBatchAttemptError(
        mini_batch_id=mini_batch.id,
        files=[mask(uri) for uri in mini_batch.files],
        attempt=attempt,
        category=failure.category,
        detail=detail,
        traceback=failure.traceback,
        process=process,
        retryable=not failure.permanent,
    )


def _score_mini_batch(job: ScoringJob, mini_batch: MiniBatch) -> MiniBatchResult | State:
    """Score one mini-batch in a scoring process of this worker; commit its rows on success.

    Raises :class:`MiniBatchAttemptError` for a failed attempt (Prefect retries it);
    returns a ``Cancelled`` state without running when the job was told to stop.
    """
    attempt = task_run.run_count or 1
    state = job_state(job.worker_state)  # the job's scoring processes and stop flag here
    if stop_requested(state):
        return Cancelled(message=f"mini-batch {mini_batch.id} not run: the job is stopping")
    logger = get_run_logger()
    script = ScriptLog(logger, job.script_log_lines)  # the script's own lines, budgeted
    started = datetime.now(timezone.utc)
    clock = time.monotonic()
    process_name = socket.gethostname()
    try:
        with local_copies(mini_batch.files, job.input_storage_options) as paths:
            with state.pool.borrow(job.process, job.fork_server) as process:
                process_name = process.label
                script(process.take_init_logs())
                outcome = process.run(
                    paths, timeout=job.timeout, want_rows=job.append_rows, on_output=script
                )
    except ScoringFailure as failure:
        process_name = failure.process or process_name  # init() failed: the process's name
        script(failure.logs)
        error = _attempt_error(job, mini_batch, attempt, failure, process_name)
    except Exception as exc:  # a download or staging failure is a failed attempt too
        failure = ScoringFailure(ErrorCategory.SYSTEM_ERROR, f"{type(exc).__name__}: {exc}")
        error = _attempt_error(job, mini_batch, attempt, failure, process_name)
    else:
        error = None
        script(outcome.logs)
    script.finish(process_name, job.logs)
    if error is not None:
        job.staging.record_failure(error)
        if error.traceback:  # the script's own traceback, once per attempt, as its own line
            script.logger.error(
                "Mini-batch %s attempt %d: %s\n%s",
                mini_batch.id,
                attempt,
                error.detail,
                error.traceback.rstrip(),
            )
        raise error

    named = outcome.failed_items
    counts = ItemCounts(
        total=len(mini_batch),
        returned=outcome.returned,
        named_failures=None if named is None else len(named),
    )
    item_error = _item_failures(job, mini_batch, attempt, process_name, paths, named or [])
    for line in item_error.splitlines()[1:]:
        logger.warning("Mini-batch %s: %s", mini_batch.id, line)
    if counts.extra:
        logger.warning(
            "Mini-batch %s: run() returned %d rows for %d files; the extra rows are kept.",
            mini_batch.id,
            counts.returned,
            counts.total,
        )
    if counts.failed and named is None:
        logger.warning(
            "Mini-batch %s: run() returned %d rows for %d files; %d items count as failed.",
            mini_batch.id,
            counts.returned,
            counts.total,
            counts.failed,
        )
    if job.append_rows:
        job.staging.commit_rows(mini_batch.index, outcome.rows or b"")
    return MiniBatchResult(
        index=mini_batch.index,
        total_items=counts.total,
        succeeded=counts.succeeded,
        failed=counts.failed,
        attempts=attempt,
        status="succeeded",
        process=process_name,
        start_time=started.isoformat(timespec="milliseconds"),
        elapsed_seconds=time.monotonic() - clock,
        error_category=ErrorCategory.ITEM_ERROR if item_error else None,
        error_message="; ".join(item_error.splitlines()),
        extra_rows=counts.extra,
    )


def _item_failures(
    job: ScoringJob,
    mini_batch: MiniBatch,
    attempt: int,
    process: str,
    paths: list[str],
    failed: list[tuple[str, str]],
) -> str:
    """Record the files run() named as failed (errors.txt); a summary line, then one per file."""
    if not failed:
        return ""
    original = dict(zip(paths, (mask(uri) for uri in mini_batch.files), strict=True))
    files = [original.get(path, path) for path, _ in failed]
    rest = "; the other files scored" if len(failed) < len(mini_batch) else ""
    lines = [f"{len(failed)} of {len(mini_batch)} files failed{rest}"]
    lines += [f"{file}: {reason}" for file, (_, reason) in zip(files, failed, strict=True)]
    detail = "\n".join(lines)
    job.staging.record_item_failures(mini_batch.id, attempt, process, files, detail)
    return detail


def _worth_retrying(task: object, task_run: object, state: State) -> bool:
    """Prefect's retry condition: retry unless the script itself cannot run (a syntax
    error, a missing module, no run()): no other attempt could end differently."""
    error = state.result(raise_on_failure=False)
    return not (isinstance(error, MiniBatchAttemptError) and not error.retryable)


# The task wraps a module-level function so that Dask pickles it by reference, not by value
# with its globals.
score_mini_batch = task(
    _score_mini_batch,
    name="score-mini-batch",
    task_run_name="mini-batch-{mini_batch.index}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retry_delay_seconds=0,
    retry_condition_fn=_worth_retrying,
)
