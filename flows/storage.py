"""Where job inputs and outputs live: local folders or any fsspec store (s3://, https://).

Local paths take fast paths (``os.scandir``, ``os.replace``); other stores go through
fsspec. Writes are atomic: a local file is written beside its final name and renamed; a
remote object is uploaded whole from a local temporary file, so no reader ever sees a
partial file under the final name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from blocks.errors import StorageError


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def local_path(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


@dataclass(frozen=True)
class Location:
    """A file or folder in a store, with the credentials to reach it.

    ``storage_options`` may hold secrets: it is never part of ``repr`` or messages.
    """

    uri: str
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def remote(self) -> bool:
        return is_remote(self.uri)

    def __str__(self) -> str:
        return self.uri

    def join(self, *parts: str) -> Location:
        if self.remote:
            uri = "/".join([self.uri.rstrip("/"), *parts])
        else:
            uri = os.path.join(local_path(self.uri), *parts)
        return Location(uri, self.storage_options)

    def filesystem(self) -> tuple[fsspec.AbstractFileSystem, str]:
        try:
            return fsspec.core.url_to_fs(self.uri, **self.storage_options)
        except ImportError as exc:
            raise StorageError(
                self.uri,
                f"no filesystem for this scheme ({exc})",
                hint='install the store\'s extra, e.g. pip install "prefect-batch-endpoints[s3]"',
            ) from exc

    def exists(self) -> bool:
        if not self.remote:
            return os.path.exists(local_path(self.uri))
        fs, path = self.filesystem()
        return fs.exists(path)

    def makedirs(self) -> None:
        if not self.remote:
            os.makedirs(local_path(self.uri), exist_ok=True)

    def read_bytes(self) -> bytes:
        if not self.remote:
            return Path(local_path(self.uri)).read_bytes()
        fs, path = self.filesystem()
        return fs.cat_file(path)

    def remove_tree(self) -> None:
        if not self.remote:
            shutil.rmtree(local_path(self.uri), ignore_errors=True)
            return
        fs, path = self.filesystem()
        if fs.exists(path):
            fs.rm(path, recursive=True)

    def list_names(self) -> list[str]:
        """Names of the files directly inside this folder (empty when it does not exist)."""
        if not self.remote:
            try:
                with os.scandir(local_path(self.uri)) as entries:
                    return [entry.name for entry in entries if entry.is_file()]
            except FileNotFoundError:
                return []
        fs, path = self.filesystem()
        if not fs.exists(path):
            return []
        return [
            entry["name"].rstrip("/").rsplit("/", 1)[-1]
            for entry in fs.ls(path, detail=True)
            if entry["type"] == "file"
        ]

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
            fs.put_file(tmp.name, path)
        return size


def _write_local_atomic(path: str, chunks: Iterable[bytes]) -> int:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    size = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                size += len(chunk)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with _quiet():
            os.unlink(tmp)
        raise
    return size


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def _quiet() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass
