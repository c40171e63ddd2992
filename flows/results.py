"""What a job's parts produce: small, frozen, picklable records, serialised here and only here.

- :class:`MiniBatchResult`: the final outcome of one mini-batch (after its retries);
- :class:`AttemptRecord`: one failed attempt, as the staging area keeps it (JSON);
- :class:`JobCounts`: the job's totals, also published on its Prefect flow run as labels
  (``pbe.items_failed: 3``) so that ``pbe job show`` reads them back without parsing text.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from blocks.errors import ErrorCategory, MiniBatchAttemptError

MiniBatchStatus = Literal["succeeded", "failed", "canceled"]


@dataclass(frozen=True)
class MiniBatchResult:
    """The final outcome of one mini-batch (after its retries)."""

    index: int
    total_items: int
    succeeded: int
    failed: int
    attempts: int
    status: MiniBatchStatus
    process: str = ""
    start_time: str = ""
    elapsed_seconds: float = 0.0
    error_category: ErrorCategory | None = None
    error_message: str = ""
    extra_rows: int = 0

    @classmethod
    def canceled(cls, index: int, total_items: int) -> MiniBatchResult:
        """A mini-batch that never ran because the job stopped first."""
        return cls(
            index, total_items, 0, total_items, 0, "canceled", error_category=ErrorCategory.CANCELED
        )


@dataclass(frozen=True)
class AttemptRecord:
    """One failed attempt at one mini-batch: what ``logs/errors.txt`` shows."""

    mini_batch_id: int
    attempt: int
    category: ErrorCategory
    detail: str
    files: tuple[str, ...]
    process: str = ""
    traceback: str = ""

    @classmethod
    def of(cls, error: MiniBatchAttemptError) -> AttemptRecord:
        return cls(
            int(error.mini_batch_id),
            error.attempt,
            error.category,
            error.detail,
            tuple(error.files),
            error.process,
            error.traceback,
        )

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> AttemptRecord:
        fields = json.loads(data)
        return cls(
            **{
                **fields,
                "category": ErrorCategory(fields["category"]),
                "files": tuple(fields["files"]),
            }
        )


@dataclass(frozen=True)
class JobCounts:
    """Totals over the mini-batches that have finished."""

    mini_batches: int = 0
    mini_batches_succeeded: int = 0
    mini_batches_failed: int = 0
    mini_batches_canceled: int = 0
    items: int = 0
    items_succeeded: int = 0
    items_failed: int = 0

    @classmethod
    def of(cls, results: Iterable[MiniBatchResult]) -> JobCounts:
        counts = cls()
        for result in results:
            counts = counts.add(result)
        return counts

    def add(self, result: MiniBatchResult) -> JobCounts:
        """These counts with ``result`` added."""
        status = {"succeeded": "mini_batches_succeeded", "failed": "mini_batches_failed",
                  "canceled": "mini_batches_canceled"}[result.status]  # fmt: skip
        canceled = result.status == "canceled"
        return dataclasses.replace(
            self,
            mini_batches=self.mini_batches + 1,
            items=self.items + result.total_items,
            items_succeeded=self.items_succeeded + result.succeeded,
            items_failed=self.items_failed + (0 if canceled else result.failed),
            **{status: getattr(self, status) + 1},
        )

    def summary(self) -> str:
        text = (
            f"{self.mini_batches} mini-batches: {self.mini_batches_succeeded} succeeded, "
            f"{self.mini_batches_failed} failed"
        )
        if self.mini_batches_canceled:
            text += f", {self.mini_batches_canceled} canceled"
        return (
            f"{text}; {self.items} items: {self.items_succeeded} succeeded, "
            f"{self.items_failed} failed"
        )

    def to_labels(self) -> dict[str, int]:
        """The counts as Prefect flow run labels (``pbe.<field>``)."""
        return {f"pbe.{name}": value for name, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_labels(cls, labels: Mapping[str, Any]) -> JobCounts | None:
        """The counts a flow run's labels carry, or None when it has none (yet)."""
        names = [f.name for f in dataclasses.fields(cls)]
        if f"pbe.{names[0]}" not in labels:
            return None
        return cls(**{name: int(labels.get(f"pbe.{name}", 0)) for name in names})


def failure_cause(failures: Sequence[AttemptRecord]) -> str | None:
    """What most failed attempts failed of: the category, its first message and mini-batch."""
    if not failures:
        return None
    by_category = Counter(f.category for f in failures)
    category, count = by_category.most_common(1)[0]
    first = next(f for f in failures if f.category == category)
    return (
        f"{first.detail} ({category}, mini-batch {first.mini_batch_id}; {count} of "
        f"{len(failures)} failed attempt{'s' if len(failures) > 1 else ''})"
    )


class JobResult(BaseModel):
    """What a finished job returns: where its output is and how it went."""

    job_name: str = Field(description="The job's name; `pbe job show -n` takes it.")
    status: Literal["Completed", "Failed", "Canceled"]
    output_path: str = Field(description="The folder the job wrote into.")
    output_file: str | None = Field(description="The merged file (append_row), else None.")
    mini_batches: int
    mini_batches_succeeded: int
    mini_batches_failed: int
    items: int
    items_succeeded: int
    items_failed: int
    cluster_seconds: float = Field(description="Time to start (or reach) the Dask cluster.")
    scoring_seconds: float = Field(description="Time from the first submission to the last result.")
    mini_batches_skipped: int = Field(
        default=0, description="Mini-batches committed by an earlier run, not scored again."
    )
    record: str | None = Field(default=None, description="The job's record (logs/job.json).")
    message: str
