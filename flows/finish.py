"""The end of a job: decide whether it failed, then merge the committed rows."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.errors import ErrorCategory, JobFailed, MiniBatchTimedOut, NoSucceededItems
from flows.results import AttemptRecord, JobCounts, MiniBatchResult, failure_cause
from flows.staging import JobStaging
from flows.storage import Location
from flows.threshold import ErrorBudget


def timed_out_every_attempt(failures: Sequence[AttemptRecord], result: MiniBatchResult) -> bool:
    """True when every attempt of a failed mini-batch ended in a timeout."""
    if result.status != "failed" or result.attempts < 1:
        return False
    categories = [f.category for f in failures if f.mini_batch_id == result.index]
    return len(categories) >= result.attempts and all(
        c == ErrorCategory.TIMEOUT for c in categories
    )


def check_outcome(
    counts: JobCounts,
    results: Sequence[MiniBatchResult],
    failures: Sequence[AttemptRecord],
    *,
    error_threshold: int,
    append_rows: bool,
    report: str,
) -> None:
    """Raise :class:`JobFailed` (threshold, timeouts, nothing scored), saying why and where
    the full report (``report``) is."""
    try:
        ErrorBudget(error_threshold, counts.items_failed).check()
        timed_out = [r.index for r in results if timed_out_every_attempt(failures, r)]
        if timed_out:
            shown = ", ".join(map(str, timed_out[:10]))
            raise MiniBatchTimedOut(
                f"Mini-batch(es) {shown} timed out on every attempt ({counts.summary()}).",
                hint="raise retry_settings.timeout (or --set timeout=N), or make run() faster; "
                "logs/errors.txt names the files",
            )
        if append_rows and counts.items and counts.items_succeeded == 0:
            raise NoSucceededItems(
                f"No item succeeded ({counts.summary()}).",
                hint="logs/errors.txt beside the output has each failed attempt with its traceback",
            )
    except JobFailed as failed:
        raise failed.explained(failure_cause(failures), report) from None


@task(name="merge-output", cache_policy=NO_CACHE, persist_result=False)
def merge_output(staging: JobStaging, results: Sequence[MiniBatchResult], target: Location) -> int:
    """Write the succeeded mini-batches' rows, in mini-batch order, atomically; return bytes."""
    indices = [r.index for r in results if r.status == "succeeded"]
    return target.write_atomic(staging.rows(indices))
