"""A deployment's conda file checked against the environment scoring runs in."""

import importlib.util
import shutil
import sys
import uuid
from importlib import metadata
from pathlib import Path

import pytest
from packaging.version import Version
from support import make_model, write_script

from blocks.errors import MissingDependencyError
from scoring.azureml_runtime import is_platform_runtime
from scoring.dependencies import pip_name
from scoring.environment import (
    check_environment,
    check_model_folder,
    parse_requirement,
    read_conda_file,
)
from scoring.fork_server import ForkServer
from scoring.fork_server import available as fork_server_available
from scoring.process import ScoringFailure, ScoringProcess
from scoring.spec import ScoringProcessSpec


def conda_file(tmp_path, body: str):
    path = tmp_path / "conda.yaml"
    path.write_text(body)
    return path


def test_reference_pins_that_cannot_be_honoured_are_warnings(tmp_path):
    path = conda_file(
        tmp_path,
        """
name: mnist-env
channels: [conda-forge]
dependencies:
  - python=3.8.5
  - pip<22.0
  - pip:
    - torch==1.13.0
    - torchvision==0.14.0
    - pandas
    - pillow
""",
    )
    report = check_environment(path)
    assert report.ok
    text = "\n".join(report.messages())
    assert "pins python 3.8.5" in text
    assert "pins torch 1.13.0, which this environment cannot honour" in text
    report.raise_for_missing()


def test_missing_packages_fail_with_one_pip_line(tmp_path):
    path = conda_file(
        tmp_path,
        """
dependencies:
  - numpy
  - pip:
    - surely-not-installed-pkg==1.0
    - another_missing_one
""",
    )
    report = check_environment(path)
    assert not report.ok
    with pytest.raises(MissingDependencyError) as info:
        report.raise_for_missing()
    assert "lacks surely-not-installed-pkg, another-missing-one" in str(info.value)
    assert info.value.hint == "pip install another-missing-one surely-not-installed-pkg"


def test_different_pins_are_reported_with_the_fix(tmp_path):
    path = conda_file(tmp_path, "dependencies:\n  - pip:\n    - pyyaml==1.0.0\n")
    report = check_environment(path)
    assert report.ok
    [line] = report.messages()
    assert "pyyaml" in line and "file pins 1.0.0" in line
    assert line.endswith("pip install pyyaml==1.0.0")


def test_matching_python_gives_no_warning(tmp_path):
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (
        check_environment(conda_file(tmp_path, f"dependencies: [python={version}]")).messages()
        == []
    )


@pytest.mark.parametrize(
    ("text", "conda", "name", "wanted"),
    [
        ("pytorch::pytorch=1.13", True, "torch", "==1.13.*"),
        ("conda-forge/linux-64::numpy==1.26=py311h64a7726_0", True, "numpy", "==1.26"),
        ("numpy=1.26=py311h64a7726_0", True, "numpy", "==1.26"),
        ("numpy 1.26 py311h64a7726_0", True, "numpy", "==1.26"),
        ("numpy 1.26.*", True, "numpy", "==1.26.*"),
        ("numpy=1.21.*", True, "numpy", "==1.21.*"),
        ("numpy>=1.20,<2", True, "numpy", "<2,>=1.20"),
        ("numpy 1.25|1.26", True, "numpy", "==1.25 | ==1.26"),
        ("conda-forge::numpy[version='>=1.20,<2', build=py*]", True, "numpy", "<2,>=1.20"),
        ("numpy", True, "numpy", ""),
        ("scikit_learn>=1.0", False, "scikit-learn", ">=1.0"),
        ("pandas==2.1.0 ; python_version > '3'", False, "pandas", "==2.1.0"),
        ("Pillow[avif]~=10.0  # images", False, "pillow", "~=10.0"),
        ("torch==2.4.0 --hash=sha256:0123", False, "torch", "==2.4.0"),
        (
            "torch==1.13.0+cu117 -f https://download.pytorch.org/whl",
            False,
            "torch",
            "==1.13.0+cu117",
        ),
        ("mylib @ https://example.invalid/mylib-1.0-py3-none-any.whl", False, "mylib", ""),
        ("git+https://example.invalid/x.git", False, None, None),
        ("./wheels/local-1.0.tar.gz", False, None, None),
        ("--extra-index-url https://example.invalid/simple", False, None, None),
        ("-f https://example.invalid/wheels", False, None, None),
        ("--index-url https://example.invalid/simple", False, None, None),
        ("# a comment", False, None, None),
        ("", False, None, None),
    ],
)
def test_requirement_parsing(text, conda, name, wanted):
    req = parse_requirement(text, conda=conda)
    if name is None:
        assert req is None
    else:
        assert req.name == name
        assert " | ".join(str(spec) for spec in req.specifiers) == wanted


def test_unreadable_file_names_the_file(tmp_path):
    with pytest.raises(Exception, match="conda.yaml"):
        read_conda_file(conda_file(tmp_path, "dependencies: [unclosed"))


# --- Azure ML's runtime packages ------------------------------------------------------------

#: Azure's published mnist-classifier deployment-torch/environment/conda.yaml, as users bring it.
PLATFORM_MNIST_CONDA = """\
name: mnist-env
channels:
  - conda-forge
dependencies:
  - python=3.8.5
  - pip<22.0
  - pip:
    - torch==1.13.0
    - torchvision==0.14.0
    - pytorch-lightning
    - pandas
    - azureml-core
    - azureml-dataset-runtime[fuse]
"""


def test_the_platforms_own_conda_file_passes_with_warnings_and_one_info_line(tmp_path):
    report = check_environment(conda_file(tmp_path, PLATFORM_MNIST_CONDA))
    report.raise_for_missing()
    warnings = "\n".join(report.messages())
    assert "pins python 3.8.5" in warnings
    assert "pins torch 1.13.0, which this environment cannot honour" in warnings
    assert "pins torchvision 0.14.0, which this environment cannot honour" in warnings
    assert "azureml" not in warnings
    [info] = report.notes()
    assert info.startswith(
        f"{tmp_path / 'conda.yaml'}: skipped azureml-core, "
        "azureml-dataset-runtime[fuse]: Azure ML's own runtime"
    )
    assert "prefect-batch-endpoints provides in its place" in info


def test_every_runtime_package_is_skipped_and_other_azureml_packages_are_checked(tmp_path):
    runtime = [
        "azureml-defaults",
        "azureml-mlflow==1.50",
        "azureml_inference_server_http",
        "azureml-telemetry",
        "azureml-dataprep[pandas]>=4",
        "azureml-dataprep-rslex",
        "azureml-sdk",
        "azureml-pipeline-steps",
    ]
    body = "dependencies:\n  - pip:\n" + "".join(f"    - {line}\n" for line in runtime)
    report = check_environment(conda_file(tmp_path, body + "    - azureml-fsspec\n"))
    assert [req.name for req in report.missing] == ["azureml-fsspec"]
    assert len(report.skipped) == len(runtime)
    assert len(report.notes()) == 1


def test_is_platform_runtime_normalises_names():
    assert is_platform_runtime("AzureML_Core")
    assert is_platform_runtime("azureml.dataset.runtime")
    assert not is_platform_runtime("azureml-contrib-pipeline-steps")
    assert not is_platform_runtime("azure-ai-ml")


# --- versions, as pip and conda compare them --------------------------------------------------


def installed_numpy() -> Version:
    return Version(metadata.version("numpy"))


def test_a_requirement_the_installed_version_does_not_meet_is_reported_not_fatal(tmp_path):
    above = installed_numpy().major + 1
    path = conda_file(tmp_path, f"dependencies:\n  - pip:\n    - numpy>={above}\n")
    report = check_environment(path)
    report.raise_for_missing()
    [line] = report.messages()
    assert f"numpy {metadata.version('numpy')} (file pins >={above})" in line
    assert line.endswith(f"pip install 'numpy>={above}'")


def test_pip_double_equals_is_exact_and_conda_single_equals_is_a_prefix(tmp_path):
    have = installed_numpy()
    if len(have.release) < 3 or have.release[2] == 0:
        pytest.skip(f"numpy {have} has no non-zero micro version to leave out")
    minor = f"{have.major}.{have.minor}"
    cases = {
        f"  - pip:\n    - numpy=={minor}\n": False,  # pip: ==X.Y does not match X.Y.Z
        f"  - pip:\n    - numpy=={minor}.*\n": True,
        f"  - numpy={minor}\n": True,  # conda: =X.Y means X.Y.*
        f"  - numpy {minor}\n": False,  # conda match spec: a bare version is exact
        f"  - numpy=={minor}=py_0\n": False,
        f"  - numpy={have}=py_0\n": True,
        f"  - numpy {have} py_0\n": True,
    }
    for body, matches in cases.items():
        report = check_environment(conda_file(tmp_path, "dependencies:\n" + body))
        assert report.ok, body
        assert (report.messages() == []) is matches, body


def test_markers_false_here_skip_the_line(tmp_path):
    path = conda_file(
        tmp_path,
        "dependencies:\n  - pip:\n"
        "    - surely-missing-on-old-pythons ; python_version < '3.0'\n"
        "    - pywin32-surely-missing ; sys_platform == 'win32'\n"
        f"    - pyyaml ; python_version >= '{sys.version_info.major}.{sys.version_info.minor}'\n"
        "    - another-surely-missing ; python_version >= '3.0'\n",
    )
    report = check_environment(path)
    assert [req.name for req in report.missing] == ["another-surely-missing"]


def test_extras_and_urls_check_only_the_name(tmp_path):
    path = conda_file(
        tmp_path,
        "dependencies:\n  - pip:\n"
        "    - pandas[performance]\n"
        "    - pyyaml @ https://example.invalid/PyYAML-6.0-cp311-none-any.whl\n"
        "    - git+https://example.invalid/somewhere.git\n"
        "    - surely-missing-pkg @ https://example.invalid/x.whl\n",
    )
    report = check_environment(path)
    assert [req.name for req in report.missing] == ["surely-missing-pkg"]
    assert report.messages() == []


def test_pip_options_and_requirement_files(tmp_path):
    (tmp_path / "requirements.txt").write_text(
        "# the script's own needs\n\n-r more.txt\nsurely-missing-from-r==1.0  # pinned\n"
    )
    (tmp_path / "more.txt").write_text("pyyaml\n-r requirements.txt\n")  # a cycle is fine
    path = conda_file(
        tmp_path,
        """
channels: [conda-forge, defaults]
dependencies:
  - pip
  - pip:
    - --extra-index-url https://example.invalid/simple
    - --index-url https://example.invalid/simple
    - -f https://example.invalid/wheels
    - -r requirements.txt
    - -r not-there.txt
""",
    )
    report = check_environment(path)
    assert [req.name for req in report.missing] == ["surely-missing-from-r"]
    with pytest.raises(MissingDependencyError, match=r"\(from .*requirements.txt\)"):
        report.raise_for_missing()
    [note] = report.notes()
    assert note.startswith(f"{path}: -r not-there.txt: no such file")
    assert "not checked" in note


def test_an_unreadable_line_is_a_warning_naming_the_file(tmp_path):
    report = check_environment(conda_file(tmp_path, "dependencies:\n  - pip:\n    - numpy>=>2\n"))
    assert report.ok
    [line] = report.messages()
    assert "conda.yaml: not checked: cannot read 'numpy>=>2'" in line


# --- MLflow model folders --------------------------------------------------------------------


def mlflow_model(folder, requirements: str | None, conda: str | None = None):
    folder.mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: x\n")
    if requirements is not None:
        (folder / "requirements.txt").write_text(requirements)
    if conda is not None:
        (folder / "conda.yaml").write_text(conda)
    return folder


def test_an_mlflow_folder_is_checked_through_its_requirements_file(tmp_path):
    model = mlflow_model(
        tmp_path / "model",
        "azureml-mlflow==1.50.0\npyyaml\nsurely-missing-model-dep==0.1\n",
        conda="dependencies:\n  - python=3.8\n  - pip:\n    - other-missing\n",
    )
    report = check_model_folder(model)
    assert report.source == str(model / "requirements.txt")
    with pytest.raises(MissingDependencyError) as info:
        report.raise_for_missing()
    assert str(model / "requirements.txt") in str(info.value)
    assert info.value.hint == "pip install surely-missing-model-dep"
    [note] = report.notes()
    assert "skipped azureml-mlflow" in note


def test_an_mlflow_folder_without_requirements_uses_its_conda_file(tmp_path):
    version_folder = tmp_path / "registered" / "1"  # the registry's layout: one folder inside
    mlflow_model(
        version_folder / "model",
        None,
        conda="dependencies:\n  - python=3.8\n  - pip:\n    - mlflow-surely-missing\n",
    )
    report = check_model_folder(version_folder)
    assert report.source == str(version_folder / "model" / "conda.yaml")
    assert [req.name for req in report.missing] == ["mlflow-surely-missing"]
    assert "pins python 3.8.*" in report.messages()[0]


def test_a_folder_without_mlmodel_is_not_checked(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "requirements.txt").write_text("surely-missing\n")
    assert check_model_folder(tmp_path / "model") is None
    assert check_model_folder(tmp_path / "model" / "requirements.txt") is None


# --- a script that imports the SDK, in a real scoring process --------------------------------


def sdk_spec(tmp_path, body: str) -> ScoringProcessSpec:
    return ScoringProcessSpec(
        code_dir=str(write_script(tmp_path / "code", body)),
        scoring_script="score.py",
        model_dir=str(make_model(tmp_path / "registered").parent),
        output_dir=str(tmp_path / "out"),
    )


SDK_MESSAGE = (
    "azureml.core is the Azure ML SDK (azureml-core), which prefect-batch-endpoints does not "
    "provide: batch deployments here run without it; remove the import or install "
    "azureml-core yourself"
)


@pytest.mark.skipif(
    importlib.util.find_spec("azureml") is not None, reason="an azureml package is installed here"
)
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "forked",
    [
        False,
        pytest.param(
            True,
            marks=pytest.mark.skipif(
                not fork_server_available(), reason="no fork server on this platform"
            ),
        ),
    ],
)
def test_a_script_importing_the_sdk_at_init_fails_saying_so(tmp_path, forked):
    spec = sdk_spec(
        tmp_path,
        "import numpy\nfrom azureml.core import Run\ndef init(): pass\ndef run(mb): return mb\n",
    )
    server = ForkServer(spec, spec.environment()) if forked else None
    try:
        with pytest.raises(ScoringFailure) as info:
            ScoringProcess(spec, server.address if server else None).start()
    finally:
        if server is not None:
            server.stop()
    assert info.value.category == "init_error"
    assert info.value.detail == f"ModuleNotFoundError: {SDK_MESSAGE}"
    assert info.value.missing_module == "azureml.core"


@pytest.mark.skipif(
    importlib.util.find_spec("azureml") is not None, reason="an azureml package is installed here"
)
@pytest.mark.timeout(120)
def test_a_script_importing_the_sdk_in_run_fails_its_mini_batch_saying_so(tmp_path):
    in_run = sdk_spec(
        tmp_path,
        """
        import importlib.util
        def init():
            assert importlib.util.find_spec("azureml") is None  # probes still see nothing
        def run(mb):
            import azureml.core
    """,
    )
    process = ScoringProcess(in_run)
    process.start()
    try:
        with pytest.raises(ScoringFailure) as info:
            process.run(["a.png"], timeout=60, want_rows=True)
    finally:
        process.kill()
    assert info.value.category == "user_error"
    assert SDK_MESSAGE in info.value.detail
    assert pip_name(info.value.missing_module) == "azureml-core"


@pytest.mark.timeout(120)
def test_an_azureml_package_that_is_there_is_used_untouched(tmp_path):
    spec = sdk_spec(
        tmp_path,
        """
        from azureml.core import MARK
        def init(): pass
        def run(mb): return [MARK for _ in mb]
    """,
    )
    package = Path(spec.code_dir) / "azureml" / "core"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("MARK = 'the real one'\n")
    process = ScoringProcess(spec)
    process.start()
    try:
        outcome = process.run(["a.png"], timeout=60, want_rows=True)
    finally:
        process.kill()
    assert outcome.rows == b"the real one\n"


# --- through `pbe batch-deployment create` --------------------------------------------------


@pytest.mark.timeout(300)
def test_create_takes_the_platforms_folder_and_checks_an_mlflow_model(pbe, tiny_project, tmp_path):
    endpoint = f"envchk-{uuid.uuid4().hex[:6]}"
    pbe.ok("batch-endpoint", "create", "--file", str(tiny_project.endpoint_yml), "--name", endpoint)
    folder = tmp_path / "platform-folder"
    shutil.copytree(tiny_project.folder, folder, ignore=shutil.ignore_patterns("inputs"))
    (folder / "conda.yaml").write_text(PLATFORM_MNIST_CONDA)
    with (folder / "deployment.yml").open("a") as handle:
        handle.write("environment: {name: env, conda_file: conda.yaml}\n")
    create = [
        "batch-deployment",
        "create",
        "--file",
        str(folder / "deployment.yml"),
        "--endpoint-name",
        endpoint,
    ]

    result = pbe(*create, "--name", "platform-dpl")
    assert result.code == 0, result.err
    [info] = [line for line in result.err.splitlines() if line.startswith("INFO: ")]
    assert "skipped azureml-core, azureml-dataset-runtime[fuse]" in info
    assert "pins torch 1.13.0, which this environment cannot honour" in result.err

    model = mlflow_model(
        tmp_path / "mlflow-model", "mlflow-surely-missing==2.9.2\nazureml-mlflow==1.54.0\n"
    )
    name = f"mlflow-{uuid.uuid4().hex[:6]}"
    pbe.ok("model", "create", "--name", name, "--type", "mlflow_model", "--path", str(model))
    result = pbe(*create, "--name", "mlflow-dpl", "--set", f"model=azureml:{name}@latest")
    assert result.code == 1, result.err
    assert "requirements.txt: the scoring environment lacks mlflow-surely-missing" in result.err
    assert "Hint: pip install mlflow-surely-missing" in result.err
