"""Compute: the Dask cluster a deployment's mini-batches run on, saved as a Prefect Block.

Never a home-made scheduler: a compute is either a ``LocalCluster`` made for the job (the
default), the address of a running Dask scheduler, or any Dask cluster class
(``dask_kubernetes.operator.KubeCluster``, ``dask_jobqueue.SLURMCluster``, …) resolved by
import path, with ``min_instances``/``max_instances`` mapped to Dask adaptive scaling.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import Field, model_validator

from blocks.errors import SpecError

ComputeType = Literal["local", "amlcompute", "address", "cluster_class"]


class DaskCompute(Block):
    """A Dask cluster definition that deployments name as ``compute: azureml:<name>``."""

    _block_type_name = "Batch Compute"
    _block_type_slug = "batch-compute"
    _description = "Where batch deployments run their mini-batches: a Dask cluster."

    type: ComputeType = Field(
        "local",
        description="local / amlcompute: a LocalCluster per job; address: a running "
        "scheduler; cluster_class: a Dask cluster class made per job.",
    )
    address: str | None = Field(None, description="Scheduler address, e.g. tcp://host:8786.")
    cluster_class: str | None = Field(
        None, description="Import path of a Dask cluster class, e.g. dask_jobqueue.SLURMCluster."
    )
    cluster_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the cluster class."
    )
    min_instances: int = Field(0, ge=0, description="Fewest workers kept (adaptive scaling).")
    max_instances: int | None = Field(
        None, ge=1, description="Most workers (adaptive scaling); caps instance_count."
    )

    @model_validator(mode="after")
    def _consistent(self) -> DaskCompute:
        if self.type == "address" and not self.address:
            raise SpecError(
                "type 'address' needs an address",
                key="address",
                hint="pass --address tcp://HOST:8786",
            )
        if self.type != "address" and self.address:
            raise SpecError(
                f"address is only used with type 'address', not '{self.type}'", key="address"
            )
        if self.type == "cluster_class" and not self.cluster_class:
            raise SpecError(
                "type 'cluster_class' needs cluster_class",
                key="cluster_class",
                hint="e.g. --cluster-class dask_jobqueue.SLURMCluster",
            )
        if self.type != "cluster_class" and (self.cluster_class or self.cluster_kwargs):
            raise SpecError(
                "cluster_class and cluster_kwargs need type 'cluster_class'", key="cluster_class"
            )
        if self.max_instances is not None and self.min_instances > self.max_instances:
            raise SpecError(
                f"min_instances ({self.min_instances}) exceeds max_instances "
                f"({self.max_instances})",
                key="min_instances",
            )
        return self

    def instances(self, instance_count: int) -> int:
        """Nodes a job gets: its ``instance_count``, capped by ``max_instances``."""
        if self.max_instances is not None:
            return max(1, min(instance_count, self.max_instances))
        return instance_count

    def task_runner_kwargs(
        self, instance_count: int, per_instance: int, mini_batches: int | None = None
    ) -> dict[str, Any]:
        """Arguments for a ``DaskTaskRunner`` that gives a job its scoring processes.

        A local cluster gets ``instances × per_instance`` single-threaded workers, but never
        more than the job has mini-batches (an idle worker costs seconds to start).
        """
        if self.type == "address":
            return {"address": self.address}
        if self.type == "cluster_class":
            kwargs: dict[str, Any] = {
                "cluster_class": self.cluster_class,
                "cluster_kwargs": dict(self.cluster_kwargs),
            }
            if self.max_instances is not None:
                kwargs["adapt_kwargs"] = {
                    "minimum": self.min_instances,
                    "maximum": self.max_instances,
                }
            return kwargs
        workers = self.instances(instance_count) * per_instance
        if mini_batches:
            workers = max(1, min(workers, mini_batches))
        return {
            "cluster_kwargs": {
                "n_workers": workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": ":0",
            }
        }
