"""Jobs: flow runs of an endpoint's Prefect deployment, shown the way ``az ml job`` shows them.

A job's name is its flow run's name (``batchjob-<uuid>`` unless ``--job-name`` gives one);
``invoke`` passes it as the ``job_name`` parameter too, so the default output folder is
named after it. Runs started the Prefect way (``prefect deployment run``, schedules) are
jobs as well: their name is whatever Prefect gave the run.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid
from collections.abc import Sequence
from typing import Any, TextIO

from blocks.endpoint import load_endpoint
from blocks.errors import AlreadyExistsError, NotFoundError
from blocks.job_settings import job_settings
from blocks.overrides import JobOverrides
from blocks.workspace import default_output_path
from deployments import api
from deployments.endpoints import FLOW_NAME, prefect_deployment_name
from flows.job_progress import read_running_counts
from flows.resolve import resolve_endpoint
from flows.results import JobCounts

__all__ = ["find_job", "invoke", "job_record", "list_jobs", "status_of", "wait_for"]

_STATUS = {
    "SCHEDULED": "Queued",
    "PENDING": "Preparing",
    "RUNNING": "Running",
    "PAUSED": "Paused",
    "CANCELLING": "CancelRequested",
    "COMPLETED": "Completed",
    "FAILED": "Failed",
    "CRASHED": "Failed",
    "CANCELLED": "Canceled",
}
FINAL = ("Completed", "Failed", "Canceled")


def status_of(state_type: str | None) -> str:
    """The ``az ml`` job status of a Prefect state type (``COMPLETED`` -> ``Completed``)."""
    if state_type is None:
        return "NotStarted"
    return _STATUS.get(str(getattr(state_type, "value", state_type)).upper(), "Unknown")


def _counts(run: Any) -> dict[str, int]:
    """The counts the job's flow published on its run (labels), if it got that far."""
    counts = JobCounts.from_labels(getattr(run, "labels", None) or {})
    return dataclasses.asdict(counts) if counts is not None else {}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _creator(run: Any) -> str | None:
    """Who made the run, as Prefect recorded it (a schedule, a deployment run, …)."""
    if run.auto_scheduled:
        return "schedule"
    created_by = getattr(run, "created_by", None)
    return getattr(created_by, "display_value", None) or getattr(created_by, "type", None)


def _record_details(output: str) -> dict[str, Any]:
    """What the job's own record (``logs/job.json``) adds: resumed, each run's work."""
    from blocks.datastore import SavedDatastores
    from blocks.errors import BatchEndpointError
    from flows.job_record import read_record
    from flows.storage import Location

    try:
        record = read_record(Location(*SavedDatastores().resolve(output)))
    except BatchEndpointError:
        return {}
    return record.summary() if record is not None else {}


def job_record(run: Any, *, details: bool = False) -> dict[str, Any]:
    """A flow run as ``az ml job show`` shapes a batch job (``details``: with what its
    record in ``logs/job.json`` says)."""
    params = dict(run.parameters or {})
    tags = {t.split(":", 1)[0]: t.split(":", 1)[1] for t in run.tags if ":" in t}
    state = run.state
    status = status_of(state.type if state else None)
    output = params.get("output_path") or default_output_path(params.get("job_name") or run.name)
    properties: dict[str, Any] = {
        "prefect_flow_run_id": str(run.id),
        "prefect_state": state.name if state else None,
        "start_time": _iso(run.start_time),
        "end_time": _iso(run.end_time),
        **(
            _counts(run) if status in FINAL else _running_counts(run) if status == "Running" else {}
        ),
    }
    if params.get("output_file_name"):
        properties["output_file"] = os.path.join(output, params["output_file_name"])
    if details:
        properties.update(_record_details(output))
    overrides = JobOverrides.from_mapping(params).given()
    return {
        "name": run.name,
        "display_name": run.name,
        "type": "pipeline",
        "status": status,
        "experiment_name": params.get("endpoint") or tags.get("endpoint"),
        "endpoint_name": params.get("endpoint") or tags.get("endpoint"),
        "deployment_name": params.get("deployment_name") or tags.get("deployment"),
        "creation_context": {
            "created_at": _iso(run.created),
            "created_by": tags.get("by") or _creator(run),
        },
        "inputs": {
            "input_data": {
                "type": params.get("input_type", "uri_folder"),
                "path": params.get("input"),
            }
        },
        "outputs": {"score": {"type": "uri_folder", "path": output, "mode": "upload"}},
        "settings": overrides,
        "message": state.message if state else None,
        "properties": properties,
        "services": {"Studio": {"endpoint": api.ui_url(f"/runs/flow-run/{run.id}")}},
        "tags": {},
        "id": str(run.id),
    }


def _running_counts(run: Any) -> dict[str, int]:
    """A running job's counts so far, from its progress artifact (flows.job_progress)."""
    try:
        with api.client() as prefect:
            return read_running_counts(prefect, run.id)
    except Exception:  # noqa: BLE001 - counts are a nicety; the record matters
        return {}


def find_job(name: str) -> Any:
    """The flow run of job ``name`` (or of that flow run id)."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterName,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    with api.client() as prefect:
        runs = prefect.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
        if runs:
            return runs[0]
        try:
            return prefect.read_flow_run(uuid.UUID(name))
        except Exception:  # not an id, or no such run
            recent = [r.name for r in _read_runs(prefect, None, 10)]
            raise NotFoundError(
                "job",
                name,
                known=recent,
                hint="(most recent jobs shown) pbe job list shows them all",
            ) from None


def _read_runs(prefect: Any, deployment_id: Any, limit: int) -> list[Any]:
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterDeploymentId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    run_filter = None
    if deployment_id is not None:
        run_filter = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]))
    runs: list[Any] = []
    while len(runs) < limit:  # the API returns at most 200 per request
        page = prefect.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
            flow_run_filter=run_filter,
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=min(200, limit - len(runs)),
            offset=len(runs),
        )
        runs.extend(page)
        if len(page) < 200:
            break
    return runs


def list_jobs(
    endpoint: str | None = None, deployment: str | None = None, max_results: int = 100
) -> list[dict[str, Any]]:
    """Jobs, newest first: all, an endpoint's, or those that ran one deployment."""
    deployment_id = None
    with api.client() as prefect:
        if endpoint is not None:
            block = load_endpoint(endpoint)
            deployment_id = prefect.read_deployment_by_name(prefect_deployment_name(block.name)).id
        runs = _read_runs(prefect, deployment_id, max_results if deployment is None else 1000)
    newest = {}  # a resumed job has one run per resume: the newest is the job
    for run in runs:
        newest.setdefault(run.name, run)
    records = [job_record(r) for r in newest.values()]
    if deployment is not None:
        records = [r for r in records if (r["deployment_name"] or "").lower() == deployment.lower()]
    return records[:max_results]


def invoke(
    endpoint: str,
    input: str,
    *,
    input_type: str = "uri_folder",
    deployment_name: str | None = None,
    output_path: str | None = None,
    job_name: str | None = None,
    sets: Sequence[str] = (),
    mini_batch_size: int | None = None,
    instance_count: int | None = None,
) -> dict:
    """``pbe batch-endpoint invoke``: check everything, then create the flow run; no waiting."""
    from prefect.deployments import run_deployment

    block = load_endpoint(endpoint)
    resolved = resolve_endpoint(block.name, deployment_name)
    overrides = JobOverrides.from_sets(
        sets, mini_batch_size=mini_batch_size, instance_count=instance_count
    )
    settings = job_settings(resolved.spec, overrides)
    if job_name:
        _check_free(job_name)
    job_name = job_name or f"batchjob-{uuid.uuid4()}"
    input, input_type = _pinned_asset(input, input_type)
    input, output = _checked_locations(
        input, input_type, output_path or default_output_path(job_name), settings.output_file_name
    )
    parameters = {
        "input": input,
        "input_type": input_type,
        "deployment_name": resolved.name,
        "output_path": output,
        "job_name": job_name,
        **overrides.given(),
        "output_file_name": settings.output_file_name,
    }
    run = run_deployment(
        name=prefect_deployment_name(block.name),
        parameters=parameters,
        timeout=0,
        flow_run_name=job_name,
        as_subflow=False,
        tags=["pbe", f"endpoint:{block.name}", f"deployment:{resolved.name}", "by:pbe"],
    )
    return job_record(run)


def _pinned_asset(input: str, input_type: str) -> tuple[str, str]:
    """A data asset input as ``azureml:<name>:<version>`` (``@latest`` pinned now) and its type;
    any other input as given."""
    from blocks.data_assets import DataRegistry, is_reference

    if not is_reference(input):
        return input, input_type
    asset = DataRegistry().resolve(input)
    return f"azureml:{asset.name}:{asset.version}", asset.type


def _checked_locations(
    input: str, input_type: str, output: str, file_name: str | None
) -> tuple[str, str]:
    """Input and output as the job gets them, refused now if they are certain to fail.

    Local paths become absolute; ``azureml:`` data assets and datastore paths stay as given
    (the job resolves them again), after the same checks the job runs before scoring
    (:mod:`flows.preflight`): an unknown datastore or asset, a missing, empty or wrongly
    typed input, an output that exists, is a file, or cannot be written. A Blob URL's SAS
    token is stashed (:mod:`blocks.sas_handoff`): it never becomes a run parameter.
    """
    from blocks.data_assets import resolve_input
    from blocks.datastore import SavedDatastores
    from blocks.sas_handoff import stash
    from flows.preflight import check_input, check_output
    from flows.storage import Location

    stores = SavedDatastores()

    def given(value: str) -> str:
        if value.startswith("azureml:") or "://" in value and not value.startswith("file://"):
            return value
        return os.path.abspath(value.removeprefix("file://"))

    input, output = given(input), given(output)
    source, source_type = resolve_input(input, input_type)
    check_input(Location(*stores.resolve(source)), source_type)
    check_output(Location(*stores.resolve(output)), file_name)
    return stash(input), stash(output)


def _check_free(job_name: str) -> None:
    try:
        find_job(job_name)
    except NotFoundError:
        return
    raise AlreadyExistsError("job", job_name, hint="Leave --job-name out to get a new name.")


def wait_for(
    name: str, *, poll: float = 2.0, timeout: float | None = None, progress: TextIO | bool = True
) -> dict:
    """Poll job ``name`` until it ends (or ``timeout`` seconds pass); return its record.

    Every 0.5 s in the first 30 s, where most small jobs end (a 2 s poll alone added up to
    2 s to each: ``benchmarks/startup.py`` measured 8.0 or 10.1 s for the same job), then
    every ``poll`` seconds.

    Its progress goes to ``progress`` (``True``: stderr) meanwhile, a live bar on a
    terminal, else a plain line now and then (:mod:`deployments.progress`); ``False``: none.
    """
    import time

    from deployments.progress import ProgressView

    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    run = find_job(name)
    out = sys.stderr if progress is True else progress or None
    with api.client() as prefect, ProgressView(out) as view:
        while True:
            record = job_record(run)
            view.update(record["properties"], record["status"])
            if record["status"] in FINAL or (deadline and time.monotonic() > deadline):
                return record
            time.sleep(min(poll, 0.5) if time.monotonic() - started < 30 else poll)
            run = prefect.read_flow_run(run.id)
