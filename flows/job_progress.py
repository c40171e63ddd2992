"""A running job's progress, published as it goes: its progress artifact.

The flow run's progress artifact (key ``<endpoint>--<deployment>-progress``, see
:func:`flows.artifacts.artifact_key`) shows the share of mini-batches done in the UI, and
its description carries the counts so far (:func:`describe`), updated with it (at most every
2 s, and at the end). ``pbe job show`` and ``pbe job stream`` read them back
(:func:`read_running_counts`). Flow run labels were tried for this and dropped: updating
them (``update_flow_run_labels``, every 5 s) made each mini-batch ~40 ms dearer in
``benchmarks/overhead.py``.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from flows.results import JobCounts  # prefect: imported where used (CLI)

#: The counts, as ``pbe job show`` reports them under ``properties``.
FIELDS = (
    "mini_batches_done",
    "mini_batches",
    "mini_batches_succeeded",
    "mini_batches_failed",
    "items_done",
    "items",
    "items_succeeded",
    "items_failed",
)
_COUNTS = re.compile(
    r"(\d+)/(\d+) mini-batches done \((\d+) succeeded, (\d+) failed\); "
    r"(\d+)/(\d+) items done \((\d+) succeeded, (\d+) failed\)"
)


def describe(job_name: str, counts: JobCounts, mini_batches: int, items: int) -> str:
    """``Job J: 12/40 mini-batches done (11 succeeded, 1 failed); 340/1000 items done (…)``."""
    return (
        f"Job {job_name}: {counts.mini_batches}/{mini_batches} mini-batches done "
        f"({counts.mini_batches_succeeded} succeeded, {counts.mini_batches_failed} failed); "
        f"{counts.items_succeeded + counts.items_failed}/{items} items done "
        f"({counts.items_succeeded} succeeded, {counts.items_failed} failed)"
    )


def running_counts(description: str | None) -> dict[str, int]:
    """The counts in a progress artifact's description (empty if it has none)."""
    match = _COUNTS.search(description or "")
    return dict(zip(FIELDS, map(int, match.groups()), strict=True)) if match else {}


def read_running_counts(client: Any, flow_run_id: UUID) -> dict[str, int]:
    """The counts a job's flow run published last (a sync Prefect client)."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterType,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            type=ArtifactFilterType(any_=["progress"]),
        ),
        sort=ArtifactSort.UPDATED_DESC,
        limit=1,
    )
    return running_counts(artifacts[0].description) if artifacts else {}


class JobProgress:
    """Publishes a job's progress: call it with the job's counts so far."""

    def __init__(self, job_name: str, key: str | None, mini_batches: int, items: int) -> None:
        from prefect.artifacts import create_progress_artifact

        self.job_name = job_name
        self.mini_batches = mini_batches
        self.items = items
        self._artifact = create_progress_artifact(
            progress=0.0, key=key, description=describe(job_name, JobCounts(), mini_batches, items)
        )

    def __call__(self, counts: JobCounts) -> None:
        from prefect.artifacts import update_progress_artifact

        update_progress_artifact(
            self._artifact,
            progress=100.0 * counts.mini_batches / max(self.mini_batches, 1),
            description=describe(self.job_name, counts, self.mini_batches, self.items),
        )
