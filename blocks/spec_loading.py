"""The spec boundary: read and validate ``endpoint.yml`` and ``deployment.yml``.

``parse_*`` validate a mapping, ``load_*_yaml`` read a YAML file first; any problem surfaces as
ONE :class:`SpecError` that names the file, the dotted key, the bad value and the fix. A loaded
deployment's relative paths (code folder, scoring script, conda file, inline model) are resolved
against the folder of the YAML file and must exist. The ``blocks`` package re-exports them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from blocks.errors import SpecError
from blocks.spec import SETTINGS_KEYS, EndpointSpec, InlineModel, ModelDeploymentSpec
from blocks.spec_errors import at_line, spec_error

__all__ = [
    "load_deployment_yaml",
    "load_endpoint_yaml",
    "load_yaml_spec",
    "parse_deployment",
    "parse_endpoint",
]


def parse_endpoint(data: dict, *, source: str = "<dict>") -> EndpointSpec:
    """Validate an endpoint mapping; raise SpecError naming ``source`` and the key."""
    return _parse(EndpointSpec, data, source)


def parse_deployment(data: dict, *, source: str = "<dict>") -> ModelDeploymentSpec:
    """Validate a deployment mapping (either layout); raise SpecError naming ``source``."""
    return _parse(ModelDeploymentSpec, data, source)


def load_endpoint_yaml(path: str | os.PathLike[str]) -> EndpointSpec:
    """Read and validate an ``endpoint.yml``."""
    data, text = _read_yaml(path)
    return _parse(EndpointSpec, data, str(path), text)


def load_yaml_spec(cls: type[Any], path: str | os.PathLike[str]) -> Any:
    """Read a YAML file and validate it as ``cls`` (a spec model), with the same errors."""
    data, text = _read_yaml(path)
    return _parse(cls, data, str(path), text)


def load_deployment_yaml(path: str | os.PathLike[str]) -> ModelDeploymentSpec:
    """Read and validate a ``deployment.yml``; its relative paths become absolute and must exist."""
    data, text = _read_yaml(path)
    spec = _parse(ModelDeploymentSpec, data, str(path), text)
    folder = Path(path).resolve().parent

    def where(key: str, value: str, kind: str) -> str:
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:", value):  # a URI or azureml: reference
            return value
        full = folder / Path(value).expanduser()
        if not full.exists():
            raise SpecError(
                f"{kind} {value!r} does not exist (looked for '{full}'){at_line(text, key)}",
                source=str(path),
                key=key,
                hint="Paths are relative to the folder of the YAML file; fix the path.",
            )
        return str(full.resolve())

    updates: dict[str, Any] = {}
    if (code := spec.code_configuration) is not None:
        folder_path = where("code_configuration.code", code.code, "code folder")
        script = Path(folder_path) / code.scoring_script
        if os.path.isabs(folder_path) and not script.is_file():
            raise SpecError(
                f"scoring script {code.scoring_script!r} not found in '{folder_path}'"
                f"{at_line(text, 'code_configuration.scoring_script')}",
                source=str(path),
                key="code_configuration.scoring_script",
                hint="scoring_script is a file inside the code folder.",
            )
        updates["code_configuration"] = code.model_copy(update={"code": folder_path})
    env = spec.environment
    if env is not None and env.conda_file:
        conda = where("environment.conda_file", env.conda_file, "conda file")
        updates["environment"] = env.model_copy(update={"conda_file": conda})
    if isinstance(spec.model, InlineModel):
        model_path = where("model.path", spec.model.path, "model path")
        updates["model"] = spec.model.model_copy(update={"path": model_path})
    return spec.model_copy(update=updates)


def _read_yaml(path: str | os.PathLike[str]) -> tuple[dict, str]:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(
            f"cannot read the file: {exc.strerror or exc}", source=source, hint="Check the path."
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(
            f"invalid YAML{at}: {problem}", source=source, hint="Fix the YAML syntax there."
        ) from exc
    if not isinstance(data, dict):
        node = yaml.compose(text)
        line = node.start_mark.line + 1 if node is not None else 1
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise SpecError(
            f"line {line}: expected a mapping of keys (name: ..., ...), got {got}",
            source=source,
            hint="A spec file is a YAML mapping such as 'name: my-endpoint'.",
        )
    return data, text


def _parse(cls: type[Any], data: Any, source: str, text: str | None = None) -> Any:
    if not isinstance(data, dict):
        raise SpecError(f"expected a mapping of keys, got {type(data).__name__}", source=source)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        legacy = cls is ModelDeploymentSpec and "type" not in data
        moved = {k for k in SETTINGS_KEYS if k in data} if legacy else set()
        raise spec_error(exc, cls, source, text=text, legacy=legacy, moved=moved) from exc
