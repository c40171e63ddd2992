"""``pbe batch-deployment``: the deployments behind a batch endpoint."""

from __future__ import annotations

from typing import Annotated, Any

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
)

group = CommandGroup(
    "batch-deployment",
    "Deployments behind a batch endpoint.",
    columns={
        "Name": "name",
        "Endpoint": "endpoint_name",
        "Model": "model",
        "Compute": "compute",
        "State": "provisioning_state",
    },
    examples=[
        "pbe batch-deployment create --file deployment-torch/deployment.yml \\\n"
        "    --endpoint-name mnist-batch --set-default",
        "pbe batch-deployment create -f deployment.yml -e mnist-batch -n slow-dpl \\\n"
        "    --set code_configuration.scoring_script=slow.py",
        "pbe batch-deployment update -f deployment.yml -e mnist-batch \\\n"
        "    --set resources.instance_count=2",
        "pbe batch-deployment show --name mnist-torch-dpl --endpoint-name mnist-batch",
        "pbe batch-deployment list --endpoint-name mnist-batch -o table",
        "pbe batch-deployment list-jobs --name mnist-torch-dpl \\\n"
        "    --endpoint-name mnist-batch --query [].name",
        "pbe batch-deployment delete --name mnist-torch-dpl \\\n"
        "    --endpoint-name mnist-batch --yes",
    ],
)

EndpointName = Annotated[str, Parameter(name=["--endpoint-name", "-e"])]
OptionalEndpointName = Annotated[str | None, Parameter(name=["--endpoint-name", "-e"])]


@group.verb
def create(
    *,
    file: Annotated[str, Parameter(name=["--file", "-f"])],
    endpoint_name: OptionalEndpointName = None,
    name: OptionalName = None,
    set_default: bool = False,
    all_traffic: Annotated[bool, Parameter(group=AZ)] = False,
    sets: Sets = (),
    no_wait: NoWait = False,
) -> dict[str, Any]:
    """Create a deployment (its code folder and an inline model are snapshotted).

    Parameters
    ----------
    file
        deployment.yml (model, code_configuration, environment, compute, resources,
        settings).
    endpoint_name
        Endpoint (wins over the file's endpoint_name).
    name
        Deployment name (wins over the file's).
    set_default
        Make it the endpoint's default deployment.
    all_traffic
        Use --set-default to make it the default.
    sets
        KEY=VALUE: change a key of the YAML, e.g. --set settings.mini_batch_size=20
        (repeatable).
    no_wait
        create returns when the deployment exists.
    """
    from deployments import batch_deployments

    return batch_deployments.create_deployment(
        file, endpoint_name=endpoint_name, name=name, sets=sets, set_default=set_default
    )


@group.verb
def update(
    *,
    file: Annotated[str | None, Parameter(name=["--file", "-f"])] = None,
    endpoint_name: OptionalEndpointName = None,
    name: OptionalName = None,
    sets: Sets = (),
    no_wait: NoWait = False,
) -> dict[str, Any]:
    """Change a deployment (a new YAML, which takes a new snapshot, or --set).

    Parameters
    ----------
    file
        deployment.yml to replace the deployment's.
    endpoint_name
        Endpoint (default: the file's endpoint_name).
    name
        Deployment name (default: the file's name).
    sets
        KEY=VALUE, e.g. --set resources.instance_count=2 (repeatable).
    no_wait
        update returns when it is done.
    """
    from deployments import batch_deployments

    return batch_deployments.update_deployment(name, endpoint_name, file=file, sets=sets)


@group.verb
def show(*, name: Name, endpoint_name: EndpointName) -> dict[str, Any]:
    """Show a deployment.

    Parameters
    ----------
    name
        Deployment name.
    endpoint_name
        Its endpoint.
    """
    from deployments import batch_deployments

    return batch_deployments.show_deployment(name, endpoint_name)


@group.verb
def list_(*, endpoint_name: EndpointName) -> list[dict[str, Any]]:
    """List an endpoint's deployments.

    Parameters
    ----------
    endpoint_name
        The endpoint.
    """
    from deployments import batch_deployments

    return batch_deployments.list_deployments(endpoint_name)


@group.verb
def delete(
    *, name: Name, endpoint_name: EndpointName, yes: Yes = False, no_wait: NoWait = False
) -> None:
    """Delete a deployment (not the endpoint's default one).

    Parameters
    ----------
    name
        Deployment name.
    endpoint_name
        Its endpoint.
    yes
        Do not ask for confirmation.
    no_wait
        delete returns when it is done.
    """
    from deployments import batch_deployments

    confirm(yes, f"deployment '{name}' of endpoint '{endpoint_name}'")
    return batch_deployments.delete_deployment(name, endpoint_name)


@group.verb(columns=JOB_COLUMNS)
def list_jobs(
    *, name: Name, endpoint_name: EndpointName, max_results: MaxResults = 100
) -> list[dict[str, Any]]:
    """List the jobs that ran the deployment, newest first.

    Parameters
    ----------
    name
        Deployment name.
    endpoint_name
        Its endpoint.
    """
    from deployments import batch_deployments, jobs

    batch_deployments.show_deployment(name, endpoint_name)  # a clear error for unknown names
    return jobs.list_jobs(endpoint=endpoint_name, deployment=name, max_results=max_results)
