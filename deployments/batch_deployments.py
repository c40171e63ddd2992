"""Batch deployments: a validated spec, a code snapshot and a pinned model, saved as a Block.

``create`` reads ``deployment.yml`` (paths relative to its folder; ``--set`` overrides;
``--endpoint-name``/``--name`` win over the YAML), checks that the endpoint and the compute
exist, checks ``environment.conda_file`` (and an MLflow model's ``requirements.txt``)
against the scoring environment, pins the model
(``@latest`` becomes a version now; an inline model registers a new version), copies the
code folder to ``<workspace>/snapshots/<endpoint>/<deployment>/<id>`` and saves a
``BatchDeployment`` block. Later edits of the user's folder do not change a deployment;
``update --file`` takes a new snapshot. A deployment without ``code_configuration`` of an
MLflow model (``python_function`` flavor) runs the built-in scorer (:mod:`scoring.builtin`).
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from blocks.endpoint import (
    BatchDeployment,
    BatchEndpoint,
    deployment_blocks,
    deployment_document_name,
    endpoint_document_name,
    load_compute,
    load_deployment,
    load_endpoint,
)
from blocks.errors import AlreadyExistsError, BatchEndpointError, SpecError
from blocks.names import validate_name
from blocks.overrides import apply_set_overrides
from blocks.spec import InlineModel, ModelDeploymentSpec, ModelReference
from blocks.spec_loading import load_deployment_yaml, parse_deployment
from blocks.workspace import workspace_root
from deployments.registry import ModelRegistry
from scoring.builtin import builtin_code
from scoring.environment import (
    EnvironmentReport,
    check_environment,
    check_model_folder,
    saved_version_warnings,
)

__all__ = [
    "create_deployment",
    "delete_deployment",
    "deployment_record",
    "list_deployments",
    "load_spec",
    "show_deployment",
    "update_deployment",
]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- reading the spec -------------------------------------------------------------------------


def load_spec(
    file: str | os.PathLike[str] | None,
    *,
    sets: Sequence[str] = (),
    name: str | None = None,
    endpoint_name: str | None = None,
    base: ModelDeploymentSpec | None = None,
) -> ModelDeploymentSpec:
    """The spec of ``file`` (or ``base``) with ``--set`` overrides and CLI names applied."""
    if file is not None:
        spec = load_deployment_yaml(file)
        source, folder = str(file), Path(file).resolve().parent
    elif base is not None:
        spec, source, folder = base, f"deployment '{base.name}'", Path.cwd()
    else:
        raise SpecError("give the deployment YAML with --file", hint="--file deployment.yml")
    if sets:
        data = spec.model_dump(mode="json", exclude_unset=True)
        if isinstance(spec.model, ModelReference):
            data["model"] = str(spec.model)
        spec = parse_deployment(
            apply_set_overrides(data, list(sets), source=source), source=f"{source} (with --set)"
        )
        spec = _absolute_paths(spec, folder, source)
    updates: dict[str, Any] = {}
    if name:
        updates["name"] = validate_name("deployment", name, key="--name")
    if endpoint_name:
        updates["endpoint_name"] = endpoint_name
    return spec.model_copy(update=updates) if updates else spec


def _absolute_paths(spec: ModelDeploymentSpec, folder: Path, source: str) -> ModelDeploymentSpec:
    """Paths a ``--set`` introduced, made absolute (relative to the YAML's folder) and checked."""

    def where(value: str, key: str) -> str:
        full = (folder / Path(value).expanduser()).resolve()
        if not full.exists():
            raise SpecError(
                f"'{value}' does not exist (looked for '{full}')",
                source=source,
                key=key,
                hint="Paths are relative to the folder of the YAML file.",
            )
        return str(full)

    updates: dict[str, Any] = {}
    if (code := spec.code_configuration) is not None:
        updates["code_configuration"] = code.model_copy(
            update={"code": where(code.code, "code_configuration.code")}
        )
    if isinstance(spec.model, InlineModel):
        updates["model"] = spec.model.model_copy(
            update={"path": where(spec.model.path, "model.path")}
        )
    return spec.model_copy(update=updates)


# --- pinning: model version and code snapshot ---------------------------------------------------


def _pin_model(spec: ModelDeploymentSpec, registry: ModelRegistry) -> dict[str, Any]:
    """The model version the deployment uses; an MLflow model's environment checked first."""
    model = spec.model
    if isinstance(model, InlineModel):
        _check_model_environment(model.path)
        return registry.create(
            model.name,
            model.path,
            version=model.version,
            type=model.type,
            description=model.description,
        )
    pinned = registry.show(model.name, model.version, label=model.label)
    _check_model_environment(pinned["path"])
    return pinned


def _snapshot(code: str, endpoint: str, deployment: str) -> str:
    """Copy the code folder into the workspace; return the copy's path."""
    target = (
        _snapshot_root(endpoint, deployment)
        / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    )
    shutil.copytree(code, target, ignore=shutil.ignore_patterns("__pycache__", ".git", "*.pyc"))
    return str(target)


def _snapshot_root(endpoint: str, deployment: str) -> Path:
    return workspace_root() / "snapshots" / endpoint_document_name(endpoint) / deployment.lower()


def _check_environment(spec: ModelDeploymentSpec) -> None:
    """Check ``environment.conda_file`` against the scoring environment (see scoring.environment).

    Missing packages fail with the ``pip install`` line that fixes them; differing pins and
    pins a running environment cannot honour are printed as warnings on stderr, and what
    was skipped (Azure ML's own runtime packages) as one info line.
    """
    if spec.environment is None or not spec.environment.conda_file:
        return
    _report_environment(check_environment(spec.environment.conda_file))


def _check_model_environment(path: str | os.PathLike[str]) -> None:
    """Check an MLflow model folder's ``requirements.txt``/``conda.yaml`` the same way."""
    report = check_model_folder(path)
    if report is not None:
        _report_environment(report)
    for line in saved_version_warnings(path):
        print(f"WARNING: {line}", file=sys.stderr)


def _report_environment(report: EnvironmentReport) -> None:
    """Fail on missing packages; print warnings and info lines on stderr."""
    report.raise_for_missing()
    for line in report.messages():
        print(f"WARNING: {line}", file=sys.stderr)
    for line in report.notes():
        print(f"INFO: {line}", file=sys.stderr)


def _builtin_scorer(spec: ModelDeploymentSpec, model: dict[str, Any] | None) -> tuple[str, str]:
    """The built-in MLflow scorer for a deployment without code, once its model is checked:
    the inline model before it is registered (``model`` None), else the pinned version."""
    try:
        if model is None:
            assert isinstance(spec.model, InlineModel)
            return builtin_code(
                spec.model.path, model_type=spec.model.type, label=f"'{spec.model.name}'"
            )
        registry = ModelRegistry()
        meta = registry.show(model["name"], str(model["version"]))
        return builtin_code(
            registry.model_dir(model["name"], str(model["version"])),
            model_type=meta.get("type", "custom_model"),
            label=f"'{model['name']}:{model['version']}'",
        )
    except SpecError as exc:
        raise SpecError(
            exc.message, source=f"deployment '{spec.name}'", key=exc.key, hint=exc.hint
        ) from None


def _block(
    spec: ModelDeploymentSpec, endpoint: BatchEndpoint, previous: BatchDeployment | None
) -> BatchDeployment:
    """The block of ``spec``: a new snapshot and model pin unless unchanged since ``previous``.

    Without ``code_configuration`` the model must be an MLflow model; the deployment then
    runs the package's built-in scorer (no snapshot: it is part of the installed package).
    """
    load_compute(spec.compute_name)
    _check_environment(spec)
    if spec.code_configuration is None and isinstance(spec.model, InlineModel):
        _builtin_scorer(spec, None)  # refused before an inline model is registered
    same_model = previous is not None and str(spec.model) == previous.spec.get("model")
    if same_model:
        model = {"name": previous.model_name, "version": previous.model_version}
        _check_model_environment(previous.model_dir)
    else:
        model = _pin_model(spec, ModelRegistry())
    updates: dict[str, Any] = {
        "endpoint_name": endpoint.name,
        "model": ModelReference(name=model["name"], version=str(model["version"])),
    }
    if spec.code_configuration is None:
        code_dir, script = _builtin_scorer(spec, model)
    else:
        code, script = spec.code_configuration.code, spec.code_configuration.scoring_script
        same_code = (
            previous is not None
            and previous.spec.get("code_configuration")
            and os.path.abspath(code) == previous.code_dir
        )
        code_dir = previous.code_dir if same_code else _snapshot(code, endpoint.name, spec.name)
        updates["code_configuration"] = spec.code_configuration.model_copy(
            update={"code": code_dir}
        )
    pinned = spec.model_copy(update=updates)
    data = pinned.model_dump(mode="json", exclude_none=True)
    data["model"] = str(pinned.model)
    return BatchDeployment(
        name=spec.name,
        endpoint=endpoint.name,
        description=spec.description,
        spec=data,
        code_dir=code_dir,
        scoring_script=script,
        model_name=model["name"],
        model_version=str(model["version"]),
        model_dir=ModelRegistry().model_dir(model["name"], str(model["version"])),
        compute=spec.compute_name,
        created_at=previous.created_at if previous else _now(),
        updated_at=_now(),
    )


# --- records and operations ---------------------------------------------------------------------


def deployment_record(block: BatchDeployment, endpoint: BatchEndpoint | None = None) -> dict:
    """A deployment as ``az ml batch-deployment show`` shapes it."""
    spec = dict(block.spec)
    record = {
        "name": block.name,
        "endpoint_name": block.endpoint,
        "type": "model",
        "description": block.description,
        "tags": spec.get("tags", {}),
        "model": f"azureml:{block.model_name}:{block.model_version}",
        "code_configuration": (
            {"code": block.code_dir, "scoring_script": block.scoring_script}
            if spec.get("code_configuration")
            else None
        ),
        "environment": spec.get("environment"),
        "compute": f"azureml:{block.compute}",
        "resources": block.model_spec().resources.model_dump(),
        "settings": block.model_spec().settings.model_dump(mode="json"),
        "provisioning_state": "Succeeded",
        "properties": {
            "model_dir": block.model_dir,
            "created_at": block.created_at,
            "updated_at": block.updated_at,
        },
    }
    if not spec.get("code_configuration"):
        record["properties"]["scoring_script"] = "built-in MLflow scorer (mlflow_driver.py)"
    if endpoint is not None:
        record["properties"]["is_default"] = endpoint.default_deployment == block.name
    return record


def create_deployment(
    file: str,
    *,
    endpoint_name: str | None = None,
    name: str | None = None,
    sets: Sequence[str] = (),
    set_default: bool = False,
) -> dict:
    """``pbe batch-deployment create``: validate, pin, snapshot, save; maybe make it default."""
    spec = load_spec(file, sets=sets, name=name, endpoint_name=endpoint_name)
    if not spec.endpoint_name:
        raise SpecError(
            "the deployment names no endpoint",
            source=str(file),
            key="endpoint_name",
            hint="Pass --endpoint-name E.",
        )
    endpoint = load_endpoint(spec.endpoint_name)
    if spec.name.lower() in {b.name.lower() for b in deployment_blocks(endpoint.name)}:
        raise AlreadyExistsError(
            "deployment",
            f"{endpoint.name}/{spec.name}",
            hint=f"Change it with: pbe batch-deployment update --file {file} "
            f"--endpoint-name {endpoint.name}",
        )
    block = _block(spec, endpoint, None)
    try:
        block.save(deployment_document_name(endpoint.name, spec.name))
    except ValueError as exc:  # created concurrently
        if spec.code_configuration is not None:  # never the built-in scorer's folder
            shutil.rmtree(block.code_dir, ignore_errors=True)
        raise AlreadyExistsError("deployment", f"{endpoint.name}/{spec.name}") from exc
    if set_default:
        endpoint.default_deployment = block.name
        endpoint.save(endpoint_document_name(endpoint.name), overwrite=True)
    return deployment_record(block, endpoint)


def update_deployment(
    name: str | None,
    endpoint_name: str | None,
    *,
    file: str | None = None,
    sets: Sequence[str] = (),
) -> dict:
    """``pbe batch-deployment update``: from a new YAML (new snapshot) or ``--set`` overrides."""
    if file is None and not sets:
        raise SpecError("nothing to update", hint="Pass --file deployment.yml or --set key=value.")
    if file is not None:
        spec = load_spec(file, sets=sets, name=name, endpoint_name=endpoint_name)
    else:
        if not (name and endpoint_name):
            raise SpecError("name the deployment", hint="Pass --name D --endpoint-name E.")
        current = load_deployment(endpoint_name, name)
        spec = load_spec(None, sets=sets, base=current.model_spec())
    endpoint = load_endpoint(spec.endpoint_name or endpoint_name or "")
    previous = load_deployment(endpoint.name, spec.name)
    block = _block(spec, endpoint, previous)
    block.save(deployment_document_name(endpoint.name, spec.name), overwrite=True)
    return deployment_record(block, endpoint)


def show_deployment(name: str, endpoint_name: str) -> dict:
    endpoint = load_endpoint(endpoint_name)
    return deployment_record(load_deployment(endpoint.name, name), endpoint)


def list_deployments(endpoint_name: str) -> list[dict]:
    endpoint = load_endpoint(endpoint_name)
    return [deployment_record(b, endpoint) for b in deployment_blocks(endpoint.name)]


def delete_deployment(name: str, endpoint_name: str, *, force_default: bool = False) -> None:
    """Delete a deployment and its snapshots; the endpoint's default cannot be deleted."""
    endpoint = load_endpoint(endpoint_name)
    block = load_deployment(endpoint.name, name)
    if endpoint.default_deployment == block.name and not force_default:
        raise BatchEndpointError(
            f"deployment '{block.name}' is the default of endpoint '{endpoint.name}'",
            hint=f"Make another deployment the default first: pbe batch-endpoint update "
            f"--name {endpoint.name} --set defaults.deployment_name=OTHER",
        )
    BatchDeployment.delete(deployment_document_name(endpoint.name, block.name))
    shutil.rmtree(_snapshot_root(endpoint.name, block.name), ignore_errors=True)
