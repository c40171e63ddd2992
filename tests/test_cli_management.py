"""Creating, showing, updating and listing through ``pbe`` (no jobs run here)."""

from __future__ import annotations

import json
import uuid

import pytest

pytestmark = pytest.mark.timeout(300)


def test_compute_types(pbe):
    name = f"c{uuid.uuid4().hex[:6]}"
    kwargs = json.dumps({"queue": "batch", "cores": 2})
    made = pbe.ok(
        "compute",
        "create",
        "-n",
        f"{name}_jq",
        "--type",
        "cluster_class",
        "--cluster-class",
        "dask_jobqueue.SLURMCluster",
        "--cluster-kwargs",
        kwargs,
        "--min-instances",
        "1",
        "--max-instances",
        "4",
    )
    assert made["name"] == f"{name}-jq"  # block names: lowercase and dashes
    assert made["cluster_kwargs"] == {"queue": "batch", "cores": 2}
    assert pbe.ok("compute", "show", "-n", f"azureml:{name}_JQ")["max_instances"] == 4
    pbe.ok(
        "compute",
        "create",
        "-n",
        f"{name}-addr",
        "--type",
        "address",
        "--address",
        "tcp://10.0.0.1:8786",
    )
    # creating it again, unchanged, is fine (az ml create is create-or-update)
    pbe.ok(
        "compute",
        "create",
        "-n",
        f"{name}-addr",
        "--type",
        "address",
        "--address",
        "tcp://10.0.0.1:8786",
    )
    names = pbe.ok("compute", "list", "--query", "[].name")
    assert {f"{name}-jq", f"{name}-addr"} <= set(names)
    table = pbe("compute", "list", "-o", "table").out
    assert "tcp://10.0.0.1:8786" in table and table.splitlines()[0].startswith("Name")
    bad = pbe("compute", "create", "-n", f"{name}-bad", "--type", "address")
    assert bad.code == 1 and "needs an address" in bad.err
    bad = pbe(
        "compute",
        "create",
        "-n",
        f"{name}-bad",
        "--type",
        "amlcompute",
        "--min-instances",
        "3",
        "--max-instances",
        "2",
    )
    assert bad.code == 1 and "exceeds max_instances" in bad.err
    for suffix in ("jq", "addr"):
        pbe.ok("compute", "delete", "-n", f"{name}-{suffix}", "--yes")
    assert pbe("compute", "show", "-n", f"{name}-jq").code == 1


def test_schedule_on_create_update_and_remove(pbe, tiny_project):
    name = f"sched-{uuid.uuid4().hex[:6]}"
    made = pbe.ok(
        "batch-endpoint",
        "create",
        "--file",
        str(tiny_project.endpoint_yml),
        "--name",
        name,
        "--schedule",
        "0 2 * * *",
        "--schedule-input",
        str(tiny_project.inputs),
    )
    assert made["schedule"] == {
        "cron": "0 2 * * *",
        "input": str(tiny_project.inputs),
        "input_type": "uri_folder",
        "active": True,
    }
    changed = pbe.ok(
        "batch-endpoint",
        "update",
        "--name",
        name,
        "--schedule",
        "30 3 * * 1",
        "--schedule-input",
        str(tiny_project.inputs / "item0000.txt"),
        "--schedule-input-type",
        "uri_file",
        "--set",
        "description=nightly",
    )
    assert changed["schedule"]["cron"] == "30 3 * * 1"
    assert changed["schedule"]["input_type"] == "uri_file"
    assert changed["description"] == "nightly"
    assert (
        pbe.ok("batch-endpoint", "update", "--name", name, "--remove-schedule")["schedule"] is None
    )
    pbe.ok("batch-endpoint", "delete", "--name", name, "--yes")


def test_deployment_update_from_a_new_yaml_takes_a_new_snapshot(pbe, tiny_project, tmp_path):
    name = f"upd-{uuid.uuid4().hex[:6]}"
    pbe.ok("batch-endpoint", "create", "--file", str(tiny_project.endpoint_yml), "--name", name)
    first = pbe.ok(
        "batch-deployment",
        "create",
        "--file",
        str(tiny_project.deployment_yml),
        "--endpoint-name",
        name,
        "--set-default",
    )
    second = pbe.ok(
        "batch-deployment",
        "update",
        "--file",
        str(tiny_project.deployment_yml),
        "--endpoint-name",
        name,
        "--set",
        "resources.instance_count=2",
    )
    assert second["code_configuration"]["code"] != first["code_configuration"]["code"]
    assert second["resources"]["instance_count"] == 2
    assert second["properties"]["is_default"] is True
    listed = pbe("batch-deployment", "list", "--endpoint-name", name, "-o", "table").out
    assert "tiny-dpl" in listed and "azureml:tiny-cluster" in listed
    shown = pbe.ok(
        "batch-endpoint", "show", "--name", name, "--query", "{Name:name, Defaults:defaults}"
    )
    assert shown == {"Name": name, "Defaults": {"deployment_name": "tiny-dpl"}}
    pbe.ok("batch-endpoint", "delete", "--name", name, "--yes")


def test_models_in_another_workspace(pbe, tiny_project, tmp_path):
    other = tmp_path / "other-workspace"
    made = pbe.ok(
        "model",
        "create",
        "--name",
        "elsewhere",
        "--path",
        str(tiny_project.model),
        "--workspace",
        str(other),
    )
    assert made["path"] == str(other / "models" / "elsewhere" / "1" / "model")
    assert pbe.ok("model", "list", "--workspace", str(other), "--query", "[].id") == [
        "azureml:elsewhere:1"
    ]
    assert "elsewhere" not in pbe.ok("model", "list", "--query", "[].name")


def test_an_inline_model_registers_a_new_version_per_deployment(pbe, tiny_project, tmp_path):
    import shutil

    folder = tmp_path / "inline"
    shutil.copytree(tiny_project.folder, folder, ignore=shutil.ignore_patterns("inputs"))
    text = (folder / "deployment.yml").read_text()
    model_name = f"inline-{uuid.uuid4().hex[:6]}"
    (folder / "deployment.yml").write_text(
        text.replace(
            "model: azureml:tiny-model@latest",
            f"model:\n  name: {model_name}\n  path: model-files/model\n  type: custom_model",
        )
    )
    name = f"inl-{uuid.uuid4().hex[:6]}"
    pbe.ok("batch-endpoint", "create", "--name", name)
    first = pbe.ok(
        "batch-deployment",
        "create",
        "--file",
        str(folder / "deployment.yml"),
        "--endpoint-name",
        name,
    )
    second = pbe.ok(
        "batch-deployment",
        "create",
        "--file",
        str(folder / "deployment.yml"),
        "--endpoint-name",
        name,
        "--name",
        "tiny-dpl-2",
    )
    assert (first["model"], second["model"]) == (
        f"azureml:{model_name}:1",
        f"azureml:{model_name}:2",
    )
    assert pbe.ok("model", "list", "--name", model_name, "--query", "[].version") == ["2", "1"]
    pbe.ok("batch-endpoint", "delete", "--name", name, "--yes")


def test_datastores(pbe, tmp_path, tiny_project):
    name = f"store_{uuid.uuid4().hex[:6]}"
    made = pbe.ok(
        "datastore", "create", "--name", name, "--type", "local", "--url", str(tmp_path / "store")
    )
    assert made["name"] == name.replace("_", "-") and made["type"] == "local"
    secret = "s3cr3t-value-123"
    pbe.ok(
        "datastore",
        "create",
        "--name",
        f"{name}-s3",
        "--type",
        "s3",
        "--url",
        "s3://bucket/prefix",
        "--key",
        "AKIAEXAMPLE",
        "--secret",
        secret,
    )
    shown = pbe("datastore", "show", "--name", f"{name}-s3")
    assert shown.code == 0 and secret not in shown.out and "AKIAEXAMPLE" not in shown.out
    names = pbe.ok("datastore", "list", "--query", "[].name")
    assert "workspaceblobstore" in names and name.replace("_", "-") in names
    unknown = pbe(
        "batch-endpoint",
        "invoke",
        "--name",
        "whatever-endpoint",
        "--input",
        "azureml://datastores/nope/paths/x",
    )
    assert unknown.code == 1  # the endpoint is checked first
    for store in (name, f"{name}-s3"):
        pbe.ok("datastore", "delete", "--name", store, "--yes")
    builtin = pbe("datastore", "delete", "--name", "workspaceblobstore", "--yes")
    assert builtin.code == 1 and "built in" in builtin.err
