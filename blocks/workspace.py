"""The workspace: one local root for registered models, code snapshots and job outputs.

``$PBE_HOME`` chooses it (the CLI's ``--workspace`` sets that); the default is ``~/.pbe``.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATASTORE = "workspaceblobstore"


def workspace_root() -> Path:
    return Path(os.environ.get("PBE_HOME") or Path.home() / ".pbe").expanduser().resolve()


def datastore_root(name: str = DEFAULT_DATASTORE) -> Path:
    """The local folder behind a local datastore (``workspaceblobstore`` by default)."""
    return workspace_root() / "datastores" / name


def default_output_path(job_name: str) -> str:
    """Where a job writes when no output path is given: a folder named after the job."""
    return str(datastore_root() / "azureml" / job_name / "score")
