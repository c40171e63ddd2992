"""How many of a job's mini-batches are in Dask at once: a window, topped up as they end.

Submitting a whole job as one graph made the flow process (which hosts the scheduler of a
local cluster) hold every task's specification, context and result future until the job
ended, and the workers every result: ~25 KB per mini-batch per process. With a window the
scheduler holds at most ``PBE_SUBMIT_WINDOW`` tasks (default 1,000) and results are released
as they are recorded; the window is topped up in chunks of at least a quarter of it, so the
scheduler still gets few, large graphs (a job of up to a window's size is one graph).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from blocks.errors import SpecError
from flows.planning import MiniBatch

WINDOW_VARIABLE = "PBE_SUBMIT_WINDOW"
DEFAULT_WINDOW = 1000


def submit_window() -> int:
    """``PBE_SUBMIT_WINDOW``: mini-batches a job keeps in Dask at once (at least 2)."""
    raw = os.environ.get(WINDOW_VARIABLE, "").strip()
    try:
        size = int(raw) if raw else DEFAULT_WINDOW
    except ValueError:
        size = 0
    if size < 2:
        raise SpecError(
            f"{WINDOW_VARIABLE}={raw!r} is not a window size",
            key=WINDOW_VARIABLE,
            hint="a whole number of mini-batches, 2 or more",
        )
    return size


class SubmitWindow:
    """Which mini-batches to submit next: at most ``size`` in flight, in chunks."""

    def __init__(self, total: int, size: int) -> None:
        self.total = total
        self.size = size
        self.chunk = max(1, size // 4)
        self.submitted = 0

    @property
    def done(self) -> bool:
        return self.submitted >= self.total

    def room(self, in_flight: int) -> int:
        """How many to submit now (0 until a chunk's worth has room, or at the tail)."""
        room = min(self.size - in_flight, self.total - self.submitted)
        if room <= 0 or (room < self.chunk and in_flight and self.submitted + room < self.total):
            return 0
        return room

    def take(self, plan: Sequence[MiniBatch], count: int) -> Sequence[MiniBatch]:
        chunk = plan[self.submitted : self.submitted + count]
        self.submitted += len(chunk)
        return chunk
