"""Where job inputs and outputs live: local folders or any fsspec store (s3://, https://).

Every location is an fsspec file system and path (local folders through fsspec's local file
system, Azure Blob Storage URLs through adlfs, :mod:`flows.azure_blob`); only what differs
in kind branches: a local folder is created while a bucket is only checked, and writes are
atomic in each store's own way — a local file is written beside its final name and renamed,
a remote object is uploaded whole from a local temporary file (one put: S3's PutObject, Blob
Storage's committed block list), so no reader ever sees a partial file under the final name.
(Listing a job's input keeps ``os.scandir`` for local folders: see :mod:`flows.inputs`.)

Every store error is translated here, once, by :func:`storage_errors`: into an
:class:`InputError` or a :class:`StorageError` that names the URI with its secrets masked
and says what to do.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import fsspec

from blocks.datastore import mask, secret_values
from blocks.errors import BatchEndpointError, InputError, StorageError
from flows import azure_blob

_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}
_NO_CREDENTIALS_HINT = (
    "register a datastore with credentials (pbe datastore create --type s3 --key … --secret …) "
    "and use azureml://datastores/<name>/paths/…, or set AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY (or an AWS profile)"
)
_UNREACHABLE = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    "ClientConnectorError",
    "ClientConnectionError",
    "ServerDisconnectedError",
    "ServerTimeoutError",
}


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def is_http(uri: str) -> bool:
    """Plain http(s) files; Azure Blob Storage URLs are a store, not http."""
    return uri.lower().startswith(("http://", "https://")) and azure_blob.blob_path(uri) is None


def local_path(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


@contextmanager
def storage_errors(
    uri: str, storage_options: dict[str, Any] | None = None, *, as_input: bool = False
) -> Iterator[None]:
    """Turn any store exception raised inside the block into one of ours, secrets masked.

    ``as_input`` chooses :class:`InputError` (the job input) over :class:`StorageError`.
    """
    try:
        yield
    except BatchEndpointError:
        raise
    except Exception as exc:
        secrets = secret_values(storage_options or {})
        problem, hint = describe(exc, uri, storage_options)
        shown = mask(uri, secrets)
        problem = mask(problem, secrets)
        error = InputError if as_input else StorageError
        raise error(shown, problem, hint=hint) from exc


def describe(
    exc: BaseException, uri: str, storage_options: dict[str, Any] | None = None
) -> tuple[str, str | None]:
    """``(problem, hint)`` for a store exception: fsspec, s3fs, botocore, aiohttp, adlfs."""
    chain = _chain(exc)
    blob = azure_blob.blob_path(uri)
    if blob is not None:
        return azure_blob.explain(exc, chain, blob, storage_options or {})
    names = {type(e).__name__ for e in chain}
    codes = {_error_code(e) for e in chain} - {None}
    status = next((s for e in chain if isinstance(s := getattr(e, "status", None), int)), None)
    missing = any(isinstance(e, FileNotFoundError) for e in chain) or "NoSuchKey" in codes
    bucket, _, key = uri[len("s3://") :].partition("/") if uri.startswith("s3://") else ("", "", "")
    check = "check the datastore's --key and --secret (or the AWS credentials in use)"

    if names & _NO_CREDENTIALS:
        return "no S3 credentials were found", _NO_CREDENTIALS_HINT
    if "InvalidAccessKeyId" in codes:
        return "the store does not know this access key (wrong credentials)", check
    if "SignatureDoesNotMatch" in codes:
        return "the secret does not match the access key (wrong credentials)", check
    denied = codes & {"AccessDenied", "AllAccessDisabled", "401", "403"} or status in (401, 403)
    if denied or any(isinstance(e, PermissionError) for e in chain):
        return "access denied: wrong credentials, or they lack permission here", check
    operations = {getattr(e, "operation_name", None) for e in chain}
    bucket_missing = "NoSuchBucket" in codes or (
        (missing or "404" in codes) and (not key.strip("/") or "HeadBucket" in operations)
    )
    if bucket and bucket_missing:
        return f"bucket '{bucket}' does not exist", "check the bucket name (it is never created)"
    if names & _UNREACHABLE or any(isinstance(e, (ConnectionError, TimeoutError)) for e in chain):
        return f"cannot reach the store ({exc})", "check the endpoint URL and the network"
    if missing:
        where = "no object or folder at this key" if bucket else "does not exist"
        return where, "check the path (names are case-sensitive)"
    if status is not None:
        return f"the server answered HTTP {status}", None
    return f"{type(exc).__name__}: {exc}", None


def _error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ``ClientError`` (``NoSuchBucket``, ``403``, …)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


@dataclass(frozen=True)
class Location:
    """A file or folder in a store, with the credentials to reach it.

    ``storage_options`` may hold secrets: it is never part of ``repr``, ``str`` or messages.
    """

    uri: str
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def remote(self) -> bool:
        return is_remote(self.uri)

    def __str__(self) -> str:
        return self.display

    @property
    def display(self) -> str:
        """The URI as users may see it: secrets masked."""
        return mask(self.uri, secret_values(self.storage_options))

    def join(self, *parts: str) -> Location:
        if self.remote:
            uri = "/".join([self.uri.rstrip("/"), *parts])
        else:
            uri = os.path.join(local_path(self.uri), *parts)
        return Location(uri, self.storage_options)

    def errors(self, *, as_input: bool = False) -> Any:
        """A context manager translating store errors about this location."""
        return storage_errors(self.uri, self.storage_options, as_input=as_input)

    def filesystem(self) -> tuple[fsspec.AbstractFileSystem, str]:
        blob = azure_blob.blob_path(self.uri)
        try:
            if blob is None:
                return fsspec.core.url_to_fs(self.uri, **self.storage_options)
            azure_blob.require_adlfs()
        except ImportError as exc:
            extra = "s3" if blob is None else "azure"
            raise StorageError(
                self.display,
                f"no filesystem for this scheme ({exc})",
                hint=f"install the store's extra, e.g. "
                f'pip install "prefect-batch-endpoints[{extra}]"',
            ) from exc
        with self.errors():  # a malformed connection string must not show its key
            return azure_blob.filesystem(blob, self.storage_options)

    def exists(self) -> bool:
        """True when a file or folder is there; credential and network errors raise."""
        fs, path = self.filesystem()
        with self.errors():
            fs.invalidate_cache(path)
            return fs.exists(path)

    def makedirs(self) -> None:
        """Create a local folder; for a remote store, check that it can be written to.

        Object stores have no folders: the check is that the bucket (container) exists and
        the credentials reach it. Buckets and containers are never created.
        """
        if not self.remote:
            os.makedirs(local_path(self.uri), exist_ok=True)
            return
        if is_http(self.uri):
            raise StorageError(
                self.display,
                "http(s) locations are read-only",
                hint="write outputs to a local folder, s3://, Azure Blob Storage or a datastore",
            )
        fs, path = self.filesystem()
        with self.errors():
            if azure_blob.blob_path(self.uri) is not None:
                azure_blob.check_container(fs, path)
            else:
                fs.info(path.split("/", 1)[0])

    def read_bytes(self) -> bytes:
        fs, path = self.filesystem()
        with self.errors():
            return fs.cat_file(path)

    def remove_tree(self) -> None:
        fs, path = self.filesystem()
        with self.errors():
            fs.invalidate_cache(path)
            if fs.exists(path):
                fs.rm(path, recursive=True)

    def list_names(self) -> list[str]:
        """Names of the files directly inside this folder (empty when it does not exist).

        A local folder is read with ``os.scandir``: fsspec's listing stats every file and
        builds a dict for each (~0.7 KiB apiece, ~10× the name), which a resume's listing
        of ``parts/`` (one file per committed mini-batch) would hold at its peak.
        """
        if not self.remote:
            with self.errors():
                try:
                    with os.scandir(local_path(self.uri)) as entries:
                        return [entry.name for entry in entries if entry.is_file()]
                except FileNotFoundError:
                    return []
        fs, path = self.filesystem()
        with self.errors():
            try:
                entries = fs.ls(path.rstrip("/"), detail=True, refresh=True)
            except FileNotFoundError:
                return []
        return [name for name, is_file in remote_children(entries, path) if is_file]

    def write_atomic(self, chunks: Iterable[bytes]) -> int:
        """Write ``chunks`` so that the file appears whole or not at all; return the size."""
        if not self.remote:
            return _write_local_atomic(local_path(self.uri), chunks)
        fs, path = self.filesystem()
        with tempfile.NamedTemporaryFile(prefix=".pbe-upload-") as tmp:
            size = 0
            for chunk in chunks:
                tmp.write(chunk)
                size += len(chunk)
            tmp.flush()
            with self.errors():
                fs.put_file(tmp.name, path)
                fs.invalidate_cache(path)
        return size


def remote_children(
    entries: Iterable[dict[str, Any]], folder: str | None = None
) -> list[tuple[str, bool]]:
    """``(name, is_file)`` of the direct children of ``folder`` in its ``fs.ls`` listing.

    Zero-byte folder markers (keys ending in ``/``, as consoles create) are not files;
    adlfs lists a marker under the folder's own name, which is not a child either.
    """
    children = []
    itself = folder.strip("/") if folder is not None else None
    for entry in entries:
        name = entry["name"]
        if entry["type"] == "file" and (name.endswith("/") or name.strip("/") == itself):
            continue
        children.append((name.rstrip("/").rsplit("/", 1)[-1], entry["type"] == "file"))
    return children


def publish_folder(local_dir: str | os.PathLike[str], output: Location) -> list[str]:
    """Upload what a scoring script wrote into its local output folder to ``output``.

    For ``summary_only`` scripts writing into ``AZUREML_BI_OUTPUT_PATH`` when the job's
    output is remote. Each file is uploaded whole (sub-folders kept); returns the URIs
    written. A local ``output`` needs nothing: the script wrote there directly.
    """
    if not output.remote:
        return []
    uploaded = []
    fs, _ = output.filesystem()
    for folder, subfolders, names in os.walk(local_dir):
        subfolders.sort()
        relative = os.path.relpath(folder, local_dir)
        parts = [] if relative == "." else relative.split(os.sep)
        for name in sorted(names):
            target = output.join(*parts, name)
            _, path = target.filesystem()
            with target.errors():
                fs.put_file(os.path.join(folder, name), path)
            uploaded.append(target.uri)
    return uploaded


def _write_local_atomic(path: str, chunks: Iterable[bytes]) -> int:
    """Write beside ``path`` and rename; the file gets the mode a new file gets (umask)."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    size = 0
    try:
        # created like any new file (mode 0o666 less the umask), never seen under ``path``
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                size += len(chunk)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return size
