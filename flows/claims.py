"""A job's claim on its output file: taken atomically before scoring, released at its end.

Checking that the output file does not exist is not enough: two jobs started together with
the same output both pass the check. So a job also *claims* the file before it scores: it
creates ``.<file>.claim`` beside it, exclusively — a hard link on a local disk, a conditional
put (``If-None-Match: *``) on S3 and Azure Blob Storage — holding the job's name. Of two
jobs, exactly one gets the claim; the other fails at once naming the job that holds it.

The claim is removed when the job ends, however it ends. A job whose process died (killed,
out of memory, a lost machine) leaves its claim behind: the next job with that output is
refused naming it, never silently run over it (remove the claim file once that job is
known to be gone). A resumed job (``own=True``) takes over the claim its own earlier run
left — the claim's holder must be the job's own name — never another job's.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

from blocks.errors import OutputClaimedError, StorageError
from flows.storage import Location, local_path

__all__ = ["claim_of", "claim_output", "holder_of"]


def claim_of(target: Location) -> Location:
    """Where the claim on output file ``target`` lives: ``.<name>.claim`` beside it."""
    folder, _, name = target.uri.rstrip("/").rpartition("/")
    if not target.remote:
        folder, name = os.path.split(local_path(target.uri))
    return Location(folder, target.storage_options).join(f".{name}.claim")


def holder_of(target: Location) -> str | None:
    """The job that holds the claim on ``target``, or None when nobody does."""
    claim = claim_of(target)
    if not claim.exists():
        return None
    try:
        return json.loads(claim.read_bytes()).get("job") or "an unknown job"
    except (ValueError, StorageError):  # being written, damaged or just released
        return "an unknown job" if claim.exists() else None


@contextlib.contextmanager
def claim_output(target: Location, job_name: str, *, own: bool = False) -> Iterator[None]:
    """Hold the claim on ``target`` for the block; OutputClaimedError if another job has it.

    With ``own`` (a resume), a claim left by this job's name is taken over.
    """
    claim = claim_of(target)
    record = json.dumps(
        {
            "job": job_name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "claimed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    ).encode()
    taken = _create_exclusively(claim, record)
    if not taken and own and holder_of(target) == job_name:
        claim.write_atomic([record])  # its own leftover: the earlier run of this job died
        taken = True
    if not taken:
        raise OutputClaimedError(str(target), holder_of(target) or "another job", claim.display)
    try:
        yield
    finally:
        claim.remove_tree()


def _create_exclusively(claim: Location, data: bytes) -> bool:
    """Create ``claim`` holding ``data`` unless it exists (then False), in one atomic step."""
    if not claim.remote:
        return _create_local_exclusively(local_path(claim.uri), data)
    fs, path = claim.filesystem()
    try:
        fs.pipe_file(path, data, mode="create")  # S3 and Blob: a put with If-None-Match: *
    except FileExistsError:
        return False
    except Exception:
        with claim.errors():
            raise
    return True


def _create_local_exclusively(path: str, data: bytes) -> bool:
    """Write ``data`` aside, then hard-link it to ``path`` (fails if ``path`` exists, as
    ``O_EXCL``), so the claim appears whole: a job refused at that moment reads its holder.
    Where the file system has no hard links, ``O_EXCL`` and a write."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    aside = os.path.join(folder, f".pbe-claim-{uuid.uuid4().hex}")
    with os.fdopen(os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as out:
        out.write(data)
    try:
        os.link(aside, path)
    except FileExistsError:
        return False
    except OSError:  # no hard links here
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
    finally:
        os.unlink(aside)
    return True
