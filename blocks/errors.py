"""The one exception hierarchy of prefect-batch-endpoints.

Every error a user can see derives from :class:`BatchEndpointError`. Each one takes domain
values (file, key, endpoint, mini-batch, path), renders a message that says what went wrong
*and what to do*, and survives pickling so that it crosses Dask and Prefect boundaries intact.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any


def _rebuild(cls: type[BatchEndpointError], state: dict[str, Any]) -> BatchEndpointError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, state.get("message", ""))
    return error


class BatchEndpointError(Exception):
    """Base of every error this project raises on purpose.

    ``message`` says what is wrong; ``hint`` says what to do about it.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message}\nHint: {self.hint}" if self.hint else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), dict(self.__dict__)))


def _listing(names: Iterable[str]) -> str:
    names = sorted(names)
    return ", ".join(names) if names else "(none)"


# --- configuration -------------------------------------------------------------------------


class SpecError(BatchEndpointError):
    """A YAML file or a spec value is invalid: names the file, the key path and the fix."""

    def __init__(
        self,
        problem: str,
        *,
        source: str | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.source = source
        self.key = key
        where = " ".join(part for part in (source, f"key '{key}'" if key else None) if part)
        super().__init__(f"{where}: {problem}" if where else problem, hint=hint)


class NotFoundError(BatchEndpointError):
    """A named object (endpoint, deployment, model, compute, datastore, job) does not exist."""

    def __init__(
        self, kind: str, name: str, *, known: Iterable[str] = (), hint: str | None = None
    ) -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        super().__init__(
            f"{kind} '{name}' not found. Known {kind}s: {_listing(self.known)}.", hint=hint
        )


class AlreadyExistsError(BatchEndpointError):
    """Creating an object whose name is taken."""

    def __init__(self, kind: str, name: str, *, hint: str | None = None) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} '{name}' already exists.", hint=hint)


class MissingDependencyError(BatchEndpointError):
    """A Python package an environment or a scoring script needs is not installed."""

    def __init__(self, message: str, *, packages: Iterable[str] = ()) -> None:
        self.packages = sorted(set(packages))
        hint = f"pip install {' '.join(self.packages)}" if self.packages else None
        super().__init__(message, hint=hint)


# --- inputs and outputs --------------------------------------------------------------------


class InputError(BatchEndpointError):
    """The job input cannot be listed or read. ``uri`` is always shown with secrets masked."""

    def __init__(self, uri: str, problem: str, *, hint: str | None = None) -> None:
        self.uri = uri
        super().__init__(f"Input '{uri}': {problem}", hint=hint)


class OutputExistsError(BatchEndpointError):
    """The output file is already there; jobs never overwrite results."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"Output file '{path}' already exists; the job was not started.",
            hint="Choose another --output-path or output_file_name, or remove the file.",
        )


class OutputClaimedError(BatchEndpointError):
    """Another job holds the claim on this output file (it is writing it, or it died)."""

    def __init__(self, path: str, holder: str, claim: str) -> None:
        self.path = path
        self.holder = holder
        super().__init__(
            f"Output file '{path}' is claimed by job '{holder}'; the job was not started.",
            hint=f"Wait for '{holder}' (pbe job show -n {holder}) or choose another "
            f"--output-path; if that job is gone (its process died), remove {claim}.",
        )


class StorageError(BatchEndpointError):
    """Reading or writing a location failed (permissions, credentials, network)."""

    def __init__(self, uri: str, problem: str, *, hint: str | None = None) -> None:
        self.uri = uri
        super().__init__(f"'{uri}': {problem}", hint=hint)


# --- scoring -------------------------------------------------------------------------------


class ScoringScriptError(BatchEndpointError):
    """The scoring script could not be loaded, or its init() failed."""


class InputFileError(BatchEndpointError):
    """One input file cannot be scored (unsupported type, missing column, value, shape).

    Raised per file by the built-in readers; the file becomes a failed item and the rest of
    the mini-batch scores. ``problem`` is the reason recorded for the file.
    """

    def __init__(self, path: str, problem: str, *, hint: str | None = None) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"'{path}': {problem}", hint=hint)


class ErrorCategory(str, Enum):
    """Why an attempt at a mini-batch failed: the report's ``error_category``."""

    #: run() raised
    USER_ERROR = "user_error"
    #: run() returned something that is neither a DataFrame nor a list
    BAD_RETURN = "bad_return"
    #: run() exceeded the timeout and its process was stopped
    TIMEOUT = "timeout"
    #: the scoring process ended unexpectedly
    PROCESS_DIED = "process_died"
    #: the script could not be loaded, or init() raised
    INIT_ERROR = "init_error"
    #: anything else: a download, the staging area, Dask
    SYSTEM_ERROR = "system_error"
    #: run() succeeded but named some of its files as failed (the built-in MLflow scorer)
    ITEM_ERROR = "item_error"
    #: the job stopped before the mini-batch ran
    CANCELED = "canceled"

    def __str__(self) -> str:
        return self.value


class MiniBatchAttemptError(BatchEndpointError):
    """One attempt at one mini-batch failed, for the reason ``category`` says.

    ``retryable`` is False when no other attempt could end differently: the script has a
    syntax error, imports a module that is not installed, or defines no init() or run().
    """

    def __init__(
        self,
        *,
        mini_batch_id: str,
        files: list[str],
        attempt: int,
        category: ErrorCategory,
        detail: str,
        traceback: str = "",
        process: str = "",
        retryable: bool = True,
    ) -> None:
        self.mini_batch_id = mini_batch_id
        self.retryable = retryable
        self.files = list(files)
        self.attempt = attempt
        self.category = ErrorCategory(category)
        self.detail = detail
        self.traceback = traceback
        self.process = process
        shown = ", ".join(files[:3]) + (f" … (+{len(files) - 3} more)" if len(files) > 3 else "")
        super().__init__(
            f"Mini-batch {mini_batch_id} attempt {attempt} failed ({category}): {detail} "
            f"[files: {shown}]"
        )


# --- jobs ----------------------------------------------------------------------------------


class JobFailed(BatchEndpointError):
    """A job ended without a usable result; the message gives the counts."""

    def explained(self, cause: str | None, report: str) -> JobFailed:
        """This failure, its message saying what most attempts failed of and where the full
        report is (a job's final message is often all a user reads)."""
        parts = [self.message]
        if cause:
            parts.append(f"Most failed attempts: {cause}.")
        parts.append(f"Full report: {report}")
        self.message = " ".join(parts)
        self.args = (self.message,)
        return self


class ErrorThresholdExceeded(JobFailed):
    """More items failed than ``error_threshold`` allows."""

    def __init__(self, failed_items: int, threshold: int) -> None:
        self.failed_items = failed_items
        self.threshold = threshold
        super().__init__(
            f"The number of failed items is {failed_items}, "
            f"which exceeds error threshold {threshold}.",
            hint="See logs/errors.txt beside the output for every failed attempt.",
        )


class NoSucceededItems(JobFailed):
    """An ``append_row`` job in which no item succeeded."""


class MiniBatchTimedOut(JobFailed):
    """A mini-batch timed out on every attempt."""


class ResumeRefused(BatchEndpointError):
    """A job cannot be resumed (completed, still running, no staging, changed input)."""

    def __init__(self, job: str, problem: str, *, hint: str | None = None) -> None:
        self.job = job
        super().__init__(f"Job '{job}' cannot be resumed: {problem}", hint=hint)
