"""Starting, continuing and ending a job: its record, its fingerprint, what is left to score.

A fresh job clears any stale staging folder of its name, writes its input's fingerprint
there (``input.tsv``) and its record (``logs/job.json``). A resumed job — ``resume=True``
(``pbe job resume``), or a Prefect retry of its flow run — finds both, refuses when the
input changed or ``mini_batch_size`` differs, and scores only the mini-batches without a
committed part; those already committed count as succeeded without running again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from blocks.errors import ErrorCategory, ResumeRefused
from blocks.spec import JobSettings
from flows import fingerprint as fp
from flows.job_record import JobRecord, RunAttempt, now, read_record
from flows.planning import MiniBatch
from flows.results import AttemptRecord, JobCounts, MiniBatchResult
from flows.staging import JobStaging
from flows.storage import Location

__all__ = ["JobJournal", "check_resumable", "job_to_resume"]

_NEW_JOB = "start a new job instead: pbe batch-endpoint invoke (with another --job-name)"


def job_to_resume(
    output: Location, job_name: str, *, resume: bool, retried: bool
) -> JobRecord | None:
    """The record of the job this run continues, or None when it starts afresh.

    ``resume`` asks for it (an error when there is nothing to resume); a ``retried`` flow
    run (Prefect's retry) continues the job when its record is there and not complete.
    """
    if not (resume or retried):
        return None
    record = read_record(output)
    if record is None or record.job_name != job_name:
        if resume:
            raise ResumeRefused(
                job_name, f"it has no record in {output.display}/logs", hint=_NEW_JOB
            )
        return None
    if record.status == "Completed":
        raise ResumeRefused(
            job_name,
            "it completed",
            hint="its output is complete; to score the input again, " + _NEW_JOB,
        )
    return record


def input_changes(staging: JobStaging, stamps: Sequence[fp.FileStamp]) -> fp.InputChanges:
    """How the input now differs from the fingerprint the job started with."""
    return fp.compare(fp.parse(staging.root.join("input.tsv").read_bytes()), stamps)


@dataclass
class JobJournal:
    """The job's record as it runs: begun, advanced on progress (throttled), ended."""

    output: Location
    staging: JobStaging
    record: JobRecord
    committed: frozenset[int] = frozenset()
    every: float = 5.0
    _written: float = field(default=0.0, repr=False)

    @classmethod
    def begin(
        cls,
        *,
        previous: JobRecord | None,
        committed: frozenset[int],
        job_name: str,
        output: Location,
        staging: JobStaging,
        input_display: str,
        input_type: str,
        stamps: Sequence[fp.FileStamp],
        settings: JobSettings,
        plan: Sequence[MiniBatch],
        output_file: str | None,
        flow_run_id: str | None,
    ) -> JobJournal:
        """Write the record of a new job (and its fingerprint), or of one more run of
        ``previous`` whose ``committed`` mini-batches (see :func:`check_resumable`) stay."""
        digest = fp.digest(stamps)
        if previous is None:
            staging.remove()  # a stale folder of this name is not this job's
            staging.root.join("input.tsv").write_atomic([fp.render(stamps)])
            committed = frozenset()
            record = JobRecord(
                job_name=job_name,
                status="Running",
                input=input_display,
                input_type=input_type,
                output_path=output.display,
                output_file=output_file,
                settings=_settings(settings),
                input_files=len(stamps),
                input_digest=digest,
                mini_batch_size=settings.mini_batch_size,
                mini_batches=len(plan),
                started=now(),
            )
        else:
            record = dataclasses.replace(
                previous, status="Running", ended=None, message="", settings=_settings(settings)
            )
        todo = len(plan) - len(committed)
        attempt = RunAttempt(
            flow_run_id, now(), mini_batches_to_score=todo, mini_batches_skipped=len(committed)
        )
        record = dataclasses.replace(
            record, attempts=(*record.attempts, attempt), mini_batches_done=len(committed)
        )
        journal = cls(output, staging, record, committed)
        journal._write()
        return journal

    @property
    def resumed(self) -> bool:
        return len(self.record.attempts) > 1

    def remaining(self, plan: Sequence[MiniBatch]) -> list[MiniBatch]:
        return [mb for mb in plan if mb.index not in self.committed]

    def committed_results(
        self, plan: Sequence[MiniBatch], failures: Sequence[AttemptRecord]
    ) -> Iterator[MiniBatchResult]:
        """Committed mini-batches as results: succeeded, less the files run() named failed."""
        named: dict[int, tuple[int, int]] = {}  # index -> (attempt, failed files)
        for failure in failures:
            if failure.category == ErrorCategory.ITEM_ERROR:
                attempt, _ = named.get(failure.mini_batch_id, (0, 0))
                if failure.attempt >= attempt:
                    named[failure.mini_batch_id] = (failure.attempt, len(failure.files))
        for mb in plan:
            if mb.index in self.committed:
                failed = named.get(mb.index, (0, 0))[1]
                yield MiniBatchResult(
                    mb.index,
                    len(mb),
                    len(mb) - failed,
                    failed,
                    0,
                    "succeeded",
                    process="(an earlier run)",
                    error_category=ErrorCategory.ITEM_ERROR if failed else None,
                )

    def progress(self, done: int) -> None:
        """``done`` of this run's mini-batches have ended; written at most every few seconds."""
        self.record = dataclasses.replace(
            self.record.with_attempt(mini_batches_scored=done),
            mini_batches_done=len(self.committed) + done,
        )
        if time.monotonic() - self._written >= self.every:
            self._write()

    def end(
        self, status: str, counts: JobCounts | None, message: str, scored: int | None = None
    ) -> None:
        changes = {"status": status, "ended": now()}
        if scored is not None:
            changes["mini_batches_scored"] = scored
        record = self.record.with_attempt(**changes)
        self.record = dataclasses.replace(
            record,
            status=status,
            ended=now(),
            message=message,
            counts=counts if counts is not None else record.counts,
            mini_batches_done=(
                counts.mini_batches_succeeded if counts is not None else record.mini_batches_done
            ),
        )
        self._write()

    def _write(self) -> None:
        self.record.write(self.output)
        self._written = time.monotonic()


def _settings(settings: JobSettings) -> dict:
    """The job's settings after overrides; environment variables by name only (secrets)."""
    data = settings.model_dump(mode="json")
    data["environment_variables"] = sorted(data.get("environment_variables") or {})
    return data


def check_resumable(
    previous: JobRecord, staging: JobStaging, stamps: Sequence[fp.FileStamp], settings: JobSettings
) -> frozenset[int]:
    """The committed mini-batches of ``previous``, after checking that it can continue:
    its staging is there, ``mini_batch_size`` is the same and the input is unchanged."""
    name = previous.job_name
    digest = fp.digest(stamps)
    if not staging.root.join("input.tsv").exists():
        raise ResumeRefused(
            name,
            f"its staging folder {staging.root.display} was removed, so nothing it scored is kept",
            hint=_NEW_JOB,
        )
    if settings.mini_batch_size != previous.mini_batch_size:
        raise ResumeRefused(
            name,
            f"mini_batch_size {settings.mini_batch_size} differs from "
            f"the job's {previous.mini_batch_size}",
            hint="resume without changing mini_batch_size (instance count, "
            "timeout, retries and error threshold may change), or " + _NEW_JOB,
        )
    if digest != previous.input_digest:
        changes = input_changes(staging, stamps)
        raise ResumeRefused(
            name,
            f"its input changed since it started ({changes.describe()})",
            hint="restore the input as it was, or " + _NEW_JOB,
        )
    return staging.committed()
