"""The model registry: numbered versions of model files and folders, kept in the workspace.

``pbe model create --name N --path P`` copies ``P`` to
``<workspace>/models/N/<version>/<basename of P>`` and records its metadata in
``<workspace>/models/N/<version>.json`` (see :mod:`blocks.versioned`). The version folder is
what a deployment's scoring script sees as ``AZUREML_MODEL_DIR``, so it holds nothing but the
registered file or folder.

``--type mlflow_model`` takes a folder with an ``MLmodel`` file (read with PyYAML, mlflow
need not be installed) and records its flavors, signature and requirements, which
``model show`` prints; a folder without a readable ``MLmodel`` is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from blocks.errors import SpecError
from blocks.versioned import VersionedStore
from scoring.mlmodel import read_mlmodel

__all__ = ["ModelRegistry"]

_TYPES = ("custom_model", "mlflow_model", "triton_model")


class ModelRegistry(VersionedStore):
    """Registered models under ``<root>/models`` (the workspace root by default)."""

    kind = "model"
    folder = "models"

    def create_hint(self, name: str) -> str:
        return f"Register it: pbe model create --name {name} --type custom_model --path PATH"

    def list_models(self, name: str | None = None) -> list[dict]:
        """The newest version of every model, or every version of ``name`` (newest first)."""
        return self.list_all(name)

    def model_dir(self, name: str, version: str) -> str:
        """``AZUREML_MODEL_DIR`` of a version: the folder holding the registered file/folder."""
        return str(self.version_dir(name, version))

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
        self.check_name(name)
        if type not in _TYPES:
            raise SpecError(
                f"invalid model type {type!r}: expected one of {', '.join(_TYPES)}",
                key="type",
                hint="Use --type custom_model.",
            )
        source = Path(path).expanduser()
        if not source.exists():
            raise SpecError(
                f"model path '{path}' does not exist",
                key="path",
                hint="Give the model file or folder to register with --path.",
            )
        meta = {
            "type": type,
            "description": description,
            "tags": dict(tags or {}),
            "source_path": str(source.resolve()),
        }
        if type == "mlflow_model":
            meta.update(read_mlmodel(source).record())
        return self.register(name, meta, version=version, copy=source.resolve())
