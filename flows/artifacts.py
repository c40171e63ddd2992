"""The job in the Prefect UI: a markdown summary and a table of its mini-batches.

Both are artifacts of the job's flow run, made for every job that got to scoring, failed
ones included. Their keys (:func:`artifact_key`) name the endpoint and deployment, so the
latest of each is one look-up away: ``<endpoint>--<deployment>-summary``,
``-mini-batches`` and ``-progress`` (the progress artifact, :mod:`flows.job_progress`).
"""

from __future__ import annotations

import heapq
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.report import report_rows
from flows.results import AttemptRecord, JobCounts, MiniBatchResult
from flows.storage import Location

#: Rows of the mini-batch table; the rest are counted and left to the CSV.
TABLE_ROWS = 100
_STATUS_ORDER = {"failed": 0, "canceled": 1, "succeeded": 2}


def artifact_key(endpoint: str | None, deployment: str, kind: str) -> str:
    """``<endpoint>--<deployment>-<kind>`` as a Prefect artifact key (lowercase letters,
    digits and dashes); ``<deployment>-<kind>`` for a job run without an endpoint."""

    def slug(text: str) -> str:
        return re.sub(r"-{3,}", "--", re.sub(r"[^a-z0-9-]+", "-", text.lower())).strip("-")

    parts = [slug(endpoint), slug(deployment)] if endpoint else [slug(deployment)]
    return f"{'--'.join(p for p in parts if p) or 'job'}-{kind}"


class PhaseClock:
    """How long each phase of the job took: :meth:`lap` ends the current one."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.phases[name] = self.phases.get(name, 0.0) + now - self._last
        self._last = now


@dataclass
class JobSummary:
    """What the summary says about one job."""

    job_name: str
    endpoint: str | None
    deployment: str
    output: Location
    output_file: str | None
    error_threshold: int
    clock: PhaseClock = field(default_factory=PhaseClock)
    counts: JobCounts = field(default_factory=JobCounts)
    failures: Sequence[AttemptRecord] = ()
    #: the mini-batch table's rows and how many were left out (None before scoring ended)
    table: tuple[list[dict[str, Any]], int] | None = None

    def scored(
        self,
        counts: JobCounts,
        results: Iterable[MiniBatchResult],
        failures: Sequence[AttemptRecord],
    ) -> None:
        """What scoring gave: the counts, the failures, and the table's rows (read once from
        ``results``, which may be a job's on-disk log)."""
        self.counts, self.failures, self.table = counts, failures, table_rows(results)

    def key(self, kind: str) -> str:
        return artifact_key(self.endpoint, self.deployment, kind)

    def publish(self, status: str, message: str, logger: Any = None) -> None:
        """Create the summary and the mini-batch table (the table only after scoring);
        a failure to do so is logged, never raised."""
        self.clock.lap("finish")
        try:
            self._publish(status, message)
        except Exception as exc:  # noqa: BLE001 - the job's outcome matters more
            if logger is not None:
                logger.warning("Creating the job's artifacts failed: %s", exc)

    def _publish(self, status: str, message: str) -> None:
        create_markdown_artifact(
            markdown=render_summary(self, status, message),
            key=self.key("summary"),
            description=f"Job {self.job_name}: {status}",
        )
        if self.table is not None and self.table[0]:
            rows, left_out = self.table
            csv = self.output.join("logs", "processed_mini-batches.csv").display
            note = f"; {left_out} more rows not shown" if left_out else ""
            create_table_artifact(
                table=rows,
                key=self.key("mini-batches"),
                description=f"Mini-batches of job {self.job_name}, failed ones first{note}. "
                f"The full table: {csv}",
            )


def table_rows(results: Iterable[MiniBatchResult]) -> tuple[list[dict[str, Any]], int]:
    """The table's rows (failed, then canceled, then succeeded; capped) and how many were
    left out; only the rows shown are ever held."""
    count = 0

    def counted(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        nonlocal count
        for count, row in enumerate(rows, 1):  # noqa: B007 - counted as they pass
            yield row

    rows = heapq.nsmallest(
        TABLE_ROWS,
        counted(report_rows(results)),
        key=lambda r: (_STATUS_ORDER.get(r["status"], 3), r["mini_batch_id"]),
    )
    for row in rows:
        if len(row["error_message"]) > 300:
            row["error_message"] = row["error_message"][:300] + " …"
    return rows, max(count - TABLE_ROWS, 0)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _failure_groups(failures: Sequence[AttemptRecord]) -> list[tuple[str, int, int, str]]:
    """(category, failed attempts, mini-batches, first message) by category."""
    attempts: dict[str, int] = defaultdict(int)
    mini_batches: dict[str, set[int]] = defaultdict(set)
    first: dict[str, str] = {}
    for failure in failures:
        category = str(failure.category)
        attempts[category] += 1
        mini_batches[category].add(failure.mini_batch_id)
        first.setdefault(category, failure.detail)
    return [(c, attempts[c], len(mini_batches[c]), first[c]) for c in sorted(attempts)]


def render_summary(summary: JobSummary, status: str, message: str) -> str:
    """The summary artifact's markdown."""
    counts = summary.counts
    where = f"endpoint `{summary.endpoint}`, " if summary.endpoint else ""
    logs = summary.output.join("logs").display
    lines = [
        f"# Job {summary.job_name}: {status}",
        "",
        f"{where}deployment `{summary.deployment}`",
        "",
        f"> {_cell(message)}",
        "",
        "| | mini-batches | items |",
        "| --- | ---: | ---: |",
        f"| total | {counts.mini_batches} | {counts.items} |",
        f"| succeeded | {counts.mini_batches_succeeded} | {counts.items_succeeded} |",
        f"| failed | {counts.mini_batches_failed} | {counts.items_failed} |",
        f"| canceled | {counts.mini_batches_canceled} | "
        f"{counts.items - counts.items_succeeded - counts.items_failed} |",
        "",
        f"- **Output:** `{summary.output_file or summary.output.display}`",
        f"- **Reports:** `processed_mini-batches.csv`, `errors.txt` and the script's own "
        f"output (`user/`) in `{logs}`",
        f"- **Error threshold:** {summary.error_threshold}"
        + (
            " (never stops the job)"
            if summary.error_threshold < 0
            else f" failed items (this job: {counts.items_failed})"
        ),
        "",
        "## Time per phase",
        "",
        "| phase | seconds |",
        "| --- | ---: |",
        *[f"| {name} | {seconds:.1f} |" for name, seconds in summary.clock.phases.items()],
        f"| **total** | {sum(summary.clock.phases.values()):.1f} |",
        "",
        "## Failures by category",
        "",
    ]
    groups = _failure_groups(summary.failures)
    if not groups:
        lines.append("No failed attempts.")
    else:
        lines += [
            "| category | failed attempts | mini-batches | first message |",
            "| --- | ---: | ---: | --- |",
        ]
        lines += [f"| {c} | {a} | {m} | {_cell(text)} |" for c, a, m, text in groups]
    return "\n".join(lines) + "\n"
