"""A job's mini-batch results, recorded as they arrive and read back in mini-batch order.

A job of 100,000 mini-batches must not hold 100,000 result objects until it ends: each
result is appended to a local temporary file as one JSON line when it arrives, and only its
offset is kept (8 bytes per mini-batch) with the running :class:`~flows.results.JobCounts`.
The log is a read-only sequence of the results by index, read back from the file, so the
report, the summary and the merge take it as they would take a list, one result at a time.
A resumed job records its committed mini-batches first, then what this run scores.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from blocks.errors import ErrorCategory
from flows.results import JobCounts, MiniBatchResult

_MISSING = -1


class ResultLog(Sequence[MiniBatchResult]):
    """The results of mini-batches ``0 .. size-1``; each recorded once, read in index order.

    Reading (iteration, indexing) needs every mini-batch recorded: the ones that never ran
    are recorded as canceled when the scoring ends (:func:`flows.fanout.score_all`).
    """

    def __init__(self, size: int) -> None:
        self._file = tempfile.TemporaryFile(prefix="pbe-results-")
        self._offsets = array("q", [_MISSING]) * size
        self._end = 0
        self.recorded = 0
        self.counts = JobCounts()

    def record(self, result: MiniBatchResult) -> None:
        """Keep ``result`` (on disk); a mini-batch recorded twice keeps its first result."""
        if self._offsets[result.index] != _MISSING:
            return
        line = json.dumps(dataclasses.asdict(result), separators=(",", ":")).encode() + b"\n"
        self._file.seek(self._end)
        self._file.write(line)
        self._offsets[result.index] = self._end
        self._end += len(line)
        self.recorded += 1
        self.counts = self.counts.add(result)

    def record_all(self, results: Iterable[MiniBatchResult]) -> None:
        for result in results:
            self.record(result)

    def __contains__(self, index: object) -> bool:  # type: ignore[override]
        """Whether mini-batch ``index`` has its result (membership by index, not by result)."""
        return (
            isinstance(index, int)
            and 0 <= index < len(self._offsets)
            and self._offsets[index] != _MISSING
        )

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, index: int) -> MiniBatchResult: ...
    @overload
    def __getitem__(self, index: slice) -> list[MiniBatchResult]: ...
    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        offset = self._offsets[index]
        if offset == _MISSING:
            raise LookupError(f"mini-batch {index} has no result yet")
        self._file.flush()
        self._file.seek(offset)
        fields = json.loads(self._file.readline())
        if fields["error_category"] is not None:
            fields["error_category"] = ErrorCategory(fields["error_category"])
        return MiniBatchResult(**fields)

    def __iter__(self) -> Iterator[MiniBatchResult]:
        for index in range(len(self)):
            yield self[index]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResultLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def in_index_order(results: Iterable[MiniBatchResult]) -> Iterable[MiniBatchResult]:
    """``results`` in index order, without copying a :class:`ResultLog` into memory."""
    if isinstance(results, ResultLog):
        return results
    return sorted(results, key=lambda r: r.index)
