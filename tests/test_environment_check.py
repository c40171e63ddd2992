"""A deployment's conda file checked against the environment scoring runs in."""

import sys

import pytest

from blocks.errors import MissingDependencyError
from scoring.environment import check_environment, parse_requirement, read_conda_file


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
    ("text", "conda", "name", "pinned"),
    [
        ("pytorch::pytorch=1.13", True, "torch", "1.13"),
        ("scikit_learn>=1.0", False, "scikit-learn", None),
        ("numpy=1.21.*", True, "numpy", None),
        ("pandas==2.1.0 ; python_version > '3'", False, "pandas", "2.1.0"),
        ("git+https://example.invalid/x.git", False, None, None),
    ],
)
def test_requirement_parsing(text, conda, name, pinned):
    req = parse_requirement(text, conda=conda)
    assert (req.name, req.pinned) == (name, pinned) if name else req is None


def test_unreadable_file_names_the_file(tmp_path):
    with pytest.raises(Exception, match="conda.yaml"):
        read_conda_file(conda_file(tmp_path, "dependencies: [unclosed"))
