"""A job's staging area: committed mini-batch rows and the record of every failed attempt.

A mini-batch's rows are committed (one part, written atomically under a name fixed by the
mini-batch index) only when it succeeds. A retried or re-run mini-batch overwrites its own
part, so no row is ever merged twice; a failed attempt leaves no part at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from blocks.errors import MiniBatchAttemptError
from flows.storage import Location


@dataclass(frozen=True)
class JobStaging:
    """The staging folder of one job (beside its output, removed when the job ends)."""

    root: Location

    def part(self, index: int) -> Location:
        return self.root.join("parts", f"{index:09d}.rows")

    def commit_rows(self, index: int, rows: bytes) -> None:
        self.part(index).write_atomic([rows])

    def record_failure(self, error: MiniBatchAttemptError) -> None:
        record = {
            "mini_batch_id": error.mini_batch_id,
            "attempt": error.attempt,
            "category": error.category,
            "detail": error.detail,
            "files": error.files,
            "process": error.process,
            "traceback": error.traceback,
        }
        name = f"{int(error.mini_batch_id):09d}-{error.attempt:03d}.json"
        self.root.join("attempts", name).write_atomic([json.dumps(record).encode()])

    def record_item_failures(self, mini_batch_id: str | int, attempt: int, process: str,
                             files: list[str], detail: str) -> None:
        """Files a succeeded attempt's run() named as failed (category ``item_error``)."""
        record = {"mini_batch_id": mini_batch_id, "attempt": attempt, "category": "item_error",
                  "detail": detail, "files": files, "process": process, "traceback": ""}
        name = f"{int(mini_batch_id):09d}-{attempt:03d}-items.json"
        self.root.join("attempts", name).write_atomic([json.dumps(record).encode()])

    def failures(self) -> list[dict[str, Any]]:
        """Every failed attempt recorded so far, by mini-batch then attempt."""
        folder = self.root.join("attempts")
        return [json.loads(folder.join(name).read_bytes()) for name in sorted(folder.list_names())]

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
