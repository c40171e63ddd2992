"""``pbe job resume``: continue a failed or cancelled job from its staging folder.

The resume is one more flow run of the job's Prefect deployment, named after the job, with
the job's parameters plus ``resume=True`` (and the overrides given now: instance count,
timeout, retries, error threshold; ``mini_batch_size`` and the output file cannot change).
Before the run is created, the job's record, its staging folder and its input's
fingerprint are checked here, so a changed input is refused at once, naming the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from blocks.errors import ResumeRefused
from blocks.overrides import JobOverrides

__all__ = ["resume_job"]

_FIXED = ("mini_batch_size", "output_file_name")


def resume_job(
    name: str, *, sets: Sequence[str] = (), instance_count: int | None = None
) -> dict[str, Any]:
    """Create the flow run that continues job ``name``; return the job as ``job show`` does."""
    from prefect.deployments import run_deployment

    from deployments.jobs import find_job, job_record

    run = find_job(name)
    record = job_record(run)
    job_name = (run.parameters or {}).get("job_name") or run.name
    if record["status"] == "Completed":
        raise ResumeRefused(
            job_name,
            "it completed",
            hint="its output is complete; start a "
            "new job to score the input again: pbe batch-endpoint invoke",
        )
    if record["status"] not in ("Failed", "Canceled"):
        raise ResumeRefused(
            job_name,
            f"it is {record['status']}",
            hint=f"wait for it to end, or stop it: pbe job cancel -n {name}",
        )
    if run.deployment_id is None:
        raise ResumeRefused(
            job_name,
            "it was not started from an endpoint's deployment",
            hint="call batch_score(..., job_name=..., resume=True) from "
            "Python, as the job was started",
        )
    overrides = JobOverrides.from_sets(sets, instance_count=instance_count).given()
    parameters = dict(run.parameters or {})
    for fixed in _FIXED:
        if fixed in overrides and overrides[fixed] != parameters.get(fixed):
            raise ResumeRefused(
                job_name,
                f"{fixed} cannot change on resume",
                hint="leave it out, or start a new job with it",
            )
    parameters = {**parameters, **overrides, "job_name": job_name, "resume": True}
    _check(record, parameters)
    new = run_deployment(
        name=run.deployment_id,
        parameters=parameters,
        timeout=0,
        flow_run_name=job_name,
        as_subflow=False,
        tags=[*run.tags, "resumed"] if "resumed" not in run.tags else list(run.tags),
    )
    return job_record(new)


def _check(record: dict[str, Any], parameters: dict[str, Any]) -> None:
    """What the resumed flow checks first, checked now: record, staging, input, plan."""
    from blocks.data_assets import resolve_input
    from blocks.datastore import SavedDatastores
    from blocks.job_settings import job_settings
    from flows.fingerprint import fingerprint
    from flows.inputs import list_input
    from flows.resolve import resolve_endpoint
    from flows.resume import check_resumable, job_to_resume
    from flows.staging import JobStaging
    from flows.storage import Location

    stores = SavedDatastores()
    job_name = parameters["job_name"]
    output = Location(*stores.resolve(record["outputs"]["score"]["path"]))
    previous = job_to_resume(output, job_name, resume=True, retried=False)
    assert previous is not None  # job_to_resume raised otherwise
    resolved = resolve_endpoint(record["endpoint_name"], parameters.get("deployment_name"))
    settings = job_settings(resolved.spec, JobOverrides.from_mapping(parameters))
    source_uri, input_type = resolve_input(
        parameters["input"], parameters.get("input_type", "uri_folder")
    )
    source = Location(*stores.resolve(source_uri))
    files = list_input(source, input_type)
    staging = JobStaging(output.join(f".pbe-staging-{job_name}"))
    check_resumable(previous, staging, fingerprint(source, files), settings)
