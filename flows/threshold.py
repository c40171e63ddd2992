"""The error threshold: how many failed items a job tolerates, decided as results arrive."""

from __future__ import annotations

from dataclasses import dataclass

from blocks.errors import ErrorThresholdExceeded


@dataclass
class ErrorBudget:
    """Counts failed items; ``threshold`` -1 means unlimited.

    The job stops as soon as the failed items *exceed* the threshold: with threshold 0 the
    first failed item stops it, with threshold 5 the sixth does.
    """

    threshold: int
    failed_items: int = 0

    def record(self, failed_items: int) -> None:
        self.failed_items += failed_items

    @property
    def exceeded(self) -> bool:
        return self.threshold >= 0 and self.failed_items > self.threshold

    def check(self) -> None:
        """Raise :class:`ErrorThresholdExceeded` when the budget is spent."""
        if self.exceeded:
            raise ErrorThresholdExceeded(self.failed_items, self.threshold)
