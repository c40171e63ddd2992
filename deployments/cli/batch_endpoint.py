"""``pbe batch-endpoint``: endpoints (Prefect deployments of the batch-score flow) and jobs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from cyclopts import Parameter

from deployments.cli.common import (
    AZ,
    JOB_COLUMNS,
    CommandGroup,
    MaxResults,
    Name,
    NoWait,
    OptionalName,
    Sets,
    Yes,
    confirm,
    finished,
)

group = CommandGroup(
    "batch-endpoint",
    "Batch endpoints (Prefect deployments of batch-score).",
    columns={
        "Name": "name",
        "Default deployment": "defaults.deployment_name",
        "State": "provisioning_state",
        "Schedule": "schedule.cron",
    },
    examples=[
        "pbe batch-endpoint create --file endpoint.yml --name mnist-batch",
        "pbe batch-endpoint create -n nightly --schedule '0 2 * * *' \\\n"
        "    --schedule-input data/",
        "pbe batch-endpoint show --name mnist-batch \\\n"
        "    --query defaults.deployment_name -o tsv",
        "pbe batch-endpoint update --name mnist-batch \\\n"
        "    --set defaults.deployment_name=mnist-keras-dpl",
        "pbe batch-endpoint invoke -n mnist-batch --input digits/ --query name -o tsv",
        "pbe batch-endpoint invoke --name mnist-batch --input azureml:digits@latest \\\n"
        "    --mini-batch-size 20 --instance-count 5 --set error_threshold=10 --wait",
        "pbe batch-endpoint list-jobs --name mnist-batch --query [].name",
        "pbe batch-endpoint delete --name mnist-batch --yes",
    ],
)

InputType = Literal["uri_folder", "uri_file"]
File = Annotated[str | None, Parameter(name=["--file", "-f"])]
Schedule = Annotated[
    str | None, Parameter(help='Cron schedule of jobs, e.g. "0 2 * * *" (with --schedule-input).')
]
ScheduleInput = Annotated[
    str | None,
    Parameter(help="Input of the scheduled jobs: a folder, file, URI or azureml:<data>@latest."),
]
ScheduleInputType = Annotated[
    InputType, Parameter(help="Type of --schedule-input: uri_folder or uri_file.")
]


@group.verb
def create(
    *,
    file: File = None,
    name: OptionalName = None,
    sets: Sets = (),
    schedule: Schedule = None,
    schedule_input: ScheduleInput = None,
    schedule_input_type: ScheduleInputType = "uri_folder",
    no_wait: NoWait = False,
) -> dict[str, Any]:
    """Create an endpoint.

    Parameters
    ----------
    file
        endpoint.yml (name, description, tags, defaults).
    name
        Endpoint name (wins over the file's).
    sets
        KEY=VALUE: change a key of the YAML, e.g. --set description=nightly (repeatable).
    no_wait
        create returns when the endpoint exists.
    """
    from deployments import endpoints

    return endpoints.create_endpoint(
        file,
        name=name,
        sets=sets,
        schedule=schedule,
        schedule_input=schedule_input,
        schedule_input_type=schedule_input_type,
    )


@group.verb
def update(
    *,
    name: Name,
    file: File = None,
    sets: Sets = (),
    schedule: Schedule = None,
    schedule_input: ScheduleInput = None,
    schedule_input_type: ScheduleInputType = "uri_folder",
    remove_schedule: bool = False,
    no_wait: NoWait = False,
) -> dict[str, Any]:
    """Change an endpoint (default deployment, description, schedule, …).

    Parameters
    ----------
    name
        Endpoint name.
    file
        endpoint.yml whose keys replace the endpoint's.
    sets
        KEY=VALUE, e.g. --set defaults.deployment_name=mnist-keras-dpl (repeatable).
    remove_schedule
        Stop the endpoint's scheduled jobs.
    no_wait
        update returns when it is done.
    """
    from deployments import endpoints

    return endpoints.update_endpoint(
        name,
        sets=sets,
        file=file,
        schedule=schedule,
        schedule_input=schedule_input,
        schedule_input_type=schedule_input_type,
        remove_schedule=remove_schedule,
    )


@group.verb
def show(*, name: Name) -> dict[str, Any]:
    """Show an endpoint.

    Parameters
    ----------
    name
        Endpoint name.
    """
    from deployments import endpoints

    return endpoints.show_endpoint(name)


@group.verb
def list_() -> list[dict[str, Any]]:
    """List endpoints."""
    from deployments import endpoints

    return endpoints.list_endpoints()


@group.verb
def delete(*, name: Name, yes: Yes = False, no_wait: NoWait = False) -> None:
    """Delete an endpoint and its deployments (job outputs stay).

    Parameters
    ----------
    name
        Endpoint name.
    yes
        Do not ask for confirmation.
    no_wait
        delete returns when it is done.
    """
    from deployments import endpoints

    confirm(yes, f"endpoint '{name}' and its deployments")
    return endpoints.delete_endpoint(name)


@group.verb(columns=JOB_COLUMNS)
def list_jobs(*, name: Name, max_results: MaxResults = 100) -> list[dict[str, Any]]:
    """List the endpoint's jobs, newest first.

    Parameters
    ----------
    name
        Endpoint name.
    """
    from deployments import jobs

    return jobs.list_jobs(endpoint=name, max_results=max_results)


@group.verb(columns=JOB_COLUMNS)
def invoke(
    *,
    name: Name,
    input: Annotated[str, Parameter(name="--input")],
    input_type: InputType = "uri_folder",
    deployment_name: Annotated[str | None, Parameter(name=["--deployment-name", "-d"])] = None,
    output_path: str | None = None,
    job_name: str | None = None,
    mini_batch_size: int | None = None,
    instance_count: int | None = None,
    experiment_name: Annotated[str | None, Parameter(group=AZ)] = None,
    wait: bool = False,
    sets: Sets = (),
) -> dict[str, Any] | None:
    """Start a job; prints it at once unless --wait.

    Parameters
    ----------
    name
        Endpoint name.
    input
        What to score: a folder, a file, a URI (s3://, https://,
        azureml://datastores/<name>/paths/...) or a data asset (azureml:<name>@latest).
    input_type
        uri_folder: score every file under --input; uri_file: score that one file.
    deployment_name
        Deployment to run (default: the endpoint's default deployment).
    output_path
        Output folder or URI (default: a folder named after the job).
    job_name
        Job name (default: batchjob-<uuid>).
    mini_batch_size
        Files per mini-batch, for this job only (default: the deployment's).
    instance_count
        Nodes for this job only, capped by the compute's --max-instances (default: the
        deployment's).
    experiment_name
        Jobs are grouped by endpoint and deployment.
    wait
        Wait for the job, print it when it ends, and exit 1 if it did not complete.
    sets
        KEY=VALUE: a per-job setting, e.g. --set output_file_name=out.csv or
        --set error_threshold=10 (repeatable).
    """
    from deployments import jobs

    job = jobs.invoke(
        name,
        input,
        input_type=input_type,
        deployment_name=deployment_name,
        output_path=output_path,
        job_name=job_name,
        sets=sets,
        mini_batch_size=mini_batch_size,
        instance_count=instance_count,
    )
    if not wait:
        return job
    return finished(jobs.wait_for(job["name"]))
