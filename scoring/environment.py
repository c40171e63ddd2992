"""Checking a deployment's ``conda_file`` against the environment scoring runs in.

Scoring processes run in this Python environment, not in a conda environment built from
the file. So the file is read as a statement of needs: every dependency it names must be
importable here. What is missing fails the check with the one ``pip install`` line that
fixes it; versions pinned differently are reported with the same kind of line but do not
fail; pins that cannot be honoured in a running environment (the Python version, the
torch family, CUDA builds) are warnings.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from blocks.errors import MissingDependencyError, SpecError

#: Packages whose pins a running environment cannot follow (binary builds tied to CUDA and
#: the interpreter); a different version is a warning, not a failure.
_UNPINNABLE = {
    "python",
    "torch",
    "torchvision",
    "torchaudio",
    "pytorch",
    "cudatoolkit",
    "pytorch-cuda",
    "tensorflow",
    "tensorflow-gpu",
    "tensorflow-cpu",
}
#: Conda-only or tooling entries that are not Python packages to import.
_NOT_PACKAGES = {"pip", "setuptools", "wheel", "conda", "mkl", "libgcc", "cudnn", "nccl"}
#: Conda package names and their pip equivalents.
_CONDA_TO_PIP = {"pytorch": "torch", "py-opencv": "opencv-python-headless"}
_REQUIREMENT = re.compile(
    r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(?:(==|=|>=|<=|~=|!=|>|<)\s*([^\s;,]+))?"
)


@dataclass(frozen=True)
class Requirement:
    """One dependency of the file: its pip name and, when pinned exactly, the version."""

    name: str
    pinned: str | None = None

    def pip_line(self) -> str:
        return f"{self.name}=={self.pinned}" if self.pinned else self.name


@dataclass
class EnvironmentReport:
    """The outcome of checking one conda file."""

    source: str
    missing: list[Requirement] = field(default_factory=list)
    different: list[tuple[Requirement, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing

    def messages(self) -> list[str]:
        """Human-readable lines: warnings and differing pins (the failure is raised)."""
        lines = list(self.warnings)
        if self.different:
            pins = ", ".join(
                f"{req.name} {have} (file pins {req.pinned})" for req, have in self.different
            )
            fix = " ".join(req.pip_line() for req, _ in self.different)
            lines.append(
                f"{self.source}: pinned differently here: {pins}. "
                f"To match the file: pip install {fix}"
            )
        return lines

    def raise_for_missing(self) -> None:
        if self.missing:
            names = ", ".join(req.name for req in self.missing)
            raise MissingDependencyError(
                f"{self.source}: the scoring environment lacks {names}.",
                packages=[req.name for req in self.missing],
            )


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def parse_requirement(text: str, *, conda: bool) -> Requirement | None:
    """A pip or conda dependency string as a :class:`Requirement` (None if not a package)."""
    text = text.strip()
    if conda and "::" in text:
        text = text.split("::", 1)[1]
    match = _REQUIREMENT.match(text)
    if not match or text.startswith(("-", "git+", "http", "file:")):
        return None
    name, operator, version = match.groups()
    name = _CONDA_TO_PIP.get(_canonical(name), _canonical(name))
    pinned = version if operator in ("==", "=") else None
    if conda and pinned and operator == "=" and pinned.endswith(".*"):
        pinned = None
    return Requirement(name=name, pinned=pinned)


def read_conda_file(path: str | Path) -> list[Requirement]:
    """The Python package requirements a conda file names (conda and pip sections)."""
    try:
        data: Any = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(
            f"cannot read the conda file: {exc}",
            source=str(path),
            key="environment.conda_file",
            hint="point environment.conda_file at a readable conda YAML file",
        ) from exc
    dependencies = (data or {}).get("dependencies") or []
    requirements: list[Requirement] = []
    for entry in dependencies:
        if isinstance(entry, dict):
            for text in entry.get("pip") or []:
                if (req := parse_requirement(str(text), conda=False)) is not None:
                    requirements.append(req)
        elif (req := parse_requirement(str(entry), conda=True)) is not None:
            requirements.append(req)
    return requirements


def check_environment(path: str | Path) -> EnvironmentReport:
    """Compare a conda file with the running environment (see the module docstring)."""
    report = EnvironmentReport(source=str(path))
    for req in read_conda_file(path):
        if req.name in _NOT_PACKAGES:
            continue
        if req.name == "python":
            here = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
            if req.pinned and not here.startswith(req.pinned.rstrip(".*")):
                report.warnings.append(
                    f"{path}: pins python {req.pinned}; scoring runs on Python {here}."
                )
            continue
        have = _installed_version(req.name)
        if have is None and req.name == "tensorflow":
            have = _installed_version("tensorflow-cpu")
        if have is None:
            report.missing.append(req)
        elif req.pinned and not _same_version(have, req.pinned):
            if req.name in _UNPINNABLE:
                report.warnings.append(
                    f"{path}: pins {req.name} {req.pinned}, which this environment cannot "
                    f"honour; scoring uses {req.name} {have}."
                )
            else:
                report.different.append((req, have))
    return report


def _same_version(installed: str, pinned: str) -> bool:
    installed = installed.split("+", 1)[0]
    if pinned.endswith(".*"):
        return installed.startswith(pinned[:-1])
    return installed == pinned or installed.startswith(pinned + ".")
