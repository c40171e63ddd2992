"""What every mini-batch task of a job needs to know: small, and the same for all of them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from flows.script_output import line_budget
from flows.staging import JobStaging
from flows.storage import Location
from scoring.spec import ScoringProcessSpec


@dataclass(frozen=True)
class ScoringJob:
    """One job's scoring instructions, shipped with each mini-batch task."""

    name: str
    process: ScoringProcessSpec
    timeout: float
    append_rows: bool
    staging: JobStaging
    input_storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    #: The job's fork server (a Unix socket on the flow's machine), when it has one.
    fork_server: str | None = None
    #: ``<output>/logs``: the scripts' own output goes to ``user/`` in it (flows.script_output).
    logs: Location | None = None
    #: Lines of script output a mini-batch's task run gets (``PBE_SCRIPT_LOG_LINES``).
    script_log_lines: int = field(default_factory=line_budget)
    #: Tells this run of the job from another of the same name (a re-run, a concurrent one).
    instance: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def worker_state(self) -> str:
        """The name of the job's worker plugin (:mod:`flows.worker_state`) on its cluster."""
        return f"pbe-job-{self.name}-{self.instance}"
