"""Fast tests of the deployment-spec layer (no Prefect): models, YAML loading, errors, --set."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from blocks.errors import SpecError
from blocks.job_settings import job_settings
from blocks.names import validate_name
from blocks.overrides import JobOverrides, apply_set_overrides
from blocks.spec import (
    DeploymentSettings,
    EndpointSpec,
    InlineModel,
    JobSettings,
    ModelDeploymentSpec,
    ModelReference,
)
from blocks.spec_loading import (
    load_deployment_yaml,
    load_endpoint_yaml,
    parse_deployment,
    parse_endpoint,
)

# The torch deployment of azureml-examples cli/endpoints/batch/deploy-models/mnist-classifier.
REFERENCE_DEPLOYMENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json
name: mnist-torch-dpl
description: A deployment using Torch to solve the MNIST classification dataset.
endpoint_name: mnist-batch
type: model
model: azureml:mnist-classifier-torch@latest
code_configuration:
  code: ./code
  scoring_script: batch_driver.py
environment:
  name: batch-torch-py38
  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest
  conda_file: environment/conda.yaml
compute: azureml:batch-cluster
resources:
  instance_count: 1
settings:
  max_concurrency_per_instance: 2
  mini_batch_size: 10
  output_action: append_row
  output_file_name: predictions.csv
  retry_settings:
    max_retries: 3
    timeout: 30
  error_threshold: -1
  logging_level: info
"""

REFERENCE_ENDPOINT = """\
$schema: https://azuremlschemas.azureedge.net/latest/batchEndpoint.schema.json
name: mnist-batch
description: A batch endpoint for scoring images from the MNIST dataset.
tags:
  type: deep-learning
"""

BASE = {"name": "my-dpl", "model": "azureml:mnist:1", "compute": "azureml:cpu-cluster"}


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The reference deployment folder: deployment.yml, code/batch_driver.py, conda.yaml."""
    write(tmp_path, "code/batch_driver.py", "def init():\n    pass\n\ndef run(b):\n    return b\n")
    write(tmp_path, "environment/conda.yaml", "name: env\ndependencies: [python=3.8.5]\n")
    write(tmp_path, "endpoint.yml", REFERENCE_ENDPOINT)
    return write(tmp_path, "deployment.yml", REFERENCE_DEPLOYMENT)


def deployment_error(data: dict, source: str = "dep.yml") -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_deployment(data, source=source)
    return info.value


def yaml_error(tmp_path: Path, text: str, name: str = "deployment.yml") -> SpecError:
    path = write(tmp_path, name, text)
    with pytest.raises(SpecError) as info:
        load_deployment_yaml(path)
    assert str(path) in str(info.value)
    return info.value


# --- the reference example and both layouts -------------------------------------------------


def test_reference_example_parses(example: Path) -> None:
    spec = load_deployment_yaml(example)
    assert spec.name == "mnist-torch-dpl" and spec.endpoint_name == "mnist-batch"
    assert spec.model == ModelReference(name="mnist-classifier-torch", label="latest")
    assert str(spec.model) == "azureml:mnist-classifier-torch@latest"
    folder = example.parent.resolve()
    assert spec.code_configuration.code == str(folder / "code")
    assert spec.code_configuration.scoring_script == "batch_driver.py"
    assert spec.environment.name == "batch-torch-py38"
    assert spec.environment.image.startswith("mcr.microsoft.com/azureml/openmpi4.1.0")
    assert spec.environment.conda_file == str(folder / "environment" / "conda.yaml")
    assert spec.compute_name == "batch-cluster"
    assert spec.resources.instance_count == 1
    s = spec.settings
    assert (s.max_concurrency_per_instance, s.mini_batch_size, s.error_threshold) == (2, 10, -1)
    assert (s.retry_settings.max_retries, s.retry_settings.timeout) == (3, 30)
    assert (s.output_action, s.output_file_name, s.logging_level) == (
        "append_row",
        "predictions.csv",
        "info",
    )
    endpoint = load_endpoint_yaml(example.parent / "endpoint.yml")
    assert endpoint.name == "mnist-batch" and endpoint.tags == {"type": "deep-learning"}
    assert endpoint.auth_mode == "aad_token" and endpoint.defaults.deployment_name is None


def assert_default_settings(spec: ModelDeploymentSpec) -> None:
    s = spec.settings
    assert spec.type == "model" and spec.resources.instance_count == 1
    assert s.max_concurrency_per_instance == 1 and s.mini_batch_size == 10
    assert s.retry_settings.max_retries == 3 and s.retry_settings.timeout == 30
    assert s.error_threshold == -1 and s.output_action == "append_row"
    assert s.output_file_name is None and s.effective_output_file_name == "predictions.csv"
    assert s.logging_level == "info" and s.environment_variables == {}
    assert spec.endpoint_name is None and spec.code_configuration is None
    assert spec.environment is None and spec.tags == {} and spec.description is None


def test_settings_layout_defaults() -> None:
    assert_default_settings(parse_deployment({**BASE, "type": "model"}))


def test_legacy_layout_defaults() -> None:
    assert_default_settings(parse_deployment(BASE))


def test_legacy_layout_reads_root_settings() -> None:
    spec = parse_deployment(
        {**BASE, "mini_batch_size": 5, "retry_settings": {"timeout": 60}, "error_threshold": 2}
    )
    assert spec.settings.mini_batch_size == 5 and spec.settings.error_threshold == 2
    assert spec.settings.retry_settings == spec.settings.retry_settings.model_validate(
        {"max_retries": 3, "timeout": 60}
    )


def test_legacy_and_settings_block_together_refused() -> None:
    error = deployment_error({**BASE, "mini_batch_size": 5, "settings": {}})
    assert error.key == "mini_batch_size" and "legacy" in str(error)


def test_settings_key_at_root_with_type_model_points_under_settings() -> None:
    error = deployment_error({**BASE, "type": "model", "mini_batch_size": 5})
    assert error.key == "mini_batch_size"
    assert "under 'settings:'" in str(error) and "settings.mini_batch_size" in str(error)


def test_dump_round_trips() -> None:
    spec = parse_deployment({**BASE, "mini_batch_size": 3})
    assert parse_deployment(spec.model_dump()) == spec
    inline = parse_deployment({**BASE, "model": {"name": "m", "path": "model"}})
    assert parse_deployment(inline.model_dump()) == inline


def test_endpoint_defaults_and_schema_ignored() -> None:
    spec = parse_endpoint({"$schema": "x", "name": "ep-one", "defaults": {"$schema": "y"}})
    assert spec == EndpointSpec(name="ep-one")
    assert spec.tags == {} and spec.auth_mode == "aad_token" and spec.description is None
    assert parse_endpoint({"name": "ep-one", "defaults": {"deployment_name": "dpl-a"}}).defaults
    assert parse_deployment({**BASE, "$schema": "z", "resources": {"$schema": "z"}})


@pytest.mark.parametrize(
    ("given", "action"),
    [("append_row", "append_row"), ("AppendRow", "append_row"), ("APPEND_ROW", "append_row")]
    + [("summary_only", "summary_only"), ("SummaryOnly", "summary_only")]
    + [("summaryonly", "summary_only")],
)
def test_output_action_any_case(given: str, action: str) -> None:
    assert DeploymentSettings(output_action=given).output_action == action


@pytest.mark.parametrize("level", ["warning", "Info", "DEBUG"])
def test_logging_level_any_case(level: str) -> None:
    assert (
        parse_deployment({**BASE, "logging_level": level}).settings.logging_level == level.lower()
    )


def test_environment_variables_become_strings() -> None:
    spec = parse_deployment({**BASE, "environment_variables": {"A": 1, "B": True, "C": 0.5}})
    assert spec.settings.environment_variables == {"A": "1", "B": "true", "C": "0.5"}
    error = deployment_error({**BASE, "environment_variables": {"D": None}})
    assert error.key == "environment_variables.D" and "null" in str(error)


def test_summary_only_has_no_output_file() -> None:
    settings = parse_deployment({**BASE, "output_action": "summary_only"}).settings
    assert settings.effective_output_file_name is None


@pytest.mark.parametrize("layout", ["legacy", "settings"])
def test_summary_only_with_output_file_name_refused(layout: str) -> None:
    values = {"output_action": "summary_only", "output_file_name": "out.csv"}
    data = {**BASE, **values} if layout == "legacy" else {**BASE, "settings": values}
    error = deployment_error(data)
    expected_key = "output_file_name" if layout == "legacy" else "settings.output_file_name"
    assert error.key == expected_key and error.source == "dep.yml"
    assert "'out.csv'" in str(error) and "summary_only" in str(error)
    assert "Remove output_file_name" in str(error)


@pytest.mark.parametrize("name", ["a/b.csv", "a\\b.csv", *'~"#%&*:<>?{|}', "..", ""])
def test_bad_output_file_name_refused(name: str) -> None:
    if len(name) == 1:
        name = f"out{name}.csv"
    error = deployment_error({**BASE, "settings": {"output_file_name": name}, "type": "model"})
    assert error.key == "settings.output_file_name" and repr(name) in str(error)
    assert "predictions.csv" in str(error)


# --- error rendering ------------------------------------------------------------------------


def test_unknown_key_suggests_closest_and_names_file_key_and_line(example: Path) -> None:
    text = REFERENCE_DEPLOYMENT.replace("  mini_batch_size: 10", "  mini_batch_sise: 10")
    error = yaml_error(example.parent, text)
    message = str(error)
    assert error.key == "settings.mini_batch_sise"
    assert "key 'settings.mini_batch_sise'" in message
    assert "unknown key 'mini_batch_sise'; did you mean 'mini_batch_size'?" in message
    assert "(line 19)" in message
    assert isinstance(error.__cause__, ValidationError)


def test_unknown_key_lists_valid_keys_when_nothing_is_close() -> None:
    error = deployment_error({**BASE, "type": "model", "resources": {"gpus": 2}})
    assert error.key == "resources.gpus"
    assert "unknown key 'gpus'; valid keys here are: instance_count" in str(error)


def test_unknown_root_key_in_legacy_file_suggests_root_setting() -> None:
    error = deployment_error({**BASE, "mini_batch_sise": 5})
    assert error.key == "mini_batch_sise" and "did you mean 'mini_batch_size'?" in str(error)


def test_unknown_root_key_with_type_model_suggests_settings_key() -> None:
    error = deployment_error({**BASE, "type": "model", "error_treshold": 5})
    assert "did you mean 'settings.error_threshold'?" in str(error)


def test_unknown_key_in_inline_model() -> None:
    error = deployment_error({**BASE, "model": {"name": "m", "path": "p", "pth": "x"}})
    assert error.key == "model.pth" and "did you mean 'path'?" in str(error)


def test_wrong_value_names_value_and_range_and_counts_the_rest() -> None:
    settings = {"retry_settings": {"max_retries": 0, "timeout": "soon"}, "error_threshold": -5}
    error = deployment_error({**BASE, "type": "model", "settings": settings})
    message = str(error)
    assert error.key == "settings.retry_settings.max_retries"
    assert "invalid value 0: expected an integer >= 1" in message
    assert "2 more problems" in message
    assert "settings.retry_settings.timeout" in message and "settings.error_threshold" in message


@pytest.mark.parametrize(
    ("settings", "key", "shown"),
    [
        ({"mini_batch_size": "ten"}, "mini_batch_size", "'ten': expected an integer"),
        ({"mini_batch_size": True}, "mini_batch_size", "true: expected an integer"),
        ({"error_threshold": -2}, "error_threshold", "-2: expected an integer >= -1"),
        (
            {"retry_settings": {"timeout": 0}},
            "retry_settings.timeout",
            "0: expected an integer > 0",
        ),
        ({"output_action": "append"}, "output_action", "'append_row' or 'summary_only'"),
        ({"logging_level": "trace"}, "logging_level", "'warning', 'info' or 'debug'"),
        ({"retry_settings": 3}, "retry_settings", "3: expected a mapping"),
    ],
)
def test_wrong_values(settings: dict, key: str, shown: str) -> None:
    error = deployment_error({**BASE, **settings})
    assert error.key == key and shown in str(error)


@pytest.mark.parametrize("missing", ["name", "model", "compute"])
def test_missing_required_key(missing: str) -> None:
    data = {k: v for k, v in BASE.items() if k != missing}
    error = deployment_error(data)
    assert error.key == missing and f"missing required key '{missing}'" in str(error)
    assert "Hint: Add" in str(error)


def test_missing_key_of_inline_model_and_code_configuration() -> None:
    assert deployment_error({**BASE, "model": {"name": "m"}}).key == "model.path"
    error = deployment_error({**BASE, "code_configuration": {"code": "src"}})
    assert error.key == "code_configuration.scoring_script"


def test_pipeline_deployments_refused() -> None:
    error = deployment_error({**BASE, "type": "pipeline", "component": "azureml:c:1"})
    assert error.key == "type" and "only 'model' deployments are supported" in str(error)
    assert "'pipeline'" in str(error)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    error = yaml_error(tmp_path, "name: a\nsettings:\n  mini_batch_size: [1,\n")
    assert "invalid YAML at line" in str(error)


def test_yaml_not_a_mapping(tmp_path: Path) -> None:
    error = yaml_error(tmp_path, "# comment\n- name: a\n")
    assert "line 2: expected a mapping" in str(error) and "got a list" in str(error)
    assert "empty file" in str(yaml_error(tmp_path, ""))


def test_missing_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the file"):
        load_endpoint_yaml(tmp_path / "nope.yml")


def test_spec_error_pickles() -> None:
    error = deployment_error({**BASE, "mini_batch_size": 0})
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.key == "mini_batch_size"


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["abc", "mnist-batch", "A1-b2", "a" * 32, "x-9"])
def test_valid_names(name: str) -> None:
    assert validate_name("endpoint", name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("ab", "has 2 characters"),
        ("a" * 33, "has 33 characters"),
        ("1abc", "does not start with a letter"),
        ("-abc", "does not start with a letter"),
        ("abc-", "ends with '-'"),
        ("my_endpoint", "contains '_'"),
        ("my endpoint", "contains ' '"),
        ("héllo", "contains 'é'"),
    ],
)
def test_bad_names(name: str, why: str) -> None:
    with pytest.raises(SpecError) as info:
        validate_name("endpoint", name, source="endpoint.yml", key="name")
    message = str(info.value)
    assert f"invalid endpoint name {name!r}" in message and why in message
    assert "3-32 characters, starting with a letter" in message
    assert message.startswith("endpoint.yml key 'name':")


def test_bad_names_in_specs() -> None:
    error = deployment_error({**BASE, "endpoint_name": "my_batch"})
    assert error.key == "endpoint_name" and "invalid endpoint name 'my_batch'" in str(error)
    assert deployment_error({**BASE, "name": "x"}).key == "name"
    with pytest.raises(SpecError) as info:
        parse_endpoint({"name": "ep-one", "defaults": {"deployment_name": "bad-"}}, source="e.yml")
    assert info.value.key == "defaults.deployment_name" and "e.yml" in str(info.value)


# --- model, environment, compute -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reference"),
    [
        ("azureml:mnist:1", ModelReference(name="mnist", version="1")),
        (
            "azureml:mnist-classifier_torch.v2:12",
            ModelReference(name="mnist-classifier_torch.v2", version="12"),
        ),
        ("azureml:mnist@latest", ModelReference(name="mnist", label="latest")),
    ],
)
def test_model_references(text: str, reference: ModelReference) -> None:
    assert parse_deployment({**BASE, "model": text}).model == reference
    assert ModelReference.parse(text) == reference and str(reference) == text


@pytest.mark.parametrize(
    "text", ["mnist:1", "azureml:mnist", "azureml:mnist@newest", "azureml::1", "azureml:m:1:2", 7]
)
def test_bad_model_reference(text: object) -> None:
    error = deployment_error({**BASE, "model": text})
    message = str(error)
    assert error.key == "model" and f"invalid model {text!r}" in message
    assert "'azureml:<name>:<version>' or 'azureml:<name>@latest'" in message


def test_model_reference_needs_version_or_label() -> None:
    with pytest.raises(ValidationError):
        ModelReference(name="mnist")
    with pytest.raises(SpecError, match="'azureml:<name>@latest'"):
        ModelReference.parse("mnist@latest", source="cli")


def test_inline_model() -> None:
    spec = parse_deployment({**BASE, "model": {"name": "mnist", "path": "model", "version": 2}})
    assert spec.model == InlineModel(name="mnist", path="model", version="2")
    assert spec.model.type == "custom_model"


def test_environment_reference_kept() -> None:
    for ref in [
        "azureml:my-env:1",
        "azureml://registries/azureml/environments/sklearn-1.5/labels/latest",
    ]:
        assert parse_deployment({**BASE, "environment": ref}).environment.reference == ref
    error = deployment_error({**BASE, "environment": "my-env"})
    assert error.key == "environment" and "'my-env'" in str(error)


@pytest.mark.parametrize(
    ("compute", "name"), [("azureml:batch-cluster", "batch-cluster"), ("cpu", "cpu")]
)
def test_compute_name(compute: str, name: str) -> None:
    assert parse_deployment({**BASE, "compute": compute}).compute_name == name


def test_bad_compute() -> None:
    error = deployment_error({**BASE, "compute": "azureml:"})
    assert error.key == "compute" and "azureml:<cluster-name>" in str(error)


# --- paths named by load_deployment_yaml ----------------------------------------------------


def test_missing_code_folder(example: Path) -> None:
    error = yaml_error(example.parent, REFERENCE_DEPLOYMENT.replace("code: ./code", "code: ./src"))
    assert error.key == "code_configuration.code" and "'./src' does not exist" in str(error)
    assert str(example.parent / "src") in str(error) and "(line 8)" in str(error)


def test_missing_scoring_script(example: Path) -> None:
    text = REFERENCE_DEPLOYMENT.replace("batch_driver.py", "driver.py")
    error = yaml_error(example.parent, text)
    assert error.key == "code_configuration.scoring_script" and "'driver.py'" in str(error)


def test_missing_conda_file(example: Path) -> None:
    text = REFERENCE_DEPLOYMENT.replace("environment/conda.yaml", "env/conda.yml")
    error = yaml_error(example.parent, text)
    assert error.key == "environment.conda_file" and "'env/conda.yml'" in str(error)


def test_inline_model_path_resolved_or_refused(example: Path) -> None:
    inline = "model:\n  name: mnist\n  path: model\n  type: custom_model"
    text = REFERENCE_DEPLOYMENT.replace("model: azureml:mnist-classifier-torch@latest", inline)
    error = yaml_error(example.parent, text)
    assert error.key == "model.path" and "'model' does not exist" in str(error)
    (example.parent / "model").mkdir()
    assert load_deployment_yaml(example).model.path == str(example.parent.resolve() / "model")


def test_legacy_yaml_error_uses_the_key_as_written(tmp_path: Path) -> None:
    text = "name: legacy-dpl\nmodel: azureml:m:1\ncompute: azureml:c\nmini_batch_size: 0\n"
    error = yaml_error(tmp_path, text)
    assert error.key == "mini_batch_size" and "(line 4)" in str(error)


# --- job settings ---------------------------------------------------------------------------


def test_job_settings_from_deployment(example: Path) -> None:
    job = job_settings(load_deployment_yaml(example))
    assert job == JobSettings(
        mini_batch_size=10,
        instance_count=1,
        max_concurrency_per_instance=2,
        max_retries=3,
        timeout=30,
        error_threshold=-1,
        output_action="append_row",
        output_file_name="predictions.csv",
        logging_level="info",
        environment_variables={},
    )
    assert job.process_count == 2
    with pytest.raises(ValidationError):
        job.mini_batch_size = 3


def test_job_settings_overrides(example: Path) -> None:
    spec = load_deployment_yaml(example)
    job = job_settings(
        spec,
        JobOverrides(
            mini_batch_size=20,
            instance_count=5,
            max_retries=1,
            timeout=5,
            error_threshold=0,
            output_file_name="out.csv",
        ),
    )
    assert (job.mini_batch_size, job.instance_count, job.process_count) == (20, 5, 10)
    assert (job.max_retries, job.timeout, job.error_threshold) == (1, 5, 0)
    assert job.output_file_name == "out.csv" and spec.settings.mini_batch_size == 10


def test_job_settings_default_output_file_and_summary_only() -> None:
    assert job_settings(parse_deployment(BASE)).output_file_name == "predictions.csv"
    summary = parse_deployment({**BASE, "output_action": "summary_only"})
    assert job_settings(summary).output_file_name is None
    with pytest.raises(SpecError) as info:
        job_settings(summary, JobOverrides(output_file_name="out.csv"))
    assert info.value.key == "output_file_name" and "summary_only" in str(info.value)


@pytest.mark.parametrize(
    ("override", "shown"),
    [
        ({"mini_batch_size": 0}, "invalid value 0: expected an integer >= 1"),
        ({"instance_count": -1}, "invalid value -1"),
        ({"timeout": 0}, "expected an integer > 0"),
        ({"error_threshold": -3}, "expected an integer >= -1"),
        ({"output_file_name": "a/b.csv"}, "'a/b.csv' contains /"),
    ],
)
def test_bad_job_overrides(override: dict, shown: str) -> None:
    with pytest.raises(SpecError) as info:
        job_settings(parse_deployment(BASE), JobOverrides(**override))
    (key,) = override
    assert info.value.key == key and shown in str(info.value)
    assert "deployment 'my-dpl'" in str(info.value)


def test_only_overridable_settings_are_accepted() -> None:
    with pytest.raises(TypeError):
        JobOverrides(max_concurrency_per_instance=3)  # type: ignore[call-arg]


# --- --set overrides ------------------------------------------------------------------------


def test_set_overrides_parse_yaml_scalars_and_create_mappings() -> None:
    data = {"name": "my-dpl", "settings": {"mini_batch_size": 10}}
    result = apply_set_overrides(
        data,
        [
            "settings.mini_batch_size=20",
            "settings.retry_settings.timeout=60",
            "tags.gpu=true",
            "description=hello: world",
            "settings.output_file_name=out.csv",
            "settings.error_threshold=-1",
        ],
        source="dep.yml",
    )
    assert result["settings"] == {
        "mini_batch_size": 20,
        "retry_settings": {"timeout": 60},
        "output_file_name": "out.csv",
        "error_threshold": -1,
    }
    assert result["tags"] == {"gpu": True} and result["description"] == "hello: world"
    assert data == {"name": "my-dpl", "settings": {"mini_batch_size": 10}}


def test_set_overrides_then_parse() -> None:
    data = apply_set_overrides(
        {**BASE, "type": "model"},
        ["settings.mini_batch_size=20", "settings.environment_variables.DEBUG=true"],
        source="dep.yml",
    )
    settings = parse_deployment(data).settings
    assert settings.mini_batch_size == 20 and settings.environment_variables == {"DEBUG": "true"}


@pytest.mark.parametrize("assignment", ["mini_batch_size", "=3", "settings..timeout=3"])
def test_malformed_set_override(assignment: str) -> None:
    with pytest.raises(SpecError) as info:
        apply_set_overrides({}, [assignment], source="dep.yml")
    assert "dep.yml" in str(info.value) and repr(assignment) in str(info.value)
    assert "key.path=value" in str(info.value)


def test_set_override_through_a_scalar() -> None:
    with pytest.raises(SpecError) as info:
        apply_set_overrides({"name": "x"}, ["name.first=y"], source="dep.yml")
    assert info.value.key == "name.first" and "not a mapping" in str(info.value)
