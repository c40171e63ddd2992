"""A job's durable record, ``<output>/logs/job.json``: serialised here and only here.

The flow writes it when the job starts, as it runs (throttled, on progress) and when it
ends, atomically (a reader sees a whole record or the previous one). It holds the settings
after overrides, the input's fingerprint digest and file count, the plan, the counts, the
status and timings, and one :class:`RunAttempt` per run of the job (a resume adds one).
A job whose process was killed keeps ``status: Running`` here; Prefect's state of its flow
run (``Crashed``) is then the authority, and ``pbe job show`` shows both.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from blocks.errors import StorageError
from flows.results import JobCounts
from flows.storage import Location

__all__ = ["JobRecord", "RunAttempt", "now", "read_record", "record_location"]

RECORD_VERSION = 1


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def record_location(output: Location) -> Location:
    """Where the record of the job writing into ``output`` lives."""
    return output.join("logs", "job.json")


@dataclass(frozen=True)
class RunAttempt:
    """One run of the job: the first, or a resume (a new run or a Prefect retry)."""

    flow_run_id: str | None
    started: str
    ended: str | None = None
    status: str = "Running"
    mini_batches_to_score: int = 0
    mini_batches_scored: int = 0
    mini_batches_skipped: int = 0


@dataclass(frozen=True)
class JobRecord:
    """What a job is, what it was asked to do, and how far it got."""

    job_name: str
    status: str  # Running, Completed, Failed, Canceled
    input: str
    input_type: str
    output_path: str
    output_file: str | None
    settings: dict[str, Any]
    input_files: int
    input_digest: str
    mini_batch_size: int
    mini_batches: int
    started: str
    counts: JobCounts = field(default_factory=JobCounts)
    mini_batches_done: int = 0
    ended: str | None = None
    message: str = ""
    attempts: tuple[RunAttempt, ...] = ()
    version: int = RECORD_VERSION

    @property
    def resumed(self) -> bool:
        return len(self.attempts) > 1

    def with_attempt(self, **changes: Any) -> JobRecord:
        """This record with its last attempt changed."""
        last = dataclasses.replace(self.attempts[-1], **changes)
        return dataclasses.replace(self, attempts=(*self.attempts[:-1], last))

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> JobRecord:
        fields = json.loads(data)
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in fields.items() if k in known}
        fields["counts"] = JobCounts(**fields.get("counts", {}))
        fields["attempts"] = tuple(RunAttempt(**a) for a in fields.get("attempts", ()))
        return cls(**fields)

    def write(self, output: Location) -> None:
        record_location(output).write_atomic([self.to_json()])

    def summary(self) -> dict[str, Any]:
        """What ``pbe job show`` adds to a job: resumed or not, and each run's work."""
        return {
            "record_status": self.status,
            "resumed": self.resumed,
            "mini_batches_committed": self.mini_batches_done,
            "input_files": self.input_files,
            "mini_batch_size": self.mini_batch_size,
            "attempts": [
                {
                    "flow_run_id": a.flow_run_id,
                    "started": a.started,
                    "ended": a.ended,
                    "status": a.status,
                    "mini_batches_scored": a.mini_batches_scored,
                    "mini_batches_skipped": a.mini_batches_skipped,
                }
                for a in self.attempts
            ],
        }


def read_record(output: Location) -> JobRecord | None:
    """The record in ``output``, or None when there is none (or it cannot be read)."""
    location = record_location(output)
    try:
        if not location.exists():
            return None
        return JobRecord.from_json(location.read_bytes())
    except (StorageError, ValueError, TypeError, KeyError):
        return None
