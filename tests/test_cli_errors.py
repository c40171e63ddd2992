"""What ``pbe`` says when something is wrong: one line, a hint, exit code 1, no traceback.

Runs against the session's embedded Prefect server; the CLI runs in-process except where
the exit code and the absence of a traceback of a real ``pbe`` process are the point.
"""

from __future__ import annotations

import shutil
import uuid

import pytest

pytestmark = pytest.mark.timeout(300)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _error(result, *phrases: str) -> str:
    assert result.code == 1, (result.code, result.out, result.err)
    assert "Traceback" not in result.err
    first, *rest = result.err.strip().splitlines()
    assert first.startswith("ERROR: "), result.err
    assert any(line.startswith("Hint: ") for line in rest), result.err
    for phrase in phrases:
        assert phrase in result.err, result.err
    return result.err


@pytest.fixture(scope="module")
def endpoint(pbe, tiny_project) -> str:
    """An endpoint with one deployment, ``tiny-dpl``, that is NOT its default."""
    name = _unique("errs")
    pbe.ok("batch-endpoint", "create", "--file", str(tiny_project.endpoint_yml), "--name", name)
    pbe.ok(
        "batch-deployment",
        "create",
        "--file",
        str(tiny_project.deployment_yml),
        "--endpoint-name",
        name,
    )
    return name


def test_unknown_endpoint_is_one_line_with_the_known_ones(pbe, endpoint):
    result = pbe.run("batch-endpoint", "show", "--name", "no-such-endpoint")
    err = _error(result, "endpoint 'no-such-endpoint' not found", endpoint)
    assert result.out == ""
    assert len(err.strip().splitlines()) == 2


def test_debug_adds_the_traceback(pbe, endpoint):
    result = pbe.run("batch-endpoint", "show", "--name", "no-such-endpoint", "--debug")
    assert result.code == 1
    assert "Traceback" in result.err and "NotFoundError" in result.err


def test_unknown_deployment_lists_the_endpoints_deployments(pbe, endpoint):
    _error(
        pbe("batch-deployment", "show", "--name", "nope-dpl", "--endpoint-name", endpoint),
        "deployment 'nope-dpl' not found",
        "tiny-dpl",
    )
    _error(
        pbe(
            "batch-endpoint",
            "invoke",
            "--name",
            endpoint,
            "--deployment-name",
            "nope-dpl",
            "--input",
            ".",
        ),
        "deployment 'nope-dpl' not found",
    )


def test_invoking_without_a_default_names_the_endpoint_and_its_deployments(
    pbe, endpoint, tiny_project
):
    err = _error(
        pbe("batch-endpoint", "invoke", "--name", endpoint, "--input", str(tiny_project.inputs)),
        "no default deployment",
        "tiny-dpl",
    )
    assert endpoint in err
    assert pbe.ok("batch-endpoint", "list-jobs", "--name", endpoint) == []


def test_unknown_model_version(pbe, endpoint, tiny_project):
    _error(
        pbe(
            "batch-deployment",
            "create",
            "--file",
            str(tiny_project.deployment_yml),
            "--endpoint-name",
            endpoint,
            "--name",
            "other-dpl",
            "--set",
            "model=azureml:tiny-model:99",
        ),
        "model version 'tiny-model:99' not found",
        "tiny-model:1",
    )
    _error(pbe("model", "show", "--name", "tiny-model", "--version", "99"), "tiny-model:1")
    _error(pbe("model", "show", "--name", "no-such-model"), "model 'no-such-model' not found")


def test_unknown_compute_lists_the_known_ones(pbe, endpoint, tiny_project):
    _error(
        pbe(
            "batch-deployment",
            "create",
            "--file",
            str(tiny_project.deployment_yml),
            "--endpoint-name",
            endpoint,
            "--name",
            "other-dpl",
            "--set",
            "compute=azureml:gpu-cluster",
        ),
        "compute 'gpu-cluster' not found",
        "tiny-cluster",
    )
    _error(pbe("compute", "show", "-n", "gpu-cluster"), "tiny-cluster")


def test_deployment_for_a_missing_endpoint(pbe, tiny_project):
    _error(
        pbe(
            "batch-deployment",
            "create",
            "--file",
            str(tiny_project.deployment_yml),
            "--endpoint-name",
            "missing-endpoint",
        ),
        "endpoint 'missing-endpoint' not found",
    )
    # the YAML's own endpoint_name is used when --endpoint-name is not given
    _error(
        pbe("batch-deployment", "create", "--file", str(tiny_project.deployment_yml)),
        "endpoint 'tiny-endpoint' not found",
    )


def test_duplicate_names(pbe, endpoint, tiny_project):
    _error(
        pbe(
            "batch-endpoint", "create", "--file", str(tiny_project.endpoint_yml), "--name", endpoint
        ),
        f"endpoint '{endpoint}' already exists",
    )
    _error(
        pbe(
            "batch-endpoint",
            "create",
            "--file",
            str(tiny_project.endpoint_yml),
            "--name",
            endpoint.upper(),
        ),
        "already exists",
    )  # names are case-insensitive
    _error(
        pbe(
            "batch-deployment",
            "create",
            "--file",
            str(tiny_project.deployment_yml),
            "--endpoint-name",
            endpoint,
        ),
        "already exists",
        "batch-deployment update",
    )
    _error(
        pbe(
            "model",
            "create",
            "--name",
            "tiny-model",
            "--version",
            "1",
            "--path",
            str(tiny_project.model),
        ),
        "model version 'tiny-model:1' already exists",
    )
    _error(
        pbe(
            "compute",
            "create",
            "-n",
            "tiny-cluster",
            "--type",
            "address",
            "--address",
            "tcp://127.0.0.1:8786",
        ),
        "compute 'tiny-cluster' already exists",
    )


def test_yaml_whose_files_are_missing(pbe, endpoint, tiny_project, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_project.folder, folder, ignore=shutil.ignore_patterns("inputs"))
    shutil.rmtree(folder / "code")
    _error(
        pbe(
            "batch-deployment",
            "create",
            "--file",
            str(folder / "deployment.yml"),
            "--endpoint-name",
            endpoint,
            "--name",
            "broken-dpl",
        ),
        "deployment.yml",
        "code_configuration.code",
        "does not exist",
    )
    _error(
        pbe("batch-endpoint", "create", "--file", str(tmp_path / "nope.yml")),
        "nope.yml",
        "cannot read the file",
    )
    names = [d["name"] for d in pbe.ok("batch-deployment", "list", "--endpoint-name", endpoint)]
    assert names == ["tiny-dpl"]


def test_bad_values_and_options(pbe, endpoint, tiny_project):
    _error(
        pbe("batch-endpoint", "create", "--name", "9-starts-with-a-digit"), "invalid endpoint name"
    )
    _error(
        pbe(
            "batch-endpoint",
            "update",
            "--name",
            endpoint,
            "--set",
            "defaults.deployment_name=nope-dpl",
        ),
        "deployment 'nope-dpl' not found",
    )
    _error(
        pbe(
            "batch-endpoint",
            "invoke",
            "--name",
            endpoint,
            "--deployment-name",
            "tiny-dpl",
            "--input",
            str(tiny_project.inputs),
            "--set",
            "mini_batch_sise=3",
        ),
        "Did you mean",
        "mini_batch_size",
    )
    _error(
        pbe(
            "batch-endpoint",
            "invoke",
            "--name",
            endpoint,
            "--deployment-name",
            "tiny-dpl",
            "--input",
            str(tiny_project.inputs / "nope"),
        ),
        "does not exist",
    )
    _error(
        pbe(
            "batch-endpoint",
            "invoke",
            "--name",
            endpoint,
            "--deployment-name",
            "tiny-dpl",
            "--input",
            "azureml://datastores/nope/paths/images",
        ),
        "datastore 'nope' not found",
        "workspaceblobstore",
    )
    _error(
        pbe(
            "batch-endpoint",
            "update",
            "--name",
            endpoint,
            "--schedule",
            "every minute",
            "--schedule-input",
            str(tiny_project.inputs),
        ),
        "invalid cron expression",
    )
    _error(pbe("batch-endpoint", "show", "--name", endpoint, "--query", "[[["), "--query")
    _error(pbe("job", "show", "-n", "batchjob-that-never-ran"), "job 'batchjob-that-never-ran'")
    assert pbe("batch-endpoint", "show").code == 2  # usage error: the message names --name


def test_the_default_deployment_cannot_be_deleted_and_delete_needs_yes(pbe, tiny_project):
    name = _unique("dflt")
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
    _error(
        pbe("batch-deployment", "delete", "--name", "tiny-dpl", "--endpoint-name", name, "--yes"),
        "is the default",
        "defaults.deployment_name",
    )
    _error(pbe("batch-endpoint", "delete", "--name", name), "--yes")
    pbe.ok("batch-endpoint", "delete", "--name", name, "--yes")
    _error(pbe("batch-endpoint", "show", "--name", name), "not found")


def test_a_conda_file_with_missing_packages_is_refused_with_the_pip_line(
    pbe, endpoint, tiny_project, tmp_path
):
    folder = tmp_path / "needs-more"
    shutil.copytree(tiny_project.folder, folder, ignore=shutil.ignore_patterns("inputs"))
    (folder / "conda.yaml").write_text(
        "dependencies:\n  - python=3.8.5\n  - pip:\n    - torch==1.13.0\n"
        "    - surely-missing-package==2.0\n"
    )
    with (folder / "deployment.yml").open("a") as handle:
        handle.write("environment: {name: env, conda_file: conda.yaml}\n")
    with_env = ["--name", "env-dpl", "--endpoint-name", endpoint]
    error = _error(
        pbe("batch-deployment", "create", "--file", str(folder / "deployment.yml"), *with_env),
        "lacks surely-missing-package",
    )
    assert "Hint: pip install surely-missing-package" in error
    (folder / "conda.yaml").write_text(
        "dependencies:\n  - python=3.8.5\n  - pip:\n    - torch==1.13.0\n    - pyyaml\n"
    )
    result = pbe("batch-deployment", "create", "--file", str(folder / "deployment.yml"), *with_env)
    assert result.code == 0, result.err
    assert "pins python 3.8.5" in result.err
    assert "pins torch 1.13.0, which this environment cannot honour" in result.err


@pytest.mark.parametrize(
    ("case", "phrases"),
    [
        ("empty-folder", ["is empty"]),
        ("file-as-folder", ["is a file, not a folder", "uri_file"]),
        ("folder-as-file", ["is a folder, not a file", "uri_folder"]),
        ("folder-of-folders", ["holds only subfolders (2)"]),
        ("output-is-a-file", ["the output path is a file"]),
        ("output-under-a-file", ["the output path lies under a file"]),
    ],
)
def test_what_can_be_checked_at_invoke_is(pbe, endpoint, tmp_path, case, phrases):
    (tmp_path / "empty").mkdir()
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("1")
    for sub in ("x", "y"):
        (tmp_path / "nested" / sub).mkdir(parents=True)
    (tmp_path / "taken").write_text("a file")
    good = ["--input", str(tmp_path / "files"), "--output-path", str(tmp_path / "out")]
    args = {
        "empty-folder": ["--input", str(tmp_path / "empty")],
        "file-as-folder": ["--input", str(tmp_path / "files" / "a.txt")],
        "folder-as-file": ["--input", str(tmp_path / "files"), "--input-type", "uri_file"],
        "folder-of-folders": ["--input", str(tmp_path / "nested")],
        "output-is-a-file": [*good[:2], "--output-path", str(tmp_path / "taken")],
        "output-under-a-file": [*good[:2], "--output-path", str(tmp_path / "taken" / "out")],
    }[case]
    before = pbe.ok("batch-endpoint", "list-jobs", "--name", endpoint, "--query", "length(@)")
    _error(pbe("batch-endpoint", "invoke", "--name", endpoint, "--deployment-name", "tiny-dpl",
               *args), *phrases)  # fmt: skip
    after = pbe.ok("batch-endpoint", "list-jobs", "--name", endpoint, "--query", "length(@)")
    assert after == before  # refused before any job was created
    assert not (tmp_path / "out").exists()
