"""Endpoint and deployment Blocks on a real Prefect server, and endpoint resolution."""

from __future__ import annotations

import uuid
from contextlib import contextmanager

import pytest

from blocks.endpoint import (
    BatchDeployment,
    BatchEndpoint,
    deployment_document_name,
    endpoint_document_name,
    load_compute,
    load_deployment,
    load_endpoint,
)
from blocks.errors import NotFoundError, SpecError

pytestmark = pytest.mark.timeout(300)


@contextmanager
def _api(url: str):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def _fields(block) -> dict:
    return {k: v for k, v in block.model_dump().items() if not k.startswith("_")}


def test_blocks_round_trip(pbe_workspace):
    name = f"Round-{uuid.uuid4().hex[:6]}"
    endpoint = BatchEndpoint(
        name=name, description="d", tags={"a": "b"}, default_deployment="x-dpl"
    )
    deployment = BatchDeployment(
        name="X-Dpl",
        endpoint=name,
        spec={"name": "X-Dpl", "model": "azureml:m:1", "compute": "azureml:c"},
        code_dir="/code",
        scoring_script="score.py",
        model_name="m",
        model_version="1",
        model_dir="/models/m/1",
        compute="c",
    )
    with _api(pbe_workspace.api_url):
        endpoint.save(endpoint_document_name(name))
        deployment.save(deployment_document_name(name, "X-Dpl"))
        # names are case-insensitive
        assert _fields(load_endpoint(name.upper())) == _fields(endpoint)
        assert _fields(load_deployment(name, "x-dpl")) == _fields(deployment)
        with pytest.raises(NotFoundError, match="Known deployments: X-Dpl"):
            load_deployment(name, "y-dpl")
        with pytest.raises(NotFoundError, match="compute 'gpu' not found"):
            load_compute("azureml:gpu")
        BatchDeployment.delete(deployment_document_name(name, "X-Dpl"))
        BatchEndpoint.delete(endpoint_document_name(name))
        with pytest.raises(NotFoundError, match=f"endpoint '{name}' not found"):
            load_endpoint(name)


def test_a_deployment_pins_its_code_and_model_at_create_time(
    pbe, pbe_workspace, tiny_project, tmp_path
):
    import shutil

    from flows.resolve import resolve_endpoint

    project = tmp_path / "project"
    shutil.copytree(tiny_project.folder, project)
    name = f"pin-{uuid.uuid4().hex[:6]}"
    pbe.ok("batch-endpoint", "create", "--file", str(project / "endpoint.yml"), "--name", name)
    created = pbe.ok(
        "batch-deployment",
        "create",
        "--file",
        str(project / "deployment.yml"),
        "--endpoint-name",
        name,
        "--set",
        "settings.mini_batch_size=5",
    )
    latest = pbe.ok("model", "show", "--name", "tiny-model", "--label", "latest")["version"]
    assert created["model"] == f"azureml:tiny-model:{latest}"  # @latest became a version
    assert created["settings"]["mini_batch_size"] == 5  # --set applied
    (project / "code" / "score.py").write_text("broken after create")
    pbe.ok("model", "create", "--name", "tiny-model", "--path", str(tiny_project.model))

    with _api(pbe_workspace.api_url):
        with pytest.raises(SpecError, match="no default deployment.*tiny-dpl"):
            resolve_endpoint(name)
        resolved = resolve_endpoint(name, "tiny-dpl")
    assert resolved.label == f"{name}/tiny-dpl"
    assert resolved.model_dir.endswith(f"models/tiny-model/{latest}")
    assert "def run(" in (resolved.code_dir and open(f"{resolved.code_dir}/score.py").read())
    assert str(pbe_workspace.root) in resolved.code_dir
    assert resolved.spec.settings.mini_batch_size == 5
    assert resolved.compute.type == "local"

    updated = pbe.ok(
        "batch-deployment",
        "update",
        "--name",
        "tiny-dpl",
        "--endpoint-name",
        name,
        "--set",
        "settings.mini_batch_size=7",
    )
    assert updated["code_configuration"]["code"] == resolved.code_dir  # same snapshot
    assert updated["model"] == created["model"]
    pbe.ok("batch-endpoint", "delete", "--name", name, "--yes")
