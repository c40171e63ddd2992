"""What run() may return, how its items are counted, and how rows are written.

The ``append_row`` format is what existing consumers parse, byte for byte:
a DataFrame is written with ``df.to_csv(header=None, index=None, sep=" ")``;
a list is written one line per element as ``str(element)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd


class BadReturnType(TypeError):
    """run() returned something that is neither a DataFrame nor a list."""


@dataclass(frozen=True)
class ItemCounts:
    """Items of one mini-batch: ``succeeded = min(returned, inputs)``, the rest failed."""

    total: int
    returned: int

    @property
    def succeeded(self) -> int:
        return min(self.returned, self.total)

    @property
    def failed(self) -> int:
        return self.total - self.succeeded

    @property
    def extra(self) -> int:
        """Rows returned beyond the number of inputs (accepted, but worth a warning)."""
        return max(0, self.returned - self.total)


def normalise(value: Any) -> pd.DataFrame | list[Any]:
    """Accept a DataFrame or a list (a tuple is taken as a list); refuse anything else."""
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


def count_items(result: pd.DataFrame | list[Any], total: int) -> ItemCounts:
    """Count one mini-batch's items from run()'s normalised result."""
    return ItemCounts(total=total, returned=len(result))


def format_rows(result: pd.DataFrame | list[Any]) -> bytes:
    """Render rows in the ``append_row`` format (UTF-8, newline-terminated lines)."""
    if isinstance(result, pd.DataFrame):
        text = result.to_csv(header=None, index=None, sep=" ")
    else:
        text = "".join(f"{element}\n" for element in result)
    return text.encode("utf-8")
