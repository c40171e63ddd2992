"""Numbered versions of named things, kept in the workspace: models and data assets.

A version of ``N`` is ``<root>/N/<version>.json`` (its metadata) beside ``<root>/N/<version>/``
(the files it holds, possibly none). Versions are claimed by creating their metadata file
exclusively, so two concurrent ``create`` calls never get the same number; copied files
appear under their final name only once complete (written beside it, then renamed).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from blocks.errors import AlreadyExistsError, NotFoundError, SpecError
from blocks.workspace import workspace_root

__all__ = ["VersionedStore"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version_key(version: str) -> tuple[int, int | str]:
    """Numeric versions sort by value and after the rest, so ``10`` is newer than ``9``."""
    return (1, int(version)) if version.isdigit() else (0, version)


class VersionedStore:
    """Named, versioned records under ``<workspace>/<folder>``; subclasses say what they hold."""

    #: what one record is called in messages ("model", "data asset")
    kind: ClassVar[str]
    #: the workspace sub-folder
    folder: ClassVar[str]

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else workspace_root() / self.folder

    def create_hint(self, name: str) -> str:
        """How to create the first version of ``name`` (for 'not found' messages)."""
        raise NotImplementedError

    # --- queries ----------------------------------------------------------------------

    def names(self) -> list[str]:
        """Names that have at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        """Complete versions of ``name``, oldest first."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = [p.stem for p in folder.glob("*.json") if (folder / p.stem).is_dir()]
        return sorted(found, key=_version_key)

    def show(self, name: str, version: str | None = None, *, label: str | None = None) -> dict:
        """The metadata of one version (``label='latest'`` or no version: the newest)."""
        self.check_name(name)
        versions = self.versions(name)
        if not versions:
            raise NotFoundError(self.kind, name, known=self.names(), hint=self.create_hint(name))
        if version is None or label == "latest":
            version = versions[-1]
        version = str(version)
        if version not in versions:
            raise NotFoundError(
                f"{self.kind} version",
                f"{name}:{version}",
                known=[f"{name}:{v}" for v in versions],
                hint=f"Use one of the versions listed, or azureml:{name}@latest.",
            )
        return self.read(name, version)

    def list_all(self, name: str | None = None) -> list[dict]:
        """The newest version of every name, or every version of ``name`` (newest first)."""
        if name is None:
            return [self.show(n) for n in self.names()]
        self.check_name(name)
        return [self.read(name, v) for v in reversed(self.versions(name))]

    def version_dir(self, name: str, version: str) -> Path:
        """The folder that holds a version's files."""
        return self.root / name / str(version)

    # --- changes ----------------------------------------------------------------------

    def register(
        self,
        name: str,
        meta: dict[str, Any],
        *,
        version: str | None = None,
        copy: Path | None = None,
    ) -> dict:
        """Claim a version of ``name``, copy ``copy`` (a file or folder) into it, save ``meta``.

        ``meta`` gets ``id``, ``name``, ``version`` and ``creation_context``; its ``path`` is
        the copy's path when ``copy`` is given.
        """
        self.check_name(name)
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        version = self._claim(folder, version)
        meta = {
            "id": f"azureml:{name}:{version}",
            "name": name,
            "version": version,
            **meta,
            "creation_context": {"created_at": _now(), "created_by": getpass.getuser()},
        }
        try:
            if copy is None:
                self.version_dir(name, version).mkdir()
            else:
                meta["path"] = str(self.version_dir(name, version) / copy.name)
                self._copy(copy, self.version_dir(name, version))
            (folder / f"{version}.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        except BaseException:
            (folder / f"{version}.json").unlink(missing_ok=True)
            shutil.rmtree(self.version_dir(name, version), ignore_errors=True)
            raise
        return meta

    # --- helpers ----------------------------------------------------------------------

    def check_name(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SpecError(
                f"invalid {self.kind} name {name!r}: use letters, digits, '-', '_' and '.', "
                "starting with a letter or digit",
                key="name",
                hint="Choose a name such as 'mnist-digits'.",
            )

    def _claim(self, folder: Path, version: str | None) -> str:
        """Reserve a version number by creating its metadata file exclusively."""
        if version is not None:
            version = str(version)
            if not _VERSION.fullmatch(version):
                raise SpecError(
                    f"invalid {self.kind} version {version!r}",
                    key="version",
                    hint="Use a number such as 3, or leave the version out.",
                )
            try:
                (folder / f"{version}.json").open("x").close()
            except FileExistsError:
                raise AlreadyExistsError(
                    f"{self.kind} version",
                    f"{folder.name}:{version}",
                    hint="Leave the version out to register the next one.",
                ) from None
            return version
        numbers = [int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit()]
        candidate = max(numbers, default=0) + 1
        while True:
            try:
                (folder / f"{candidate}.json").open("x").close()
                return str(candidate)
            except FileExistsError:
                candidate += 1

    def _copy(self, source: Path, target: Path) -> None:
        staging = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
        staging.mkdir()
        try:
            inside = staging / source.name
            if source.is_dir():
                shutil.copytree(source, inside, symlinks=False)
            else:
                shutil.copy2(source, inside)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def read(self, name: str, version: str) -> dict[str, Any]:
        meta_file = self.root / name / f"{version}.json"
        try:
            return json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            # the version is being written right now: describe it from its folder
            return {
                "id": f"azureml:{name}:{version}",
                "name": name,
                "version": version,
                "path": str(self.version_dir(name, version)),
            }
