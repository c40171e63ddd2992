"""Data assets: the platform's data YAML, versions, snapshots, and jobs that take
``azureml:<name>@latest`` from ``pbe``, from Prefect's ``run_deployment`` and from Python."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from blocks.data_assets import DataRegistry, data_spec, load_data_yaml, resolve_input
from blocks.errors import AlreadyExistsError, NotFoundError, SpecError

#: the platform's published data YAML (heart-classifier example), unchanged
PLATFORM_DATA_YAML = """\
$schema: https://azuremlschemas.azureedge.net/latest/data.schema.json
name: heart-dataset-unlabeled
description: An unlabeled dataset for heart classification.
type: uri_folder
path: data
"""


@pytest.fixture
def registry(tmp_path: Path) -> DataRegistry:
    return DataRegistry(tmp_path / "workspace" / "data")


def _folder(path: Path, *names: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        (path / name).write_text(name)
    return path


def test_the_platform_yaml_registers_a_snapshot(registry, tmp_path):
    project = tmp_path / "project"
    _folder(project / "data", "a.csv", "b.csv")
    (project / "data.yml").write_text(PLATFORM_DATA_YAML)

    first = registry.create(load_data_yaml(project / "data.yml"))
    assert (first["name"], first["version"], first["type"]) == (
        "heart-dataset-unlabeled",
        "1",
        "uri_folder",
    )
    assert first["description"] == "An unlabeled dataset for heart classification."
    assert first["source_path"] == str(project / "data")
    snapshot = Path(first["path"])
    assert snapshot.is_relative_to(registry.root) and sorted(
        p.name for p in snapshot.iterdir()
    ) == ["a.csv", "b.csv"]

    (project / "data" / "c.csv").write_text("later")  # the asset does not change with it
    assert sorted(p.name for p in snapshot.iterdir()) == ["a.csv", "b.csv"]
    second = registry.create(load_data_yaml(project / "data.yml"))
    assert second["version"] == "2" and len(list(Path(second["path"]).iterdir())) == 3
    assert registry.resolve("azureml:heart-dataset-unlabeled@latest").path == second["path"]
    assert registry.resolve("azureml:heart-dataset-unlabeled:1").path == first["path"]
    assert [a["version"] for a in registry.list_all("heart-dataset-unlabeled")] == ["2", "1"]


def test_uri_assets_are_referenced_not_copied(registry):
    spec = data_spec(name="remote", type="uri_file", path="s3://bucket/in/one.csv", version="7")
    made = registry.create(spec)
    assert made["path"] == "s3://bucket/in/one.csv" and made["version"] == "7"
    assert registry.resolve("azureml:remote@latest").type == "uri_file"
    with pytest.raises(AlreadyExistsError, match="remote:7"):
        registry.create(spec)


def test_command_line_options_win_over_the_yaml(registry, tmp_path):
    _folder(tmp_path / "data", "x.txt")
    _folder(tmp_path / "other", "y.txt")
    (tmp_path / "data.yml").write_text(PLATFORM_DATA_YAML + "version: 3\ntags: {stage: 1}\n")
    spec = data_spec(str(tmp_path / "data.yml"), name="renamed", path=str(tmp_path / "other"))
    made = registry.create(spec)
    assert (made["name"], made["version"], made["tags"]) == ("renamed", "3", {"stage": "1"})
    assert [p.name for p in Path(made["path"]).iterdir()] == ["y.txt"]


@pytest.mark.parametrize(
    ("type_", "path", "message"),
    [
        ("uri_file", "folder", "is a folder, but type uri_file reads a file"),
        ("uri_folder", "folder/x.txt", "is a file, but type uri_folder reads a folder"),
        ("uri_folder", "missing", "does not exist"),
    ],
)
def test_a_path_that_does_not_fit_its_type_is_refused(registry, tmp_path, type_, path, message):
    _folder(tmp_path / "folder", "x.txt")
    with pytest.raises(SpecError, match=message) as caught:
        registry.create(data_spec(name="d", type=type_, path=str(tmp_path / path)))
    assert str(tmp_path) in str(caught.value)
    assert registry.names() == []  # nothing half-registered


def test_bad_yaml_names_the_file_and_key(tmp_path):
    (tmp_path / "data.yml").write_text("name: d\ntype: mltable\npath: x\n")
    with pytest.raises(SpecError, match=r"data\.yml key 'type'"):
        load_data_yaml(tmp_path / "data.yml")
    with pytest.raises(SpecError, match="--name and --path required"):
        data_spec(type="uri_folder")


def test_unknown_assets_and_versions_list_what_exists(registry, tmp_path):
    registry.create(data_spec(name="digits", path=str(_folder(tmp_path / "d", "1.png"))))
    with pytest.raises(
        NotFoundError,
        match=r"data asset 'digitz' not found\. Known data "
        r"assets: digits\.",
    ) as caught:
        registry.resolve("azureml:digitz@latest")
    assert "pbe data create --name digitz" in str(caught.value)
    with pytest.raises(NotFoundError, match=r"Known data asset versions: digits:1\."):
        registry.resolve("azureml:digits:2")
    with pytest.raises(SpecError, match="@latest"):
        registry.resolve("azureml:digits@newest")
    with pytest.raises(SpecError, match="not a data asset reference"):
        registry.resolve("azureml:digits")


def test_resolve_input_leaves_other_inputs_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("PBE_HOME", str(tmp_path))
    assert resolve_input("s3://b/x", "uri_folder") == ("s3://b/x", "uri_folder")
    assert resolve_input("azureml://datastores/s/paths/p", "uri_file") == (
        "azureml://datastores/s/paths/p",
        "uri_file",
    )
    DataRegistry().create(data_spec(name="one", type="uri_file", path="https://h/f.csv"))
    assert resolve_input("azureml:one@latest", "uri_folder") == ("https://h/f.csv", "uri_file")


# --------------------------------------------------------------------------- jobs


@pytest.fixture(scope="module")
def endpoint(pbe, tiny_project):
    name = f"data-{uuid.uuid4().hex[:6]}"
    pbe.ok("batch-endpoint", "create", "--file", str(tiny_project.endpoint_yml), "--name", name)
    pbe.ok(
        "batch-deployment",
        "create",
        "--file",
        str(tiny_project.deployment_yml),
        "--endpoint-name",
        name,
        "--set-default",
    )
    yield name
    pbe("batch-endpoint", "delete", "--name", name, "--yes")


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_jobs_take_data_assets_from_pbe_prefect_and_python(
    pbe, pbe_workspace, endpoint, tiny_project, tmp_path
):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.batch_score import batch_score

    asset = f"tiny-inputs-{uuid.uuid4().hex[:6]}"
    yml = tmp_path / "data.yml"
    yml.write_text(f"name: {asset}\ntype: uri_folder\npath: {tiny_project.inputs}\n")
    assert pbe.ok("data", "create", "-f", str(yml), "--query", "version") == "1"
    single = tiny_project.inputs / "item0001.txt"
    assert pbe.ok("data", "create", "--name", asset, "--type", "uri_file", "--path", str(single),
                  "--query", "version") == "2"  # fmt: skip
    rows = [f"item{i:04d}.txt 42" for i in range(3)]

    # pbe: @latest is pinned to the version it meant when invoked, and its type is used
    job = pbe.ok(
        "batch-endpoint",
        "invoke",
        "--name",
        endpoint,
        "--input",
        f"azureml:{asset}@latest",
        "--output-path",
        str(tmp_path / "pbe"),
        "--wait",
    )
    assert job["status"] == "Completed", job
    assert job["inputs"]["input_data"] == {"type": "uri_file", "path": f"azureml:{asset}:2"}
    assert (tmp_path / "pbe" / "predictions.csv").read_text().splitlines() == [rows[1]]

    unknown = pbe("batch-endpoint", "invoke", "--name", endpoint, "--input", "azureml:nope@latest")
    assert unknown.code == 1 and "data asset 'nope' not found" in unknown.err
    assert asset in unknown.err  # what exists is listed

    # Prefect: a run_deployment parameter names the asset
    with temporary_settings(updates={PREFECT_API_URL: pbe_workspace.api_url}):
        run = run_deployment(
            f"batch-score/{endpoint}",
            timeout=240,
            parameters={"input": f"azureml:{asset}:1", "output_path": str(tmp_path / "prefect")},
        )
        assert run.state.is_completed(), run.state.message
        assert (tmp_path / "prefect" / "predictions.csv").read_text().splitlines() == rows

        # Python: a plain call of the flow
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PBE_HOME", str(pbe_workspace.root))
            batch_score(
                input=f"azureml:{asset}:1",
                endpoint=endpoint,
                output_path=str(tmp_path / "python"),
                job_name=f"py-{asset}",
            )
    assert (tmp_path / "python" / "predictions.csv").read_text().splitlines() == rows
