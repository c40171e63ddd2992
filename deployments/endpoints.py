"""Batch endpoints: a ``BatchEndpoint`` block plus a Prefect deployment of ``batch-score``.

The Prefect deployment ``batch-score/<endpoint>`` fixes the parameter ``endpoint=<name>``
and runs on the process work pool; every way of invoking it (``pbe batch-endpoint invoke``,
``prefect deployment run``, ``run_deployment()``, a schedule) passes the rest. The default
deployment lives on the block, so changing it never touches the Prefect deployment.
A schedule (``--schedule CRON --schedule-input PATH``) is a Prefect deployment schedule
with slug ``pbe-schedule`` whose parameters carry the input.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from blocks.endpoint import (
    BatchEndpoint,
    deployment_blocks,
    endpoint_document_name,
    endpoint_names,
    load_deployment,
    load_endpoint,
)
from blocks.errors import AlreadyExistsError, SpecError
from blocks.overrides import apply_set_overrides
from blocks.spec import EndpointSpec
from blocks.spec_loading import load_endpoint_yaml, parse_endpoint
from blocks.workspace import workspace_root
from deployments import api
from deployments.batch_deployments import delete_deployment

__all__ = [
    "FLOW_NAME",
    "create_endpoint",
    "delete_endpoint",
    "endpoint_record",
    "list_endpoints",
    "prefect_deployment_name",
    "show_endpoint",
    "update_endpoint",
]

FLOW_NAME = "batch-score"
SCHEDULE_SLUG = "pbe-schedule"


def prefect_deployment_name(endpoint: str) -> str:
    return f"{FLOW_NAME}/{endpoint}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- the Prefect deployment -------------------------------------------------------------------


def _apply_prefect_deployment(block: BatchEndpoint) -> Any:
    """Create or update ``batch-score/<endpoint>``; return its id."""
    from prefect.deployments.runner import EntrypointType

    from flows.batch_score import batch_score

    with api.client() as prefect:
        pool = api.ensure_work_pool(prefect)
    deployment = batch_score.to_deployment(
        name=block.name,
        parameters={"endpoint": block.name},
        description=block.description or f"Batch endpoint {block.name}",
        tags=["pbe", "batch-endpoint"],
        job_variables={"env": {"PBE_HOME": block.workspace}},
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    return deployment.apply(work_pool_name=pool)


def _schedule(cron: str | None, schedule_input: str | None, input_type: str) -> Any:
    """The schedule to create, validated (None when no cron is given)."""
    if cron is None:
        if schedule_input:
            raise SpecError(
                "--schedule-input needs --schedule CRON",
                key="schedule",
                hint='e.g. --schedule "0 2 * * *" --schedule-input ./data',
            )
        return None
    if not schedule_input:
        raise SpecError(
            "a schedule needs an input",
            key="schedule_input",
            hint="Pass --schedule-input PATH_OR_URI.",
        )
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule

    try:
        schedule = CronSchedule(cron=cron)
    except ValueError as exc:
        raise SpecError(
            f"invalid cron expression {cron!r}",
            key="schedule",
            hint='Five fields: minute hour day month weekday, e.g. "0 2 * * *".',
        ) from exc
    if "://" not in schedule_input:
        if not os.path.exists(schedule_input):
            raise SpecError(
                f"schedule input '{schedule_input}' does not exist",
                key="schedule_input",
                hint="Give an existing folder or file.",
            )
        schedule_input = os.path.abspath(schedule_input)
    return DeploymentScheduleCreate(
        schedule=schedule,
        slug=SCHEDULE_SLUG,
        active=True,
        parameters={"input": schedule_input, "input_type": input_type},
    )


def _set_schedule(deployment_id: Any, schedule: Any, *, remove: bool) -> None:
    if schedule is None and not remove:
        return
    with api.client() as prefect:
        for existing in prefect.read_deployment_schedules(deployment_id):
            if existing.slug == SCHEDULE_SLUG:
                prefect.delete_deployment_schedule(deployment_id, existing.id)
        if schedule is not None:
            prefect.create_deployment_schedules(deployment_id, [schedule])


# --- records ----------------------------------------------------------------------------------


def endpoint_record(block: BatchEndpoint) -> dict[str, Any]:
    """An endpoint as ``az ml batch-endpoint show`` shapes it, plus where it lives in Prefect."""
    from prefect.exceptions import ObjectNotFound

    record: dict[str, Any] = {
        "name": block.name,
        "description": block.description,
        "tags": dict(block.tags),
        "auth_mode": block.auth_mode,
        "defaults": {"deployment_name": block.default_deployment},
        "provisioning_state": "Succeeded",
        "prefect_deployment": prefect_deployment_name(block.name),
        "schedule": None,
    }
    with api.client() as prefect:
        try:
            deployment = prefect.read_deployment_by_name(prefect_deployment_name(block.name))
        except ObjectNotFound:
            record["provisioning_state"] = "Failed"
            return record
        record["id"] = str(deployment.id)
        record["scoring_uri"] = (
            f"{os.environ.get('PREFECT_API_URL', '')}/deployments/{deployment.id}/create_flow_run"
        )
        for schedule in deployment.schedules:
            if schedule.slug == SCHEDULE_SLUG:
                record["schedule"] = {
                    "cron": getattr(schedule.schedule, "cron", None),
                    "input": schedule.parameters.get("input"),
                    "input_type": schedule.parameters.get("input_type"),
                    "active": schedule.active,
                }
    record["properties"] = {
        "created_at": block.created_at,
        "workspace": block.workspace,
        "work_pool": deployment.work_pool_name,
        "ui_url": api.ui_url(f"/deployments/deployment/{deployment.id}"),
    }
    return record


# --- operations -------------------------------------------------------------------------------


def create_endpoint(
    file: str | None,
    *,
    name: str | None = None,
    sets: Sequence[str] = (),
    schedule: str | None = None,
    schedule_input: str | None = None,
    schedule_input_type: str = "uri_folder",
) -> dict[str, Any]:
    """``pbe batch-endpoint create``: the block, then the Prefect deployment (and schedule)."""
    spec = _endpoint_spec(file, name=name, sets=sets)
    planned = _schedule(schedule, schedule_input, schedule_input_type)
    if spec.name.lower() in {n.lower() for n in endpoint_names()}:
        raise AlreadyExistsError(
            "endpoint",
            spec.name,
            hint=f"Change it with: pbe batch-endpoint update --name {spec.name}",
        )
    block = BatchEndpoint(
        name=spec.name,
        description=spec.description,
        tags=dict(spec.tags),
        auth_mode=spec.auth_mode,
        default_deployment=spec.defaults.deployment_name,
        created_at=_now(),
        workspace=str(workspace_root()),
    )
    try:
        block.save(endpoint_document_name(spec.name))
    except ValueError as exc:
        raise AlreadyExistsError("endpoint", spec.name) from exc
    try:
        deployment_id = _apply_prefect_deployment(block)
        _set_schedule(deployment_id, planned, remove=False)
    except BaseException:
        BatchEndpoint.delete(endpoint_document_name(spec.name))
        raise
    return endpoint_record(block)


def _endpoint_spec(file: str | None, *, name: str | None, sets: list[str]) -> EndpointSpec:
    if file is None:
        if not name:
            raise SpecError("give --file endpoint.yml or --name", hint="--file endpoint.yml")
        data: dict[str, Any] = {"name": name}
        source = "command line"
    else:
        spec = load_endpoint_yaml(file)
        data, source = spec.model_dump(mode="json", exclude_unset=True), str(file)
        if name:
            data["name"] = name
    if sets:
        data = apply_set_overrides(data, list(sets), source=source)
    return parse_endpoint(data, source=source)


def show_endpoint(name: str) -> dict[str, Any]:
    return endpoint_record(load_endpoint(name))


def list_endpoints() -> list[dict[str, Any]]:
    return [endpoint_record(load_endpoint(n)) for n in endpoint_names()]


def update_endpoint(
    name: str,
    *,
    sets: Sequence[str] = (),
    file: str | None = None,  # type: ignore[assignment]
    schedule: str | None = None,
    schedule_input: str | None = None,
    schedule_input_type: str = "uri_folder",
    remove_schedule: bool = False,
) -> dict[str, Any]:
    """``pbe batch-endpoint update``: defaults, description, tags, schedule."""
    block = load_endpoint(name)
    data = {
        "name": block.name,
        "description": block.description,
        "tags": dict(block.tags),
        "auth_mode": block.auth_mode,
        "defaults": {"deployment_name": block.default_deployment},
    }
    if file is not None:
        data.update(load_endpoint_yaml(file).model_dump(mode="json", exclude_unset=True))
    if sets:
        data = apply_set_overrides(data, list(sets), source=f"endpoint '{block.name}'")
    spec = parse_endpoint(data, source=f"endpoint '{block.name}'")
    if spec.name.lower() != block.name.lower():
        raise SpecError(
            f"an endpoint cannot be renamed ('{block.name}' to '{spec.name}')",
            key="name",
            hint="Create a new endpoint instead.",
        )
    default = spec.defaults.deployment_name
    if default is not None:
        default = load_deployment(block.name, default).name
    planned = _schedule(schedule, schedule_input, schedule_input_type)
    block.description, block.tags = spec.description, dict(spec.tags)
    block.auth_mode, block.default_deployment = spec.auth_mode, default
    block.save(endpoint_document_name(block.name), overwrite=True)
    if planned is not None or remove_schedule:
        with api.client() as prefect:
            deployment = prefect.read_deployment_by_name(prefect_deployment_name(block.name))
        _set_schedule(deployment.id, planned, remove=remove_schedule)
    return endpoint_record(block)


def delete_endpoint(name: str) -> None:
    """Delete the Prefect deployment, the endpoint's deployments and the endpoint.

    Job outputs stay in the workspace; past flow runs stay in Prefect.
    """
    from prefect.exceptions import ObjectNotFound

    block = load_endpoint(name)
    with api.client() as prefect:
        try:
            deployment = prefect.read_deployment_by_name(prefect_deployment_name(block.name))
            prefect.delete_deployment(deployment.id)
        except ObjectNotFound:
            pass
    for child in deployment_blocks(block.name):
        delete_deployment(child.name, block.name, force_default=True)
    BatchEndpoint.delete(endpoint_document_name(block.name))
