"""A running job's progress, published as it goes: a progress artifact and flow run labels.

The progress artifact (key ``<endpoint>--<deployment>-progress``, see
:func:`flows.artifacts.artifact_key`) shows the share of mini-batches done in the UI; the
counts so far are labels of the flow run (``pbe.mini_batches_done`` …, at most every
:data:`LABEL_INTERVAL` seconds and once at the end), which ``pbe job show`` and
``pbe job stream`` read back through the API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from flows.results import JobCounts, MiniBatchResult  # prefect: imported where used (CLI)

LABEL_INTERVAL = 5.0
PREFIX = "pbe."
#: The labels' names (after ``pbe.``), as ``pbe job show`` reports them.
FIELDS = (
    "mini_batches",
    "mini_batches_done",
    "mini_batches_succeeded",
    "mini_batches_failed",
    "mini_batches_canceled",
    "items",
    "items_done",
    "items_succeeded",
    "items_failed",
)

logger = logging.getLogger(__name__)


def running_counts(labels: Mapping[str, Any] | None) -> dict[str, int]:
    """The counts a job published as labels (empty when it has published none)."""
    counts = {}
    for name in FIELDS:
        value = (labels or {}).get(PREFIX + name)
        if value is not None:
            try:
                counts[name] = int(value)
            except (TypeError, ValueError):
                continue
    return counts


class JobProgress:
    """Publishes a job's progress: call it with the results so far (and the total)."""

    def __init__(
        self, flow_run_id: UUID | None, job_name: str, key: str | None, mini_batches: int,
        items: int,
    ) -> None:
        from prefect.artifacts import create_progress_artifact

        self.flow_run_id = flow_run_id
        self.mini_batches = mini_batches
        self.items = items
        self._artifact = create_progress_artifact(
            progress=0.0, key=key, description=f"Job {job_name}: mini-batches done"
        )
        self._labelled = 0.0
        self.publish([], force=True)

    def __call__(self, results: Sequence[MiniBatchResult], total: int) -> None:
        from prefect.artifacts import update_progress_artifact

        update_progress_artifact(self._artifact, progress=100.0 * len(results) / max(total, 1))
        self.publish(results, force=len(results) >= total)

    def publish(self, results: Sequence[MiniBatchResult], *, force: bool = False) -> None:
        """Set the counts as the run's labels (throttled unless ``force``)."""
        if self.flow_run_id is None:
            return
        if not force and time.monotonic() - self._labelled < LABEL_INTERVAL:
            return
        counts = JobCounts.of(results)
        values = {  # the counts (JobCounts' labels), with the job's totals and what is done
            **counts.to_labels(),
            PREFIX + "mini_batches": self.mini_batches,
            PREFIX + "mini_batches_done": counts.mini_batches,
            PREFIX + "items": self.items,
            PREFIX + "items_done": counts.items_succeeded + counts.items_failed,
        }
        from prefect import get_client

        try:
            with get_client(sync_client=True) as client:
                client.update_flow_run_labels(self.flow_run_id, values)
        except Exception as exc:  # noqa: BLE001 - progress must never fail the job
            logger.warning("Publishing the job's progress failed: %s", exc)
        self._labelled = time.monotonic()
