"""Cutting a job's input files into mini-batches: by file count, never by size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class MiniBatch:
    """One unit of work: ``run()`` receives these files in one call."""

    index: int
    files: tuple[str, ...]

    @property
    def id(self) -> str:
        """The id users see in logs and reports (zero-based, as the platform numbers them)."""
        return str(self.index)

    def __len__(self) -> int:
        return len(self.files)


def plan_mini_batches(files: Sequence[str], mini_batch_size: int) -> list[MiniBatch]:
    """Split ``files`` in order into mini-batches of ``mini_batch_size`` (the last may be short).

    >>> [len(mb) for mb in plan_mini_batches([f"{i}.png" for i in range(25)], 10)]
    [10, 10, 5]
    """
    if mini_batch_size < 1:
        raise ValueError(f"mini_batch_size must be at least 1, got {mini_batch_size}")
    return [
        MiniBatch(index=number, files=tuple(files[start : start + mini_batch_size]))
        for number, start in enumerate(range(0, len(files), mini_batch_size))
    ]
