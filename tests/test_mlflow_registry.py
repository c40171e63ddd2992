"""`pbe model create --type mlflow_model` and no-code `pbe batch-deployment create`."""

from __future__ import annotations

import shutil
import uuid
from importlib.metadata import version
from pathlib import Path

import pytest
from mlflow_models import save_sklearn_model

pytest.importorskip("mlflow")
pytestmark = [pytest.mark.timeout(300)]

NOCODE_DEPLOYMENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json
name: {name}
type: model
model: azureml:{model}@latest
compute: azureml:tiny-cluster
settings:
  mini_batch_size: 2
"""


@pytest.fixture(scope="module")
def mlflow_model(tmp_path_factory) -> Path:
    return save_sklearn_model(tmp_path_factory.mktemp("registry") / "model")


@pytest.fixture(scope="module")
def endpoint(pbe, tiny_project) -> str:
    name = f"nocode-{uuid.uuid4().hex[:6]}"
    pbe.ok("batch-endpoint", "create", "--file", str(tiny_project.endpoint_yml), "--name", name)
    return name


def deploy(pbe, tmp_path: Path, endpoint: str, model: str, name: str = "nocode-dpl"):
    file = tmp_path / f"{name}.yml"
    file.write_text(NOCODE_DEPLOYMENT.format(name=name, model=model))
    return pbe("batch-deployment", "create", "--file", str(file), "--endpoint-name", endpoint)


def test_an_mlflow_model_is_registered_with_flavors_signature_and_requirements(pbe, mlflow_model):
    name = f"bc-{uuid.uuid4().hex[:6]}"
    pbe.ok("model", "create", "--name", name, "--type", "mlflow_model", "--path", str(mlflow_model))
    shown = pbe.ok("model", "show", "--name", name, "--label", "latest")
    assert shown["type"] == "mlflow_model"
    assert {"python_function", "sklearn"} <= set(shown["flavors"])
    assert shown["flavors"]["sklearn"]["sklearn_version"] == version("scikit-learn")
    inputs = shown["signature"]["inputs"]
    assert inputs[0] == {"type": "double", "name": "mean radius", "required": True}
    assert len(inputs) == 30
    assert shown["signature"]["outputs"] == [
        {"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}
    ]
    assert f"scikit-learn=={version('scikit-learn')}" in shown["requirements"]


def test_a_folder_without_mlmodel_is_refused_naming_what_is_missing(pbe, tmp_path):
    folder = tmp_path / "not-mlflow"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(b"x")
    result = pbe(
        "model", "create", "--name", "not-mlflow", "--type", "mlflow_model", "--path", str(folder)
    )
    assert result.code == 1
    assert f"'{folder}' is not an MLflow model: no MLmodel file in it" in result.err
    (folder / "MLmodel").write_text("signature: {}\n")
    result = pbe(
        "model", "create", "--name", "not-mlflow", "--type", "mlflow_model", "--path", str(folder)
    )
    assert "MLmodel has no 'flavors' mapping" in result.err
    assert (
        pbe(
            "model",
            "create",
            "--name",
            "not-mlflow",
            "--type",
            "custom_model",
            "--path",
            str(folder),
        ).code
        == 0
    )  # custom_model stays as it was


def test_a_deployment_without_code_runs_the_builtin_scorer(pbe, endpoint, mlflow_model, tmp_path):
    name = f"bc-{uuid.uuid4().hex[:6]}"
    pbe.ok("model", "create", "--name", name, "--type", "mlflow_model", "--path", str(mlflow_model))
    result = deploy(pbe, tmp_path, endpoint, name)
    assert result.code == 0, result.err
    record = result.json()
    assert record["code_configuration"] is None
    assert record["properties"]["scoring_script"].startswith("built-in MLflow scorer")
    assert record["model"] == f"azureml:{name}:1"


def test_a_custom_model_or_a_flavor_without_pyfunc_is_refused_at_create(
    pbe, endpoint, mlflow_model, tmp_path
):
    custom = f"custom-{uuid.uuid4().hex[:6]}"
    pbe.ok(
        "model", "create", "--name", custom, "--type", "custom_model", "--path", str(mlflow_model)
    )
    result = deploy(pbe, tmp_path, endpoint, custom, name="custom-dpl")
    assert result.code == 1
    assert (
        f"model '{custom}:1' is a custom_model; a deployment without code_configuration "
        "needs an mlflow_model" in result.err
    )
    assert "Hint: Add code_configuration" in result.err

    only_sklearn = tmp_path / "only-sklearn"
    shutil.copytree(mlflow_model, only_sklearn)
    text = (only_sklearn / "MLmodel").read_text()
    start, end = text.index("  python_function:"), text.index("  sklearn:")
    (only_sklearn / "MLmodel").write_text(text[:start] + text[end:])
    name = f"nopyfunc-{uuid.uuid4().hex[:6]}"
    pbe.ok("model", "create", "--name", name, "--type", "mlflow_model", "--path", str(only_sklearn))
    result = deploy(pbe, tmp_path, endpoint, name, name="nopyfunc-dpl")
    assert result.code == 1
    assert "has the flavor(s) sklearn but not python_function" in result.err


def test_a_model_saved_with_another_scikit_learn_is_named_at_create(
    pbe, endpoint, mlflow_model, tmp_path
):
    old = tmp_path / "old-sklearn"
    shutil.copytree(mlflow_model, old)
    here = version("scikit-learn")
    for file in ("MLmodel", "requirements.txt"):
        text = (old / file).read_text()
        (old / file).write_text(
            text.replace(f"sklearn_version: {here}", "sklearn_version: 1.3.0").replace(
                f"scikit-learn=={here}", "scikit-learn==1.3.0"
            )
        )
    name = f"old-{uuid.uuid4().hex[:6]}"
    pbe.ok("model", "create", "--name", name, "--type", "mlflow_model", "--path", str(old))
    result = deploy(pbe, tmp_path, endpoint, name, name="old-dpl")
    assert result.code == 0, result.err
    assert f"scikit-learn {here} (file pins 1.3.0)" in result.err
    assert (
        f"the model was saved with scikit-learn 1.3.0 (MLmodel flavors.sklearn."
        f"sklearn_version); scoring has scikit-learn {here}"
    ) in result.err
