"""Listing a job's input and handing its files to run() as local paths.

A ``uri_folder`` input is the files directly inside the folder (not recursive), sorted by
name; a ``uri_file`` input is that one file. Remote files are fetched by the worker that
scores them, inside the mini-batch's attempt, and removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from blocks.errors import InputError
from flows.storage import Location, local_path

InputType = Literal["uri_folder", "uri_file"]


def list_input(location: Location, input_type: InputType = "uri_folder") -> list[str]:
    """The input's files as URIs (local paths for local input), in the order they are scored."""
    if input_type == "uri_file":
        return [_single_file(location)]
    if input_type != "uri_folder":
        raise InputError(
            location.uri, f"unknown input type '{input_type}'", hint="use uri_folder or uri_file"
        )
    if location.remote:
        return _list_remote_folder(location)
    return _list_local_folder(location)


def _single_file(location: Location) -> str:
    if location.remote:
        fs, path = location.filesystem()
        info = _remote_info(location, fs, path)
        if info["type"] != "file":
            raise InputError(
                location.uri, "is a folder, not a file", hint="use --input-type uri_folder"
            )
        return location.uri
    path = local_path(location.uri)
    if not os.path.exists(path):
        raise InputError(location.uri, "does not exist", hint="check the path")
    if not os.path.isfile(path):
        raise InputError(
            location.uri, "is a folder, not a file", hint="use --input-type uri_folder"
        )
    return os.path.abspath(path)


def _list_local_folder(location: Location) -> list[str]:
    folder = os.path.abspath(local_path(location.uri))
    if not os.path.exists(folder):
        raise InputError(location.uri, "does not exist", hint="check the path")
    if not os.path.isdir(folder):
        raise InputError(location.uri, "is a file, not a folder", hint="use --input-type uri_file")
    names: list[str] = []
    folders = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file():
                names.append(entry.name)
            else:
                folders += 1
    return _checked(location, folder + os.sep, names, folders)


def _list_remote_folder(location: Location) -> list[str]:
    fs, path = location.filesystem()
    info = _remote_info(location, fs, path.rstrip("/"))
    if info["type"] == "file":
        raise InputError(location.uri, "is a file, not a folder", hint="use --input-type uri_file")
    entries = fs.ls(path.rstrip("/"), detail=True, refresh=True)
    names = [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "file"]
    folders = sum(1 for e in entries if e["type"] != "file")
    return _checked(location, location.uri.rstrip("/") + "/", names, folders)


def _checked(location: Location, prefix: str, names: list[str], folders: int) -> list[str]:
    if not names:
        problem = (
            f"holds only subfolders ({folders}); inputs are not listed recursively"
            if folders
            else "is empty"
        )
        raise InputError(location.uri, problem, hint="point --input at the folder of files")
    names.sort()
    return [prefix + name for name in names]


def _remote_info(location: Location, fs: Any, path: str) -> dict[str, Any]:
    try:
        return fs.info(path)
    except FileNotFoundError as exc:
        raise InputError(location.uri, "does not exist", hint="check the bucket and key") from exc
    except PermissionError as exc:
        raise InputError(
            location.uri, f"access denied ({exc})", hint="check the datastore's credentials"
        ) from exc


@contextmanager
def local_copies(files: Sequence[str], storage_options: dict[str, Any]) -> Iterator[list[str]]:
    """Local paths for ``files``: local files as they are, remote ones fetched to a temp folder.

    The temporary copies are removed when the block ends, whatever happened inside it.
    """
    if not any("://" in f and not f.startswith("file://") for f in files):
        yield [local_path(f) for f in files]
        return
    workdir = tempfile.mkdtemp(prefix="pbe-minibatch-")
    try:
        paths = []
        for number, uri in enumerate(files):
            location = Location(uri, storage_options)
            if not location.remote:
                paths.append(local_path(uri))
                continue
            name = uri.rstrip("/").rsplit("/", 1)[-1]
            target = os.path.join(workdir, f"{number:05d}", name)
            os.makedirs(os.path.dirname(target))
            fs, path = location.filesystem()
            fs.get_file(path, target)
            paths.append(target)
        yield paths
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
