"""A job's staging area: committed mini-batch rows and the record of every failed attempt.

A mini-batch's rows are committed (one part, written atomically under a name fixed by the
mini-batch index) only when it succeeds. A retried or re-run mini-batch overwrites its own
part, so no row is ever merged twice; a failed attempt leaves no part at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from blocks.errors import ErrorCategory, MiniBatchAttemptError
from flows.results import AttemptRecord
from flows.storage import Location


@dataclass(frozen=True)
class JobStaging:
    """The staging folder of one job, beside its output.

    Removed when the job completes; a failed, crashed or cancelled job keeps it, so that
    a resume (:mod:`flows.resume`) scores only what is not committed yet.
    """

    root: Location

    def part(self, index: int) -> Location:
        return self.root.join("parts", f"{index:09d}.rows")

    def commit_rows(self, index: int, rows: bytes) -> None:
        self.part(index).write_atomic([rows])

    def record_failure(self, error: MiniBatchAttemptError) -> None:
        record = AttemptRecord.of(error)
        name = f"{record.mini_batch_id:09d}-{record.attempt:03d}.json"
        self.root.join("attempts", name).write_atomic([record.to_json()])

    def record_item_failures(
        self, mini_batch_id: str | int, attempt: int, process: str, files: list[str], detail: str
    ) -> None:
        """Files a succeeded attempt's run() named as failed (category ``item_error``)."""
        record = AttemptRecord(
            int(mini_batch_id), attempt, ErrorCategory.ITEM_ERROR, detail, tuple(files), process
        )
        name = f"{record.mini_batch_id:09d}-{attempt:03d}-items.json"
        self.root.join("attempts", name).write_atomic([record.to_json()])

    def failures(self) -> list[AttemptRecord]:
        """Every failed attempt recorded so far, by mini-batch then attempt."""
        folder = self.root.join("attempts")
        return [
            AttemptRecord.from_json(folder.join(name).read_bytes())
            for name in sorted(folder.list_names())
        ]

    def committed(self) -> frozenset[int]:
        """The indices of the committed mini-batches, from one listing of ``parts/``."""
        return frozenset(
            int(name[:-5])
            for name in self.root.join("parts").list_names()
            if name.endswith(".rows") and name[:-5].isdigit()
        )

    def rows(self, indices: Iterable[int], chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream the committed rows of ``indices``, in that order."""
        for index in indices:
            location = self.part(index)
            if not location.remote:
                with open(location.uri, "rb") as handle:
                    while chunk := handle.read(chunk_size):
                        yield chunk
            else:
                yield location.read_bytes()

    def remove(self) -> None:
        self.root.remove_tree()
