"""What run() may return, how its items are counted, and how rows are written.

The ``append_row`` format is what existing consumers parse, byte for byte:
a DataFrame is written with ``df.to_csv(header=None, index=None, sep=" ")``;
a list is written one line per element as ``str(element)``.

A run() that knows which of its files failed returns a :class:`MiniBatchOutput`: its rows
(any number per file) and, by path, why each failed file failed. Those files are the
mini-batch's failed items; every other file succeeded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


class BadReturnType(TypeError):
    """run() returned something that is neither a DataFrame nor a list."""


@dataclass(frozen=True)
class MiniBatchOutput:
    """run()'s rows plus the files that failed (path → reason); the other files succeeded."""

    rows: pd.DataFrame | list[Any]
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemCounts:
    """Items of one mini-batch: ``succeeded = min(returned, inputs)``, the rest failed.

    With ``named_failures`` (a :class:`MiniBatchOutput`) the failed items are those files,
    however many rows the others returned.
    """

    total: int
    returned: int
    named_failures: int | None = None

    @property
    def succeeded(self) -> int:
        if self.named_failures is not None:
            return self.total - self.named_failures
        return min(self.returned, self.total)

    @property
    def failed(self) -> int:
        return self.total - self.succeeded

    @property
    def extra(self) -> int:
        """Rows returned beyond the number of inputs (accepted, but worth a warning)."""
        if self.named_failures is not None:
            return 0
        return max(0, self.returned - self.total)


def normalise(value: Any) -> pd.DataFrame | list[Any] | MiniBatchOutput:
    """Accept a DataFrame, a list (a tuple is taken as a list) or a MiniBatchOutput."""
    if isinstance(value, MiniBatchOutput):
        return MiniBatchOutput(normalise(value.rows), dict(value.failed))  # type: ignore[arg-type]
    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, list):
        return value
    if isinstance(value, tuple):
        return list(value)
    raise BadReturnType(
        f"run() returned {type(value).__module__}.{type(value).__qualname__}; "
        "it must return a pandas.DataFrame or a list (one element or row per input file)"
    )


def count_items(
    result: pd.DataFrame | list[Any] | MiniBatchOutput, total: int, paths: Sequence[str] = ()
) -> ItemCounts:
    """Count one mini-batch's items (``total`` files, ``paths``) from run()'s result."""
    if isinstance(result, MiniBatchOutput):
        unknown = sorted(set(result.failed) - set(paths))
        if unknown:
            raise BadReturnType(
                f"run() reported {unknown[0]!r} as failed, but it is not in the mini-batch; "
                "MiniBatchOutput.failed takes the paths run() was given"
            )
        return ItemCounts(total, len(result.rows), named_failures=len(result.failed))
    return ItemCounts(total=total, returned=len(result))


def format_rows(result: pd.DataFrame | list[Any] | MiniBatchOutput) -> bytes:
    """Render rows in the ``append_row`` format (UTF-8, newline-terminated lines)."""
    if isinstance(result, MiniBatchOutput):
        result = result.rows
    if isinstance(result, pd.DataFrame):
        text = result.to_csv(header=None, index=None, sep=" ")
    else:
        text = "".join(f"{element}\n" for element in result)
    return text.encode("utf-8")
