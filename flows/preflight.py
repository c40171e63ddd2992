"""What can be checked before a job starts, with the errors the job itself would raise.

``pbe batch-endpoint invoke`` runs these before it creates the flow run, and the flow runs
them again before scoring (the job may start later, elsewhere). A local input is listed in
full (an empty folder, a file given as a folder, a folder of folders are refused); a remote
one is checked with one call (exists, is of its type, the credentials reach it) and listed
by the job. An output is refused when its file exists or another job claims it
(:mod:`flows.claims`), when its path is a file or lies under one, or when it cannot be
written (a missing bucket or container, no permission).
"""

from __future__ import annotations

import os

from blocks.errors import OutputClaimedError, OutputExistsError, StorageError
from flows.claims import claim_of, holder_of
from flows.inputs import InputType, check_remote_input, list_input
from flows.storage import Location, local_path

__all__ = ["check_input", "check_output"]


def check_input(location: Location, input_type: InputType) -> None:
    """Refuse an input that cannot be scored, before anything runs (InputError)."""
    if location.remote:
        check_remote_input(location, input_type)
    else:
        list_input(location, input_type)


def check_output(output: Location, file_name: str | None, *, own_claim: str | None = None) -> None:
    """Refuse an output folder the job could not write its file into (before it starts).

    ``own_claim``: the job being resumed, whose own leftover claim is no obstacle.
    """
    if output.remote:
        output.makedirs()  # checks the bucket/container and credentials; creates nothing
    else:
        _check_local_folder(local_path(output.uri), output.display)
    if file_name is not None:
        target = output.join(file_name)
        if target.exists():
            raise OutputExistsError(str(target))
        if (holder := holder_of(target)) is not None and holder != own_claim:
            raise OutputClaimedError(str(target), holder, claim_of(target).display)


def _check_local_folder(path: str, shown: str) -> None:
    path = os.path.abspath(path)
    if os.path.isfile(path):
        raise StorageError(
            shown,
            "the output path is a file, not a folder",
            hint="give --output-path a folder (it is created if missing)",
        )
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise StorageError(
            shown,
            f"the output path lies under a file ({existing})",
            hint="give --output-path a folder that is not inside a file",
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StorageError(
            shown, f"no permission to write in {existing}", hint="choose a folder you can write to"
        )
