"""The model registry: numbered versions of model files and folders, kept in the workspace.

``pbe model create --name N --path P`` copies ``P`` to
``<workspace>/models/N/<version>/<basename of P>`` and records its metadata in
``<workspace>/models/N/<version>.json``. The version folder is what a deployment's scoring
script sees as ``AZUREML_MODEL_DIR``, so it holds nothing but the registered file or folder.

Versions are claimed by creating their metadata file exclusively, so two concurrent
``model create`` calls never get the same number; the copy appears under its final name
only once complete (written beside it, then renamed).
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
from typing import Any

from blocks.errors import AlreadyExistsError, NotFoundError, SpecError
from blocks.workspace import workspace_root

__all__ = ["ModelRegistry"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TYPES = ("custom_model", "mlflow_model", "triton_model")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version_key(version: str) -> tuple[int, int | str]:
    """Numeric versions sort by value and after the rest, so ``10`` is newer than ``9``."""
    return (1, int(version)) if version.isdigit() else (0, version)


class ModelRegistry:
    """Registered models under ``<root>/models`` (the workspace root by default)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else workspace_root() / "models"

    # --- queries ----------------------------------------------------------------------

    def names(self) -> list[str]:
        """Names of the models that have at least one version."""
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
        self._check_name(name)
        versions = self.versions(name)
        if not versions:
            raise NotFoundError(
                "model", name, known=self.names(),
                hint=f"Register it: pbe model create --name {name} --type custom_model "
                "--path PATH",
            )
        if version is None or label == "latest":
            version = versions[-1]
        version = str(version)
        if version not in versions:
            raise NotFoundError(
                "model version", f"{name}:{version}", known=[f"{name}:{v}" for v in versions],
                hint=f"Use one of the versions listed, or azureml:{name}@latest.",
            )
        return self._read(name, version)

    def list_models(self, name: str | None = None) -> list[dict]:
        """The newest version of every model, or every version of ``name`` (newest first)."""
        if name is None:
            return [self.show(n) for n in self.names()]
        self._check_name(name)
        return [self._read(name, v) for v in reversed(self.versions(name))]

    def model_dir(self, name: str, version: str) -> str:
        """``AZUREML_MODEL_DIR`` of a version: the folder holding the registered file/folder."""
        return str(self.root / name / str(version))

    # --- changes ----------------------------------------------------------------------

    def create(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        version: str | None = None,
        type: str = "custom_model",
        description: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> dict:
        """Copy ``path`` in as a new version (the next number unless ``version`` is given)."""
        self._check_name(name)
        if type not in _TYPES:
            raise SpecError(
                f"invalid model type {type!r}: expected one of {', '.join(_TYPES)}",
                key="type", hint="Use --type custom_model.",
            )
        source = Path(path).expanduser()
        if not source.exists():
            raise SpecError(
                f"model path '{path}' does not exist", key="path",
                hint="Give the model file or folder to register with --path.",
            )
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        version = self._claim(folder, version)
        meta = {
            "id": f"azureml:{name}:{version}",
            "name": name,
            "version": version,
            "type": type,
            "description": description,
            "tags": dict(tags or {}),
            "path": str(folder / version / source.resolve().name),
            "source_path": str(source.resolve()),
            "creation_context": {"created_at": _now(), "created_by": getpass.getuser()},
        }
        try:
            self._copy(source.resolve(), folder / version)
            (folder / f"{version}.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        except BaseException:
            (folder / f"{version}.json").unlink(missing_ok=True)
            shutil.rmtree(folder / version, ignore_errors=True)
            raise
        return meta

    # --- helpers ----------------------------------------------------------------------

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SpecError(
                f"invalid model name {name!r}: use letters, digits, '-', '_' and '.', "
                "starting with a letter or digit",
                key="name", hint="Choose a name such as 'mnist-classifier'.",
            )

    def _claim(self, folder: Path, version: str | None) -> str:
        """Reserve a version number by creating its metadata file exclusively."""
        if version is not None:
            version = str(version)
            if not _VERSION.fullmatch(version):
                raise SpecError(f"invalid model version {version!r}", key="version",
                                hint="Use a number such as 3, or leave the version out.")
            try:
                (folder / f"{version}.json").open("x").close()
            except FileExistsError:
                raise AlreadyExistsError(
                    "model version", f"{folder.name}:{version}",
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

    def _read(self, name: str, version: str) -> dict[str, Any]:
        meta_file = self.root / name / f"{version}.json"
        try:
            return json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            # the version is being written right now: describe it from its folder
            return {"id": f"azureml:{name}:{version}", "name": name, "version": version,
                    "type": "custom_model", "path": self.model_dir(name, version)}
