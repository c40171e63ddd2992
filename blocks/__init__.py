"""Typed configuration of prefect-batch-endpoints: specs, errors and the Prefect Blocks.

Importing this package defines the Block types (``BatchEndpoint``, ``BatchDeployment``,
``DaskCompute``, ``Datastore``) so that Prefect registers them: the package is the project's
``prefect.collections`` entry point. Only pydantic, PyYAML and ``prefect.blocks`` are
imported here.
"""

from blocks.compute import DaskCompute
from blocks.datastore import Datastore
from blocks.endpoint import BatchDeployment, BatchEndpoint
from blocks.errors import (
    AlreadyExistsError,
    BatchEndpointError,
    JobFailed,
    NotFoundError,
    SpecError,
)
from blocks.spec import EndpointSpec, ModelDeploymentSpec
from blocks.spec_loading import (
    load_deployment_yaml,
    load_endpoint_yaml,
    parse_deployment,
    parse_endpoint,
)

__all__ = [
    "AlreadyExistsError",
    "BatchDeployment",
    "BatchEndpoint",
    "BatchEndpointError",
    "DaskCompute",
    "Datastore",
    "EndpointSpec",
    "JobFailed",
    "ModelDeploymentSpec",
    "NotFoundError",
    "SpecError",
    "load_deployment_yaml",
    "load_endpoint_yaml",
    "parse_deployment",
    "parse_endpoint",
]
