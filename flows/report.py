"""The job report users look for: one row per mini-batch, and every failed attempt in full."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from blocks.errors import ErrorCategory
from flows.result_log import in_index_order
from flows.results import AttemptRecord, MiniBatchResult
from flows.storage import Location

REPORT_COLUMNS = (
    "mini_batch_id",
    "attempts",
    "process",
    "start_time",
    "total_items",
    "succeeded",
    "failed",
    "elapsed_seconds",
    "status",
    "error_category",
    "error_message",
)


def report_rows(results: Iterable[MiniBatchResult]) -> Iterator[dict[str, Any]]:
    """The report's rows, in mini-batch order, one at a time (``results`` may be a job's
    on-disk :class:`~flows.result_log.ResultLog`)."""
    for r in in_index_order(results):
        yield {
            "mini_batch_id": r.index,
            "attempts": r.attempts,
            "process": r.process,
            "start_time": r.start_time,
            "total_items": r.total_items,
            "succeeded": r.succeeded,
            "failed": r.failed,
            "elapsed_seconds": round(r.elapsed_seconds, 3),
            "status": r.status,
            "error_category": r.error_category or "",
            "error_message": r.error_message,
        }


def stream_processed_csv(
    results: Iterable[MiniBatchResult], rows_per_chunk: int = 5000
) -> Iterator[bytes]:
    """``processed_mini-batches.csv`` in chunks: a large job's report is never whole in
    memory."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for number, row in enumerate(report_rows(results), 1):
        writer.writerow(row)
        if number % rows_per_chunk == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


_STOPPED = "(no traceback: the process was stopped)"


def render_errors(failures: Sequence[AttemptRecord]) -> bytes:
    """Every failed attempt (mini-batch, attempt, category, files, full traceback), and the
    failed files of succeeded attempts (``item_error``, with the reason of each)."""
    if not failures:
        return b"No failed attempts.\n"
    blocks = []
    for f in failures:
        files = "\n".join(f"    {name}" for name in f.files)
        # failed items of a succeeded attempt have reasons, not a traceback; nothing stopped
        trace = f.traceback or ("" if f.category == ErrorCategory.ITEM_ERROR else _STOPPED)
        blocks.append(
            f"=== mini-batch {f.mini_batch_id}, attempt {f.attempt} ({f.category})"
            f"{' on ' + f.process if f.process else ''}\n"
            f"{f.detail}\nfiles:\n{files}\n{trace}".rstrip()
            + "\n"
        )
    return "\n".join(blocks).encode()


def write_report(
    logs: Location, results: Iterable[MiniBatchResult], failures: Sequence[AttemptRecord]
) -> None:
    """Write ``processed_mini-batches.csv`` and ``errors.txt`` into ``logs``."""
    logs.makedirs()
    logs.join("processed_mini-batches.csv").write_atomic(stream_processed_csv(results))
    logs.join("errors.txt").write_atomic([render_errors(failures)])
