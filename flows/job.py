"""What every mini-batch task of a job needs to know: small, and the same for all of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flows.staging import JobStaging
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
