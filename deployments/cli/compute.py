"""``pbe compute``: the Dask clusters that deployments run on."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from cyclopts import Parameter

from deployments.cli.common import AZ, CommandGroup, Name, NoWait, Yes, confirm

group = CommandGroup(
    "compute",
    "Dask clusters that deployments run on.",
    columns={
        "Name": "name",
        "Type": "type",
        "Min": "min_instances",
        "Max": "max_instances",
        "Address": "address",
    },
    examples=[
        "pbe compute create -n batch-cluster --type amlcompute \\\n"
        "    --min-instances 0 --max-instances 5",
        "pbe compute create -n gpu-farm --type address --address tcp://scheduler:8786",
        "pbe compute create -n hpc --type cluster_class \\\n"
        "    --cluster-class dask_jobqueue.SLURMCluster \\\n"
        '    --cluster-kwargs \'{"queue": "batch", "cores": 8}\'',
        "pbe compute show -n batch-cluster --query max_instances -o tsv",
        "pbe compute list -o table",
        "pbe compute delete -n gpu-farm --yes",
    ],
)

Ignored = Annotated[str | None, Parameter(group=AZ)]


@group.verb
def create(
    *,
    name: Name,
    type: Annotated[
        Literal["local", "amlcompute", "address", "cluster_class"], Parameter(name=["--type", "-t"])
    ] = "local",
    address: str | None = None,
    cluster_class: str | None = None,
    cluster_kwargs: str | None = None,
    min_instances: int | None = None,
    max_instances: int | None = None,
    no_wait: NoWait = False,
    size: Ignored = None,
    idle_time_before_scale_down: Ignored = None,
    tier: Ignored = None,
    location: Ignored = None,
) -> dict[str, Any]:
    """Register a compute (creating it again unchanged is fine, as with az ml).

    Parameters
    ----------
    name
        Compute name, as deployments name it (compute: azureml:<name>).
    type
        local or amlcompute: a Dask LocalCluster per job; address: a running Dask
        scheduler; cluster_class: a Dask cluster class made per job.
    address
        Scheduler address, for --type address (e.g. tcp://10.0.0.1:8786).
    cluster_class
        Import path of the cluster class, for --type cluster_class.
    cluster_kwargs
        JSON object of keyword arguments for the cluster class.
    min_instances
        Fewest workers kept (adaptive scaling; default 0).
    max_instances
        Most workers (adaptive scaling); caps a job's instance count.
    no_wait
        create returns when the compute is registered.
    size
        An Azure VM size: the workers are Dask's.
    idle_time_before_scale_down
        Dask's adaptive scaling decides.
    tier
        An Azure VM tier.
    location
        An Azure region.
    """
    from deployments import computes

    return computes.create_compute(
        name,
        type=type,
        address=address,
        cluster_class=cluster_class,
        cluster_kwargs=cluster_kwargs,
        min_instances=min_instances,
        max_instances=max_instances,
    )


@group.verb
def show(*, name: Name) -> dict[str, Any]:
    """Show a compute.

    Parameters
    ----------
    name
        Compute name.
    """
    from deployments import computes

    return computes.show_compute(name)


@group.verb
def delete(*, name: Name, yes: Yes = False, no_wait: NoWait = False) -> None:
    """Delete a compute (refused while a deployment uses it).

    Parameters
    ----------
    name
        Compute name.
    yes
        Do not ask for confirmation.
    no_wait
        delete returns when it is done.
    """
    from deployments import computes

    confirm(yes, f"compute '{name}'")
    return computes.delete_compute(name)


@group.verb
def list_() -> list[dict[str, Any]]:
    """List computes."""
    from deployments import computes

    return computes.list_computes()
