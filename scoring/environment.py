"""Checking a deployment's environment files against the environment scoring runs in.

Scoring processes run in this Python environment, not in a conda environment built from
the file. So the file is read as a statement of needs: every dependency it names must be
importable here. What is missing fails the check with the one ``pip install`` line that
fixes it; versions the file asks for that are not the ones installed are reported with the
same kind of line but do not fail; pins that cannot be honoured in a running environment
(the Python version, the torch and TensorFlow families, CUDA builds) are warnings.
Packages of Azure ML's own runtime (:mod:`scoring.azureml_runtime`), which conda files
name because the platform's docs require them, are skipped with one info line.

The files are read as their tools read them: ``packaging`` parses pip lines (PEP 508:
specifiers, extras, environment markers, ``name @ URL``), and conda match specs are
translated to PEP 440 first (``name=1.2`` is ``1.2.*``, ``name==1.2=build`` and
``name 1.2 build`` are exactly 1.2, ``|`` separates alternatives). A pip line whose marker is
false here is skipped; ``-r FILE`` is read relative to the file that names it; other option
lines (``--extra-index-url``, ``-f``, ``-i``, ``-e``, …) are not requirements. An MLflow
model folder (one with an ``MLmodel`` file) is checked through its ``requirements.txt``, or
its ``conda.yaml`` when it has none (:func:`check_model_folder`).
"""

from __future__ import annotations

import platform
import re
import shlex
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.markers import Marker
from packaging.requirements import InvalidRequirement
from packaging.requirements import Requirement as PipRequirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from blocks.errors import MissingDependencyError, SpecError
from scoring.azureml_runtime import canonical, is_platform_runtime
from scoring.mlmodel import mlflow_model_folder, read_mlmodel

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
#: Packages another distribution provides under the same import name (``import mlflow``).
_ALSO_PROVIDED_BY = {"tensorflow": "tensorflow-cpu", "mlflow": "mlflow-skinny"}
#: Characters that end a conda package name (conda's own rule).
_CONDA_NAME_END = " =<>!~"
#: What a pip line that names no package but a location looks like.
_LOCATION_PREFIXES = (".", "/", "~", "file:", "git+", "hg+", "svn+", "bzr+", "http:", "https:")


@dataclass(frozen=True)
class Requirement:
    """One dependency of a file: its pip name and the versions it accepts.

    ``specifiers`` are alternatives (conda's ``|``); empty means any version. ``origin`` is
    the file that names it.
    """

    name: str
    specifiers: tuple[SpecifierSet, ...] = ()
    extras: tuple[str, ...] = ()
    marker: Marker | None = None
    url: str | None = None
    origin: str = ""

    @property
    def pinned(self) -> str | None:
        """The version, when the requirement asks for exactly one (``==1.2.3``)."""
        if len(self.specifiers) == 1 and len(self.specifiers[0]) == 1:
            [spec] = list(self.specifiers[0])
            if spec.operator in ("==", "===") and not spec.version.endswith("*"):
                return spec.version
        return None

    @property
    def wanted(self) -> str:
        """The accepted versions, as shown to the user (``1.13.0``, ``1.26.*``, ``>=2``)."""
        shown = []
        for alternative in self.specifiers:
            specs = list(alternative)
            if len(specs) == 1 and specs[0].operator == "==":
                shown.append(specs[0].version)
            else:
                shown.append(str(alternative))
        return " | ".join(shown) or "any version"

    @property
    def display_name(self) -> str:
        """The name with its extras, as written (``azureml-dataset-runtime[fuse]``)."""
        return self.name + (f"[{','.join(self.extras)}]" if self.extras else "")

    def applies(self) -> bool:
        """False when the line's environment marker is false for this interpreter."""
        return self.marker is None or self.marker.evaluate()

    def allows(self, version: str) -> bool | None:
        """Whether ``version`` is accepted (as pip compares); None if it cannot be compared."""
        if not self.specifiers:
            return True
        try:
            have = Version(version)
        except InvalidVersion:
            return None
        return any(spec.contains(have, prereleases=True) for spec in self.specifiers)

    def pip_line(self) -> str:
        """The ``pip install`` argument that gets a matching version (shell-quoted)."""
        spec = str(self.specifiers[0]) if self.specifiers else ""
        return shlex.quote(self.display_name + spec)


@dataclass
class EnvironmentReport:
    """The outcome of checking one environment file."""

    source: str
    missing: list[Requirement] = field(default_factory=list)
    different: list[tuple[Requirement, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[Requirement] = field(default_factory=list)
    info: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing

    def messages(self) -> list[str]:
        """Warning lines: pins not honoured and differing versions (the failure is raised)."""
        lines = list(self.warnings)
        if self.different:
            pins = ", ".join(
                f"{req.name} {have} (file pins {req.wanted})" for req, have in self.different
            )
            fix = " ".join(req.pip_line() for req, _ in self.different)
            lines.append(
                f"{self.source}: pinned differently here: {pins}. "
                f"To match the file: pip install {fix}"
            )
        return lines

    def notes(self) -> list[str]:
        """Info lines: what was skipped and why (Azure ML's runtime, unreadable ``-r`` files)."""
        lines = list(self.info)
        if self.skipped:
            names = ", ".join(dict.fromkeys(req.display_name for req in self.skipped))
            lines.append(
                f"{self.source}: skipped {names}: Azure ML's own runtime, which "
                "prefect-batch-endpoints provides in its place (a script that imports "
                "azureml.* without the package installed fails with a message saying so)."
            )
        return lines

    def raise_for_missing(self) -> None:
        if self.missing:
            names = ", ".join(
                req.name + ("" if req.origin == self.source else f" (from {req.origin})")
                for req in self.missing
            )
            raise MissingDependencyError(
                f"{self.source}: the scoring environment lacks {names}.",
                packages=[shlex.quote(req.display_name) for req in self.missing],
            )


# --- reading requirement lines --------------------------------------------------------------


def _pip_name(name: str) -> str:
    name = canonical(name)
    return _CONDA_TO_PIP.get(name, name)


def _strip_comment(line: str) -> str:
    """A pip line without its comment (``#`` at the start or after whitespace)."""
    if line.lstrip().startswith("#"):
        return ""
    for separator in (" #", "\t#"):
        line = line.split(separator, 1)[0]
    return line.strip()


def parse_requirement(text: str, *, conda: bool) -> Requirement | None:
    """A pip line or conda match spec as a :class:`Requirement`.

    None for what names no package: blank lines, comments, option lines (``-r`` is read by
    the file readers), URLs and paths without a name. Raises ValueError for a line that is
    neither a requirement nor one of those.
    """
    if conda:
        return _conda_requirement(text)
    line = _strip_comment(text)
    if not line or line.startswith("-"):
        return None
    line = re.split(r"\s+(?=-)", line, maxsplit=1)[0]  # per-line options: --hash=…, -f URL
    try:
        req = PipRequirement(line)
    except InvalidRequirement:
        if line.lower().startswith(_LOCATION_PREFIXES) or "://" in line:
            return None
        raise
    return Requirement(
        name=_pip_name(req.name),
        specifiers=(req.specifier,) if req.specifier else (),
        extras=tuple(sorted(req.extras)),
        marker=req.marker,
        url=req.url,
    )


def _conda_requirement(text: str) -> Requirement | None:
    """A conda match spec (``[channel::]name[ version[ build]]``) as a Requirement."""
    spec = _strip_comment(text)
    if not spec:
        return None
    if "::" in spec:
        spec = spec.split("::", 1)[1]
    spec, _, brackets = spec.partition("[")  # numpy[version='>=1.20,<2', build=py*]
    end = min((i for i, ch in enumerate(spec) if ch in _CONDA_NAME_END), default=len(spec))
    name, rest = spec[:end], spec[end:].strip()
    if not name:
        raise ValueError(f"no package name in {text!r}")
    version, build = _conda_version_and_build(rest)
    keys = _bracket_keys(brackets.rstrip().removesuffix("]"))
    version, build = keys.get("version", version), keys.get("build", build)
    return Requirement(name=_pip_name(name), specifiers=_conda_specifiers(version, build))


def _bracket_keys(text: str) -> dict[str, str]:
    """The ``key=value`` pairs of a conda spec's bracket section (values may be quoted)."""
    keys: dict[str, str] = {}
    lexer = shlex.shlex(text, posix=True, punctuation_chars="=,")
    lexer.wordchars += ".*<>!~|-+"
    tokens = list(lexer)
    for i in range(len(tokens) - 2):
        if tokens[i + 1] == "=" and (i == 0 or tokens[i - 1] == ","):
            keys[tokens[i]] = tokens[i + 2]
    return keys


def _conda_version_and_build(rest: str) -> tuple[str, str | None]:
    """Split ``==1.2=py38_0``, ``=1.2``, ``1.2 py38_0``, ``>=1.2,<2`` into version and build."""
    if not rest:
        return "", None
    if " " in rest:
        version, _, build = rest.partition(" ")
        return version, build.strip() or None
    if rest.startswith("="):
        operator = "==" if rest.startswith("==") else "="
        version, _, build = rest[len(operator) :].partition("=")
        return operator + version, build or None
    return rest, None


def _wildcard(version: str) -> str:
    return version.rstrip("*").rstrip(".") + ".*"


def _conda_clause(clause: str, *, exact: bool) -> str:
    """One conda version clause in PEP 440: ``=1.2`` → ``==1.2.*``, ``1.2*`` → ``==1.2.*``."""
    for operator in ("==", "!=", ">=", "<=", "~=", ">", "<"):
        if clause.startswith(operator):
            version = clause[len(operator) :]
            if "*" in version:
                version = _wildcard(version) if operator in ("==", "!=") else version.rstrip(".*")
            return operator + version
    if clause.startswith("="):  # conda's fuzzy pin, unless a build string makes it exact
        version = clause[1:]
        return "==" + (version if exact and "*" not in version else _wildcard(version))
    return "==" + (_wildcard(clause) if "*" in clause else clause)


def _conda_specifiers(version: str, build: str | None) -> tuple[SpecifierSet, ...]:
    if version in ("", "*"):
        return ()
    alternatives = []
    for alternative in version.split("|"):
        clauses = [c.strip() for c in alternative.split(",") if c.strip()]
        try:
            pep440 = ",".join(_conda_clause(c, exact=build is not None) for c in clauses)
            alternatives.append(SpecifierSet(pep440))
        except InvalidSpecifier:  # a version PEP 440 cannot express: check presence only
            return ()
    return tuple(alternatives)


# --- reading files --------------------------------------------------------------------------


@dataclass
class _Read:
    """Requirements read from a file (and the files it includes), with info lines."""

    requirements: list[Requirement] = field(default_factory=list)
    info: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seen: set[Path] = field(default_factory=set)

    def line(self, text: str, origin: Path, *, conda: bool) -> None:
        try:
            req = parse_requirement(text, conda=conda)
        except ValueError as exc:
            self.warnings.append(f"{origin}: not checked: cannot read {text.strip()!r} ({exc}).")
            return
        if req is not None:
            self.requirements.append(replace(req, origin=str(origin)))

    def pip_lines(self, lines: list[str], origin: Path) -> None:
        for text in lines:
            include = _included_file(text)
            if include is None:
                self.line(text, origin, conda=False)
            else:
                self.include(origin.parent / include, origin, include)

    def include(self, path: Path, origin: Path, written: str) -> None:
        if not path.is_file():
            self.info.append(
                f"{origin}: -r {written}: no such file beside it ({path}); "
                "its requirements are not checked."
            )
            return
        if path.resolve() in self.seen:
            return
        self.seen.add(path.resolve())
        self.pip_lines(_read_text(path, key=None).splitlines(), path)


def _included_file(text: str) -> str | None:
    """The file of a ``-r FILE`` / ``--requirement FILE`` line, else None."""
    line = _strip_comment(text)
    for option in ("--requirement", "-r"):
        if line.startswith(option):
            rest = line[len(option) :]
            if rest[:1] in (" ", "\t", "="):
                return rest.lstrip(" \t=").strip() or None
            if option == "-r" and rest:
                return rest.strip()
    return None


def _read_text(path: Path, *, key: str | None) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(
            f"cannot read the file: {exc}",
            source=str(path),
            key=key,
            hint="Point it at a readable file.",
        ) from exc


def _read_conda(path: str | Path) -> _Read:
    path = Path(path)
    try:
        data: Any = yaml.safe_load(_read_text(path, key="environment.conda_file"))
    except yaml.YAMLError as exc:
        raise SpecError(
            f"cannot read the conda file: {exc}",
            source=str(path),
            key="environment.conda_file",
            hint="point environment.conda_file at a readable conda YAML file",
        ) from exc
    read = _Read(seen={path.resolve()})
    dependencies = (data.get("dependencies") if isinstance(data, dict) else None) or []
    for entry in dependencies:
        if isinstance(entry, dict):
            read.pip_lines([str(text) for text in entry.get("pip") or []], path)
        else:
            read.line(str(entry), path, conda=True)
    return read


def read_conda_file(path: str | Path) -> list[Requirement]:
    """The Python package requirements a conda file names (conda and pip sections)."""
    return _read_conda(path).requirements


def read_requirements_file(path: str | Path) -> list[Requirement]:
    """The requirements of a pip requirements file (``-r`` files included)."""
    return _read_requirements(path).requirements


def _read_requirements(path: str | Path) -> _Read:
    path = Path(path)
    if not path.is_file():
        raise SpecError(
            f"'{path}' does not exist",
            source=str(path),
            hint="Give the path of a pip requirements file.",
        )
    read = _Read()
    read.include(path, path, str(path))
    return read


# --- checking -------------------------------------------------------------------------------


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _check(read: _Read, source: str) -> EnvironmentReport:
    report = EnvironmentReport(source=source, warnings=list(read.warnings), info=list(read.info))
    for req in read.requirements:
        if not req.applies() or req.name in _NOT_PACKAGES:
            continue
        if is_platform_runtime(req.name):
            report.skipped.append(req)
            continue
        if req.name == "python":
            here = platform.python_version()
            if req.allows(here) is False:
                report.warnings.append(
                    f"{req.origin}: pins python {req.wanted}; scoring runs on Python {here}."
                )
            continue
        have = _installed_version(req.name)
        if have is None and req.name in _ALSO_PROVIDED_BY:
            have = _installed_version(_ALSO_PROVIDED_BY[req.name])
        if have is None:
            report.missing.append(req)
        elif req.allows(have) is False:
            if req.name in _UNPINNABLE:
                report.warnings.append(
                    f"{req.origin}: pins {req.name} {req.wanted}, which this environment "
                    f"cannot honour; scoring uses {req.name} {have}."
                )
            else:
                report.different.append((req, have))
    return report


def check_environment(path: str | Path) -> EnvironmentReport:
    """Compare a conda file with the running environment (see the module docstring)."""
    return _check(_read_conda(path), str(path))


def check_requirements_file(path: str | Path) -> EnvironmentReport:
    """Compare a pip requirements file with the running environment."""
    return _check(_read_requirements(path), str(path))


def check_model_folder(path: str | Path) -> EnvironmentReport | None:
    """Check an MLflow model's ``requirements.txt`` (else its ``conda.yaml``).

    None when ``path`` is not an MLflow model folder or the model names no environment.
    """
    folder = mlflow_model_folder(path)
    if folder is None:
        return None
    if (folder / "requirements.txt").is_file():
        return check_requirements_file(folder / "requirements.txt")
    if (folder / "conda.yaml").is_file():
        return check_environment(folder / "conda.yaml")
    return None


#: Version keys of MLflow flavors and the distribution each names (``sklearn_version`` …).
_FLAVOR_VERSIONS = {
    "sklearn_version": "scikit-learn",
    "xgb_version": "xgboost",
    "lgb_version": "lightgbm",
    "pytorch_version": "torch",
    "cloudpickle_version": "cloudpickle",
}


def saved_version_warnings(path: str | Path) -> list[str]:
    """For an MLflow model: the libraries its flavors were saved with that differ from the
    ones installed (a pickle from another scikit-learn often fails to load, or predicts
    differently). Empty for other models."""
    if mlflow_model_folder(path) is None:
        return []
    try:
        model = read_mlmodel(path)
    except SpecError:
        return []
    lines = []
    for flavor, settings in model.flavors.items():
        for key, package in _FLAVOR_VERSIONS.items():
            saved = settings.get(key) if isinstance(settings, dict) else None
            have = _installed_version(package)
            if saved and have and str(saved) != have:
                lines.append(
                    f"{model.folder}: the model was saved with {package} {saved} (MLmodel "
                    f"flavors.{flavor}.{key}); scoring has {package} {have}. Loading may fail "
                    f"or predict differently; to match: pip install {package}=={saved}"
                )
    return lines
