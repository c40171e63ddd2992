"""A job's progress in the terminal, for ``pbe job stream`` and ``invoke --wait``.

On a terminal: a live ``rich`` bar (mini-batches done and failed of the total, items per
second, time left) under the log lines. Elsewhere (a pipe, a file, CI): a plain progress
line when the counts change, at most every :data:`PLAIN_INTERVAL` seconds. The counts are
those the job publishes with its progress artifact (:mod:`flows.job_progress`), as
``pbe job show`` reports them.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, TextIO

from flows.job_progress import FIELDS

PLAIN_INTERVAL = 5.0
RATE_WINDOW = 60.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Rate:
    """Items per second over the last minute of samples, and the time left at that rate."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, items_done: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if not self._samples or self._samples[-1][1] != items_done:
            self._samples.append((now, items_done))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW:
            self._samples.popleft()

    @property
    def per_second(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None

    def left(self, items_left: int) -> float | None:
        rate = self.per_second
        return items_left / rate if rate else None


def describe(counts: dict[str, int], rate: Rate) -> str:
    """``12/40 mini-batches (1 failed), 340/1000 items, 34.1 items/s, about 20s left``."""
    text = (
        f"{counts.get('mini_batches_done', 0)}/{counts.get('mini_batches', 0)} mini-batches "
        f"({counts.get('mini_batches_failed', 0)} failed), "
        f"{counts.get('items_done', 0)}/{counts.get('items', 0)} items"
    )
    if rate.per_second is not None:
        text += f", {rate.per_second:.1f} items/s"
        left = rate.left(counts.get("items", 0) - counts.get("items_done", 0))
        if left is not None:
            text += f", about {_duration(left)} left"
    return text


class ProgressView:
    """Log lines and a job's progress on ``out`` (nothing at all if None); a context
    manager around the wait."""

    def __init__(self, out: TextIO | None, *, live: bool | None = None) -> None:
        self.out = out
        self.live = out is not None and (_is_tty(out) if live is None else live)
        self.rate = Rate()
        self.counts: dict[str, int] = {}
        self._printed = ("", 0.0)
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressView:
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[text]}"),
                TimeElapsedColumn(),
                console=Console(file=self.out, force_terminal=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("waiting", total=None, text="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self.counts and self.out is not None:
            print(f"Progress: {describe(self.counts, self.rate)}", file=self.out, flush=True)

    def log(self, line: str) -> None:
        """A log line, above the bar."""
        if self.out is None:
            return
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=self.out, flush=True)

    def update(self, properties: dict[str, Any], status: str) -> None:
        """The job's latest counts and status (as in its record: ``job_record``)."""
        counts = {k: v for k, v in properties.items() if k in FIELDS}
        if counts and "mini_batches_done" not in counts:  # a finished job: its final counts
            counts["mini_batches_done"] = counts.get("mini_batches", 0)
            counts["items_done"] = counts.get("items_succeeded", 0) + counts.get("items_failed", 0)
        if self.out is None:
            return
        if counts:
            self.counts = counts
            self.rate.add(counts.get("items_done", 0))
        if self._progress is not None:
            total = self.counts.get("mini_batches") or None
            self._progress.update(
                self._task,
                total=total,
                completed=self.counts.get("mini_batches_done", 0),
                description=status,
                text=describe(self.counts, self.rate) if counts else "",
            )
            return
        if not counts:
            return
        text, at = self._printed
        now = time.monotonic()
        line = describe(self.counts, self.rate)
        if line != text and now - at >= PLAIN_INTERVAL:
            print(f"Progress: {line}", file=self.out, flush=True)
            self._printed = (line, now)


def _is_tty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False
