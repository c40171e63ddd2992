"""The end of a job: reduce the mini-batch results, then merge the committed rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.errors import MiniBatchTimedOut, NoSucceededItems
from flows.results import JobCounts, MiniBatchResult
from flows.staging import JobStaging
from flows.storage import Location
from flows.threshold import ErrorBudget


def timed_out_every_attempt(failures: Sequence[dict[str, Any]], result: MiniBatchResult) -> bool:
    """True when every attempt of a failed mini-batch ended in a timeout."""
    if result.status != "failed" or result.attempts < 1:
        return False
    categories = [f["category"] for f in failures if int(f["mini_batch_id"]) == result.index]
    return len(categories) >= result.attempts and all(c == "timeout" for c in categories)


@task(name="reduce-results", cache_policy=NO_CACHE, persist_result=False)
def reduce_results(
    results: Sequence[MiniBatchResult],
    failures: Sequence[dict[str, Any]],
    *,
    error_threshold: int,
    append_rows: bool,
) -> JobCounts:
    """Count the job's items and decide whether it failed (threshold, timeouts, nothing scored)."""
    counts = JobCounts()
    for result in results:
        counts.add(result)
    budget = ErrorBudget(error_threshold, counts.items_failed)
    budget.check()
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
    return counts


@task(name="merge-output", cache_policy=NO_CACHE, persist_result=False)
def merge_output(staging: JobStaging, results: Sequence[MiniBatchResult], target: Location) -> int:
    """Write the succeeded mini-batches' rows, in mini-batch order, atomically; return bytes."""
    indices = [r.index for r in results if r.status == "succeeded"]
    return target.write_atomic(staging.rows(indices))
