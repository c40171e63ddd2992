"""Data assets: named, versioned inputs that jobs take as ``azureml:<name>@latest``.

``pbe data create -f data.yml`` (the platform's data YAML: ``name``, ``version``,
``description``, ``tags``, ``type: uri_folder|uri_file``, ``path``) or ``--name --type
--path`` registers a version. A local path is snapshotted into
``<workspace>/data/<name>/<version>/`` (later changes to the folder do not change the asset);
a URI (``s3://``, ``https://``, ``azureml://datastores/…``, Azure Blob URLs) is referenced.

A job's input ``azureml:<name>@latest`` or ``azureml:<name>:<version>`` resolves here to the
asset's path and type (:func:`resolve_input`), wherever the job was started: ``pbe``,
``prefect deployment run`` parameters, or a Python call of the flow.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from blocks.errors import SpecError
from blocks.spec import SpecModel, StrDict, VersionText
from blocks.spec_loading import load_yaml_spec
from blocks.versioned import VersionedStore

__all__ = [
    "DataAsset",
    "DataAssetSpec",
    "DataRegistry",
    "data_spec",
    "is_reference",
    "load_data_yaml",
    "resolve_input",
]

DataType = Literal["uri_folder", "uri_file"]

#: ``azureml:<name>:<version>`` or ``azureml:<name>@latest`` (not ``azureml://…`` paths)
_REFERENCE = re.compile(
    r"azureml:(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?::(?P<version>[A-Za-z0-9._-]+)|@(?P<label>\w+))"
)


class DataAssetSpec(SpecModel):
    """The platform's data YAML (``data.schema.json``), for ``uri_folder`` and ``uri_file``."""

    name: str = Field(description="Asset name.")
    version: VersionText | None = Field(None, description="Version; the next number if left out.")
    description: str | None = None
    tags: StrDict = Field(default_factory=dict)
    type: DataType = Field("uri_folder", description="uri_folder (default) or uri_file.")
    path: str = Field(description="A local file/folder (relative to the YAML) or a URI.")


def load_data_yaml(path: str | os.PathLike[str]) -> DataAssetSpec:
    """Read a data YAML; a relative local ``path`` becomes absolute (beside the YAML)."""
    spec = load_yaml_spec(DataAssetSpec, path)
    if _is_uri(spec.path):
        return spec
    local = (Path(path).resolve().parent / Path(spec.path).expanduser()).resolve()
    return spec.model_copy(update={"path": str(local)})


def data_spec(file: str | None = None, **given: str | None) -> DataAssetSpec:
    """The asset ``pbe data create`` registers: the YAML ``file`` (if any) with the options
    given on the command line winning over it, as ``--name`` does for the other groups."""
    options = {key: value for key, value in given.items() if value is not None}
    if file is None:
        missing = [f"--{key}" for key in ("name", "path") if key not in options]
        if missing:
            raise SpecError(
                f"{' and '.join(missing)} required without --file",
                hint="pbe data create --name NAME --type uri_folder --path PATH, "
                "or pbe data create -f data.yml",
            )
        return DataAssetSpec.model_validate(options)
    return load_data_yaml(file).model_copy(update=options)  # a --path is relative to here


@dataclass(frozen=True)
class DataAsset:
    """One version of an asset: what a job reads (``path``) and how (``type``)."""

    name: str
    version: str
    type: DataType
    path: str


class DataRegistry(VersionedStore):
    """Registered data assets under ``<workspace>/data``."""

    kind = "data asset"
    folder = "data"

    def create_hint(self, name: str) -> str:
        return f"Register it: pbe data create --name {name} --type uri_folder --path PATH"

    def create(self, spec: DataAssetSpec) -> dict:
        """Register ``spec`` as a new version: a local path is copied in, a URI referenced."""
        self.check_name(spec.name)
        meta = {"type": spec.type, "description": spec.description, "tags": dict(spec.tags)}
        if _is_uri(spec.path):
            return self.register(spec.name, {**meta, "path": spec.path}, version=spec.version)
        source = Path(spec.path.removeprefix("file://")).expanduser().resolve()
        if not source.exists():
            raise SpecError(
                f"data path '{source}' does not exist",
                key="path",
                hint="Fix the path (in a data YAML, relative to its folder).",
            )
        if source.is_dir() != (spec.type == "uri_folder"):
            what, wanted = ("a file", "a folder") if source.is_file() else ("a folder", "a file")
            other = "uri_file" if spec.type == "uri_folder" else "uri_folder"
            raise SpecError(
                f"data path '{source}' is {what}, but type {spec.type} reads {wanted}",
                key="type",
                hint=f"Use type {other}, or point path at {wanted}.",
            )
        meta["source_path"] = str(source)
        return self.register(spec.name, meta, version=spec.version, copy=source)

    def resolve(self, reference: str) -> DataAsset:
        """The asset ``azureml:<name>:<version>`` / ``azureml:<name>@latest`` names."""
        match = _REFERENCE.fullmatch(reference.strip())
        if match is None:
            raise SpecError(
                f"'{reference}' is not a data asset reference",
                hint="Write azureml:<name>@latest or azureml:<name>:<version>.",
            )
        if match["label"] not in (None, "latest"):
            raise SpecError(
                f"unknown label '@{match['label']}' in '{reference}'",
                hint=f"Write azureml:{match['name']}@latest.",
            )
        meta = self.show(match["name"], match["version"])
        return DataAsset(meta["name"], meta["version"], meta["type"], meta["path"])


def is_reference(uri: str) -> bool:
    """Whether ``uri`` names a data asset: ``azureml:`` but not an ``azureml://`` path."""
    text = uri.strip().lower()
    return text.startswith("azureml:") and not text.startswith("azureml://")


def resolve_input(uri: str, input_type: str) -> tuple[str, str]:
    """``(path, input_type)`` of a job input: a data asset's own path and type, else as given."""
    if not is_reference(uri):
        return uri, input_type
    asset = DataRegistry().resolve(uri)
    return asset.path, asset.type


def _is_uri(path: str) -> bool:
    """A URI (``s3://``, ``https://``, ``azureml://``…), as opposed to a local path."""
    return bool(re.match(r"[A-Za-z][A-Za-z0-9+.-]+://", path)) and not path.startswith("file://")
