"""Pacing a job to what its Prefect server records, so that no task-run event is dropped.

Prefect 3 records task runs from the events their engines send. The embedded server's
in-memory broker gives each of its consumers a queue of 10,000 events (fixed in Prefect)
and drops what does not fit; a task run sends at least three (Pending, Running and its
final state). Two consumers write them to the database: the task-run recorder (the task
runs and their states) and the event persister (the event feed); either may be the slower
one. A job that starts task runs faster than the server writes them (on a small machine
the server runs niced, behind the scoring) loses events after a few thousand mini-batches.

:class:`EventPace` keeps the task runs a job has started but the server has not yet
written in a final state, by both consumers, under ``PBE_EVENT_LAG`` (default 2,000, i.e.
~6,000 events in flight per consumer). The flow asks it before submitting more
mini-batches; it counts through the API (the flow run's final task runs, and its task
runs' final-state events), at most once a second and only when the job is near the
bound, so small jobs never ask. Pacing also bounds the events the workers' Prefect clients
hold unsent while a slow server takes them in. ``PBE_EVENT_LAG=0`` turns pacing off. If
the server records nothing for ``stall_seconds`` the job goes on regardless (with a
warning): a job never hangs on it.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import StateType

from blocks.errors import SpecError

LAG_VARIABLE = "PBE_EVENT_LAG"
DEFAULT_LAG = 2000
FINAL_TYPES = [StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED]


def configured_lag() -> int:
    """``PBE_EVENT_LAG``: task runs a job may be ahead of its server (0: no pacing)."""
    raw = os.environ.get(LAG_VARIABLE, "").strip()
    try:
        lag = int(raw) if raw else DEFAULT_LAG
    except ValueError:
        lag = -1
    if lag < 0:
        raise SpecError(
            f"{LAG_VARIABLE}={raw!r} is not a count of task runs",
            key=LAG_VARIABLE,
            hint="a whole number; 0 turns pacing off",
        )
    return lag


def count_final_task_runs(flow_run_id: uuid.UUID, api: Any) -> int:
    """The flow run's task runs that the server has recorded in a final state (``api``: an
    open sync Prefect client)."""
    body = {
        "flow_runs": FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])).model_dump(
            mode="json", exclude_unset=True
        ),
        "task_runs": TaskRunFilter(
            state=TaskRunFilterState(type=TaskRunFilterStateType(any_=FINAL_TYPES))
        ).model_dump(mode="json", exclude_unset=True),
    }
    response = api.request("POST", "/task_runs/count", json=body)  # the REST route
    response.raise_for_status()
    return int(response.json())


#: The events that end a task run (the names of its final states).
FINAL_EVENTS = [
    f"prefect.task-run.{name}" for name in ("Completed", "Failed", "Cancelled", "Crashed")
]


def count_persisted_final_events(flow_run_id: uuid.UUID, since: datetime, api: Any) -> int:
    """The flow run's task-run final-state events the server has persisted (its event feed)."""
    body = {
        "filter": {
            "occurred": {
                "since": since.isoformat(),
                "until": (datetime.now(timezone.utc) + timedelta(days=1)).isoformat(),
            },
            "event": {"name": FINAL_EVENTS},
            "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
        },
        "limit": 0,
    }
    response = api.request("POST", "/events/filter", json=body)  # the REST route
    response.raise_for_status()
    return int(response.json()["total"])


class EventPace:
    """How many more task runs a job may start now without outrunning its server."""

    def __init__(
        self,
        flow_run_id: uuid.UUID | None,
        max_lag: int,
        logger: logging.Logger | logging.LoggerAdapter,
        *,
        poll_seconds: float = 1.0,
        stall_seconds: float = 300.0,
    ) -> None:
        self.flow_run_id = flow_run_id
        self.max_lag = max_lag if flow_run_id is not None else 0
        self.logger = logger
        self.poll_seconds = poll_seconds
        self.stall_seconds = stall_seconds
        self.recorded = 0
        self.waited_seconds = 0.0
        self._checked = 0.0
        self._progress = time.monotonic()
        self._gave_up = False
        self._since = datetime.now(timezone.utc) - timedelta(minutes=5)  # clocks may differ
        # one client for the job: a new one per count grew the flow by ~50 KB each
        self._api: Any = None

    @property
    def enabled(self) -> bool:
        return self.max_lag > 0 and not self._gave_up

    def room(self, started: int) -> int:
        """Task runs that may start now, ``started`` having been started so far."""
        if not self.enabled:
            return 1 << 30
        if started - self.recorded >= self.max_lag // 2:
            self._refresh()
        return max(0, self.max_lag - (started - self.recorded)) if self.enabled else 1 << 30

    def wait(self, started: int) -> None:
        """Block until :meth:`room` is positive (the server caught up) or it stalled."""
        clock = time.monotonic()
        while self.room(started) <= 0:
            time.sleep(self.poll_seconds)
        self.waited_seconds += time.monotonic() - clock

    def close(self) -> None:
        """Close the API client the pace opened (if it ever asked the server)."""
        if self._api is not None:
            self._api.__exit__(None, None, None)
            self._api = None

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.poll_seconds:
            return
        self._checked = now
        try:  # the slower of the two consumers that write the server's database
            if self._api is None:
                self._api = get_client(sync_client=True)
                self._api.__enter__()
            recorded = min(
                count_final_task_runs(self.flow_run_id, self._api),
                count_persisted_final_events(self.flow_run_id, self._since, self._api),
            )
        except Exception as exc:  # noqa: BLE001 - pacing must never fail the job
            recorded = self.recorded
            self.logger.debug("Counting recorded task runs failed: %s", exc)
        if recorded > self.recorded:
            self.recorded = recorded
            self._progress = now
        elif now - self._progress > self.stall_seconds:
            self._gave_up = True
            self.logger.warning(
                "The Prefect server recorded no task run for %.0f s; going on without waiting "
                "for it (some task-run states may be missing in the UI).",
                self.stall_seconds,
            )
