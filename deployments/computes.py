"""Computes: named Dask cluster definitions (``DaskCompute`` blocks) that deployments use.

``pbe compute create -n batch-cluster --type amlcompute --min-instances 0 --max-instances 5``
saves a block that ``compute: azureml:batch-cluster`` resolves to. Names compare
case-insensitively and ``_`` equals ``-`` (block document names are lowercase and dashes).
"""

from __future__ import annotations

import json
import re
from typing import Any

from blocks.compute import DaskCompute
from blocks.endpoint import compute_document_name, compute_names, deployment_blocks, load_compute
from blocks.errors import AlreadyExistsError, BatchEndpointError, SpecError

__all__ = ["create_compute", "delete_compute", "list_computes", "show_compute"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{1,31}")


def _record(name: str, compute: DaskCompute) -> dict[str, Any]:
    """A compute as ``az ml compute show`` shapes it, plus the Dask specifics."""
    return {
        "name": name,
        "type": compute.type,
        "min_instances": compute.min_instances,
        "max_instances": compute.max_instances,
        "address": compute.address,
        "cluster_class": compute.cluster_class,
        "cluster_kwargs": dict(compute.cluster_kwargs),
        "provisioning_state": "Succeeded",
    }


def _parse_kwargs(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SpecError(
            f"--cluster-kwargs is not JSON: {exc}",
            key="cluster_kwargs",
            hint="Pass a JSON object, e.g. --cluster-kwargs '{\"n_workers\": 2}'.",
        ) from exc
    if not isinstance(value, dict):
        raise SpecError(
            "--cluster-kwargs must be a JSON object",
            key="cluster_kwargs",
            hint='e.g. --cluster-kwargs \'{"queue": "batch"}\'',
        )
    return value


def create_compute(
    name: str,
    *,
    type: str = "local",
    address: str | None = None,
    cluster_class: str | None = None,
    cluster_kwargs: str | None = None,
    min_instances: int | None = None,
    max_instances: int | None = None,
) -> dict[str, Any]:
    """Register a compute; AlreadyExistsError when the name is taken by different settings."""
    if not _NAME.fullmatch(name):
        raise SpecError(
            f"invalid compute name {name!r}: 2-32 characters, starting with a letter, using "
            "letters, digits, '-' and '_'",
            key="name",
            hint="e.g. -n batch-cluster",
        )
    document = compute_document_name(name)
    values: dict[str, Any] = {
        "type": type,
        "address": address,
        "cluster_class": cluster_class,
        "cluster_kwargs": _parse_kwargs(cluster_kwargs),
    }
    if min_instances is not None:
        values["min_instances"] = min_instances
    if max_instances is not None:
        values["max_instances"] = max_instances
    try:
        compute = DaskCompute(**values)
    except SpecError:
        raise
    except ValueError as exc:  # pydantic: a count out of range
        raise SpecError(
            f"invalid compute settings: {_first_error(exc)}",
            hint="--min-instances >= 0, --max-instances >= 1",
        ) from exc
    if type == "cluster_class":
        _check_import_path(str(cluster_class))
    if document in compute_names():  # like az ml: creating it again as it is changes nothing
        existing = load_compute(name)
        if existing.model_dump() == compute.model_dump():
            return _record(document, compute)
        raise AlreadyExistsError(
            "compute",
            name,
            hint=f"It has other settings; delete it first: pbe compute delete -n {name} --yes",
        )
    compute.save(document)
    return _record(document, compute)


def show_compute(name: str) -> dict[str, Any]:
    """The compute ``name``; NotFoundError listing the known computes otherwise."""
    return _record(compute_document_name(name), load_compute(name))


def list_computes() -> list[dict[str, Any]]:
    """Every registered compute."""
    return [_record(n, load_compute(n)) for n in compute_names()]


def delete_compute(name: str) -> None:
    """Delete a compute that no deployment uses."""
    load_compute(name)
    document = compute_document_name(name)
    users = [
        f"{b.endpoint}/{b.name}"
        for b in deployment_blocks()
        if compute_document_name(b.compute) == document
    ]
    if users:
        raise BatchEndpointError(
            f"compute '{name}' is used by deployment(s) {', '.join(users)}",
            hint="Delete or update those deployments first.",
        )
    DaskCompute.delete(document)


def _check_import_path(path: str) -> None:
    """``module.Class`` form only: the class is imported where jobs run, not here."""
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+", path):
        raise SpecError(
            f"cluster class {path!r} is not an import path",
            key="cluster_class",
            hint="Give module.Class, e.g. dask_jobqueue.SLURMCluster (installed where the "
            "jobs run).",
        )


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
    return str(exc)
