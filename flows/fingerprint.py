"""The input's fingerprint: each file's name, size and modification time (or ETag).

A job keeps its input's fingerprint in its staging folder (``input.tsv``, one line per
file, in scoring order) and a digest of it in its record. A resume lists the input again
and compares: the digest first (one string), then, only when it differs, the lines, to name
the files that changed, appeared or disappeared.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flows.storage import Location, local_path

__all__ = ["FileStamp", "InputChanges", "compare", "digest", "fingerprint", "parse", "render"]


@dataclass(frozen=True)
class FileStamp:
    """One input file as a resume compares it: name, size, and mtime or ETag."""

    name: str
    size: int
    stamp: str


def fingerprint(source: Location, files: Sequence[str]) -> list[FileStamp]:
    """The stamps of ``files`` (as ``list_input`` returned them), with one listing."""
    if not files:
        return []
    if not source.remote:
        return _local(files)
    folder = files[0].rsplit("/", 1)[0]
    fs, path = Location(folder, source.storage_options).filesystem()
    wanted = {uri.rsplit("/", 1)[-1] for uri in files}
    with source.errors(as_input=True):
        if len(files) == 1 and files[0].rstrip("/") == source.uri.rstrip("/"):
            entries = [fs.info(source.filesystem()[1])]
        else:
            entries = fs.ls(path.rstrip("/"), detail=True)
    by_name = {e["name"].rstrip("/").rsplit("/", 1)[-1]: e for e in entries}
    return [
        _remote_stamp(name, by_name[name])
        for name in (uri.rsplit("/", 1)[-1] for uri in files)
        if name in wanted and name in by_name
    ]


def _local(files: Sequence[str]) -> list[FileStamp]:
    folder = os.path.dirname(local_path(files[0]))
    if len(files) == 1:
        stat = os.stat(local_path(files[0]))
        return [FileStamp(os.path.basename(files[0]), stat.st_size, str(stat.st_mtime_ns))]
    stats = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file():
                stat = entry.stat()
                stats[entry.name] = FileStamp(entry.name, stat.st_size, str(stat.st_mtime_ns))
    return [stats[os.path.basename(f)] for f in files if os.path.basename(f) in stats]


def _remote_stamp(name: str, entry: dict) -> FileStamp:
    stamp = (
        entry.get("ETag")
        or entry.get("etag")
        or entry.get("LastModified")
        or entry.get("last_modified")
        or entry.get("mtime")
        or ""
    )
    return FileStamp(name, int(entry.get("size") or 0), str(stamp).strip('"'))


def render(stamps: Iterable[FileStamp]) -> bytes:
    """The fingerprint as ``input.tsv`` holds it: ``name<TAB>size<TAB>stamp`` per line."""
    return "".join(f"{s.name}\t{s.size}\t{s.stamp}\n" for s in stamps).encode()


def parse(data: bytes) -> list[FileStamp]:
    stamps = []
    for line in data.decode().splitlines():
        name, size, stamp = line.rsplit("\t", 2)
        stamps.append(FileStamp(name, int(size), stamp))
    return stamps


def digest(stamps: Iterable[FileStamp]) -> str:
    """One SHA-256 over the ordered fingerprint."""
    hasher = hashlib.sha256()
    for stamp in stamps:
        hasher.update(f"{stamp.name}\t{stamp.size}\t{stamp.stamp}\n".encode())
    return hasher.hexdigest()


@dataclass(frozen=True)
class InputChanges:
    """The files that differ between a job's fingerprint and its input now."""

    changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.removed)

    def describe(self, shown: int = 5) -> str:
        parts = []
        for label, names in (
            ("changed", self.changed),
            ("added", self.added),
            ("removed", self.removed),
        ):
            if names:
                more = f" and {len(names) - shown} more" if len(names) > shown else ""
                parts.append(f"{label}: {', '.join(names[:shown])}{more}")
        return "; ".join(parts)


def compare(before: Sequence[FileStamp], now: Sequence[FileStamp]) -> InputChanges:
    old = {s.name: s for s in before}
    new = {s.name: s for s in now}
    return InputChanges(
        changed=tuple(sorted(n for n in old.keys() & new.keys() if old[n] != new[n])),
        added=tuple(sorted(new.keys() - old.keys())),
        removed=tuple(sorted(old.keys() - new.keys())),
    )
