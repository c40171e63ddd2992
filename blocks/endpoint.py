"""Batch endpoints and batch deployments, saved as Prefect Blocks.

An endpoint is also a Prefect deployment of the ``batch-score`` flow (named after the
endpoint); the :class:`BatchEndpoint` block holds what can change without redeploying that
flow, above all its default deployment. A batch deployment is a :class:`BatchDeployment`
block: the validated YAML spec plus everything pinned when it was created (the code
snapshot, the registered model version and its folder, the compute name).

Block document names allow only lowercase letters, digits and dashes, so names are mapped:
endpoint and deployment names compare case-insensitively, and a deployment's document is
``<endpoint>--<deployment>``. The blocks keep the names as the user spelled them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, TypeVar

from prefect.blocks.core import Block
from pydantic import Field

from blocks.errors import NotFoundError
from blocks.spec import ModelDeploymentSpec
from blocks.spec_loading import parse_deployment

if TYPE_CHECKING:
    from blocks.compute import DaskCompute

__all__ = [
    "BatchDeployment",
    "BatchEndpoint",
    "compute_document_name",
    "compute_names",
    "deployment_blocks",
    "deployment_document_name",
    "endpoint_document_name",
    "endpoint_names",
    "load_compute",
    "load_deployment",
    "load_endpoint",
]

_NOT_ALLOWED = re.compile(r"[^a-z0-9-]")
_B = TypeVar("_B", bound=Block)


def endpoint_document_name(endpoint: str) -> str:
    """The block document name of an endpoint (endpoint names are case-insensitive)."""
    return endpoint.lower()


def deployment_document_name(endpoint: str, deployment: str) -> str:
    """The block document name of a batch deployment: ``<endpoint>--<deployment>``."""
    return f"{endpoint.lower()}--{deployment.lower()}"


def compute_document_name(compute: str) -> str:
    """The block document name of a compute: lowercase, ``_`` becomes ``-``.

    ``azureml:`` in front of the name is dropped, so the reference of a deployment
    (``compute: azureml:batch-cluster``) and the name given to ``pbe compute create``
    map to the same document.
    """
    name = compute.strip().removeprefix("azureml:").lower().replace("_", "-")
    return _NOT_ALLOWED.sub("-", name)


class BatchEndpoint(Block):
    """A batch endpoint: what ``endpoint.yml`` says, and its current default deployment."""

    _block_type_name = "Batch Endpoint"
    _block_type_slug = "batch-endpoint"
    _description = (
        "A batch endpoint. Invoke it with `prefect deployment run batch-score/<name>` or "
        "`pbe batch-endpoint invoke --name <name>`; its default deployment runs unless one "
        "is named."
    )

    name: str = Field(description="The endpoint name, as the user spelled it.")
    description: str | None = Field(None, description="Free text from endpoint.yml.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags from endpoint.yml.")
    auth_mode: str | None = Field("aad_token", description="Accepted for az ml parity; unused.")
    default_deployment: str | None = Field(
        None, description="The deployment that runs when an invocation names none."
    )
    created_at: str = Field("", description="ISO time the endpoint was created.")
    workspace: str = Field("", description="The workspace root the endpoint belongs to.")


class BatchDeployment(Block):
    """A batch deployment: its validated spec plus what was pinned when it was created."""

    _block_type_name = "Batch Deployment"
    _block_type_slug = "batch-deployment"
    _description = (
        "A model deployment behind a batch endpoint: scoring script snapshot, registered "
        "model version, compute and settings."
    )

    name: str = Field(description="The deployment name, as the user spelled it.")
    endpoint: str = Field(description="The endpoint this deployment belongs to.")
    description: str | None = Field(None, description="Free text from deployment.yml.")
    spec: dict[str, Any] = Field(
        description="The deployment spec (deployment.yml as validated), with absolute paths "
        "to the code snapshot and the pinned model reference."
    )
    code_dir: str = Field(description="The snapshot of the code folder taken at create time.")
    scoring_script: str = Field(description="The scoring script, relative to code_dir.")
    model_name: str = Field(description="The registered model's name.")
    model_version: str = Field(description="The model version pinned at create time.")
    model_dir: str = Field(
        description="AZUREML_MODEL_DIR for the scoring script: the folder holding the "
        "registered model file or folder."
    )
    compute: str = Field(description="Compute name (a `pbe compute create` block).")
    created_at: str = Field("", description="ISO time the deployment was created.")
    updated_at: str = Field("", description="ISO time the deployment was last changed.")

    def model_spec(self) -> ModelDeploymentSpec:
        """The stored spec, validated again."""
        return parse_deployment(dict(self.spec), source=f"batch deployment '{self.name}'")


# --- lookups: load a block by its domain name, or say which names exist -----------------------


def _documents(slug: str) -> list[Any]:
    """Every block document of the block type ``slug`` (none when the type is unregistered)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    found: list[Any] = []
    with get_client(sync_client=True) as client:
        while True:
            try:
                page = client.read_block_documents_by_type(slug, offset=len(found), limit=200)
            except ObjectNotFound:
                return found
            except PrefectHTTPStatusError as exc:  # the block type is not registered yet
                if exc.response.status_code == 404:
                    return found
                raise
            found.extend(page)
            if len(page) < 200:
                return found


def endpoint_names() -> list[str]:
    """Names of the endpoints, as their users spelled them."""
    docs = _documents(BatchEndpoint.get_block_type_slug())
    return sorted(d.data.get("name", d.name) for d in docs)


def deployment_blocks(endpoint: str | None = None) -> list[BatchDeployment]:
    """The batch deployments of ``endpoint`` (compared case-insensitively), or all of them."""
    docs = _documents(BatchDeployment.get_block_type_slug())
    mine = [
        d
        for d in docs
        if endpoint is None or str(d.data.get("endpoint", "")).lower() == endpoint.lower()
    ]
    return sorted((BatchDeployment.model_validate(d.data) for d in mine), key=lambda b: b.name)


def compute_names() -> list[str]:
    """Names of the registered computes (block document names)."""
    from blocks.compute import DaskCompute

    return sorted(d.name for d in _documents(DaskCompute.get_block_type_slug()))


def _load(cls: type[_B], document: str) -> _B | None:
    """The block ``cls`` saved as ``document``, or None when there is none.

    Reads the document directly (one request, and no "block loaded" event, which would
    make every CLI command wait for the event stream at exit).
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            found = client.read_block_document_by_name(
                document, block_type_slug=cls.get_block_type_slug()
            )
        except ObjectNotFound:
            return None
    return cls.model_validate(found.data)


def load_endpoint(name: str) -> BatchEndpoint:
    """The endpoint ``name``; NotFoundError listing the known endpoints otherwise."""
    block = _load(BatchEndpoint, endpoint_document_name(name))
    if block is None:
        raise NotFoundError(
            "endpoint",
            name,
            known=endpoint_names(),
            hint="Create it with: pbe batch-endpoint create --file endpoint.yml",
        )
    return block


def load_deployment(endpoint: str, name: str) -> BatchDeployment:
    """The deployment ``name`` of ``endpoint``; NotFoundError listing its deployments."""
    block = _load(BatchDeployment, deployment_document_name(endpoint, name))
    if block is None or block.endpoint.lower() != endpoint.lower():
        raise NotFoundError(
            "deployment",
            name,
            known=[b.name for b in deployment_blocks(endpoint)],
            hint=f"Deployments of endpoint '{endpoint}' are listed by: "
            f"pbe batch-deployment list --endpoint-name {endpoint}",
        )
    return block


def load_compute(name: str) -> DaskCompute:
    """The ``DaskCompute`` named ``name`` (``azureml:`` prefix allowed); NotFoundError otherwise."""
    from blocks.compute import DaskCompute

    shown = name.strip().removeprefix("azureml:")
    block = _load(DaskCompute, compute_document_name(shown))
    if block is None:
        raise NotFoundError(
            "compute",
            shown,
            known=compute_names(),
            hint=f"Create it with: pbe compute create -n {shown} --type local",
        )
    return block
