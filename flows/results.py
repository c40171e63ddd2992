"""What a mini-batch and a job produce: small, picklable records with the counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

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
    error_category: str = ""
    error_message: str = ""
    extra_rows: int = 0

    @classmethod
    def canceled(cls, index: int, total_items: int) -> MiniBatchResult:
        """A mini-batch that never ran because the job stopped first."""
        return cls(index, total_items, 0, total_items, 0, "canceled", error_category="canceled")


@dataclass
class JobCounts:
    """Running totals over the mini-batches that have finished."""

    mini_batches: int = 0
    mini_batches_succeeded: int = 0
    mini_batches_failed: int = 0
    mini_batches_canceled: int = 0
    items: int = 0
    items_succeeded: int = 0
    items_failed: int = 0

    def add(self, result: MiniBatchResult) -> None:
        self.mini_batches += 1
        self.items += result.total_items
        self.items_succeeded += result.succeeded
        if result.status == "canceled":
            self.mini_batches_canceled += 1
            return
        self.items_failed += result.failed
        if result.status == "succeeded":
            self.mini_batches_succeeded += 1
        else:
            self.mini_batches_failed += 1

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
    message: str
