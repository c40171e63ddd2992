"""Listing a job's input and handing its files to run() as local paths.

A ``uri_folder`` input is the files directly inside the folder (not recursive), sorted by
name; a ``uri_file`` input is that one file. Folders are local or in an object store
(``s3://``); over ``http(s)://`` only single files exist. Every problem (missing path,
bucket or key, credentials, an empty folder, a folder of sub-folders) is an
:class:`InputError` raised while listing, before any scoring starts.

Remote files are fetched by the worker that scores them, inside the mini-batch's attempt
(so a failed download is a failed, retried attempt), and removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from blocks.errors import InputError
from flows.storage import Location, is_http, local_path, remote_children

InputType = Literal["uri_folder", "uri_file"]

_HTTP_FOLDER_HINT = (
    "an http(s) URI is one file: use --input-type uri_file, or put the files in an S3 "
    "bucket or a datastore and pass that folder"
)


def list_input(location: Location, input_type: InputType = "uri_folder") -> list[str]:
    """The input's files as URIs (local paths for local input), in the order they are scored."""
    if input_type == "uri_file":
        return [_single_file(location)]
    if input_type != "uri_folder":
        raise InputError(
            location.display,
            f"unknown input type '{input_type}'",
            hint="use uri_folder or uri_file",
        )
    if is_http(location.uri):
        raise InputError(
            location.display, "folders cannot be listed over http(s)", hint=_HTTP_FOLDER_HINT
        )
    if location.remote:
        return _list_remote_folder(location)
    return _list_local_folder(location)


def check_remote_input(location: Location, input_type: InputType) -> None:
    """One call: the remote input exists, has the type given, and the credentials reach it."""
    if input_type == "uri_file":
        _single_file(location)
        return
    if is_http(location.uri):
        raise InputError(
            location.display, "folders cannot be listed over http(s)", hint=_HTTP_FOLDER_HINT
        )
    fs, path = location.filesystem()
    with location.errors(as_input=True):
        fs.invalidate_cache(path.rstrip("/"))
        info = fs.info(path.rstrip("/"))
    if info["type"] == "file":
        raise InputError(
            location.display, "is a file, not a folder", hint="use --input-type uri_file"
        )


def _single_file(location: Location) -> str:
    if location.remote:
        fs, path = location.filesystem()
        with location.errors(as_input=True):
            info = fs.info(path)
        if info["type"] != "file":
            raise InputError(
                location.display, "is a folder, not a file", hint="use --input-type uri_folder"
            )
        return location.uri
    path = local_path(location.uri)
    if not os.path.exists(path):
        raise InputError(location.display, "does not exist", hint="check the path")
    if not os.path.isfile(path):
        raise InputError(
            location.display, "is a folder, not a file", hint="use --input-type uri_folder"
        )
    return os.path.abspath(path)


def _list_local_folder(location: Location) -> list[str]:
    folder = os.path.abspath(local_path(location.uri))
    if not os.path.exists(folder):
        raise InputError(location.display, "does not exist", hint="check the path")
    if not os.path.isdir(folder):
        raise InputError(
            location.display, "is a file, not a folder", hint="use --input-type uri_file"
        )
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
    check_remote_input(location, "uri_folder")
    fs, path = location.filesystem()
    path = path.rstrip("/")
    with location.errors(as_input=True):
        children = remote_children(fs.ls(path, detail=True, refresh=True), path)
    names = [name for name, is_file in children if is_file]
    folders = len(children) - len(names)
    return _checked(location, location.uri.rstrip("/") + "/", names, folders)


def _checked(location: Location, prefix: str, names: list[str], folders: int) -> list[str]:
    if not names:
        problem = (
            f"holds only subfolders ({folders}); inputs are not listed recursively"
            if folders
            else "is empty"
        )
        raise InputError(location.display, problem, hint="point --input at the folder of files")
    names.sort()
    return [prefix + name for name in names]


def _local_name(uri: str) -> str:
    """The file name a remote URI gets on the worker (query strings and escapes removed)."""
    path = urlsplit(uri).path if "://" in uri else uri
    return unquote(path.rstrip("/").rsplit("/", 1)[-1]) or "file"


@contextmanager
def local_copies(files: Sequence[str], storage_options: dict[str, Any]) -> Iterator[list[str]]:
    """Local paths for ``files``: local files as they are, remote ones fetched to a temp folder.

    A failed download raises :class:`InputError` naming the (masked) URI. The temporary
    copies are removed when the block ends, whatever happened inside it.
    """
    if not any(Location(f).remote for f in files):
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
            target = os.path.join(workdir, f"{number:05d}", _local_name(uri))
            os.makedirs(os.path.dirname(target))
            fs, path = location.filesystem()
            with location.errors(as_input=True):
                fs.get_file(path, target)
            paths.append(target)
        yield paths
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
