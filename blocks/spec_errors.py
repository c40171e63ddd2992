"""One :class:`SpecError` from a pydantic ``ValidationError`` raised by the spec models.

The error names the first problem: the dotted key as the user wrote it (legacy root-level
settings included), the bad value and what was expected, the closest valid key for a misspelt
one, and the YAML line when the file text is known; further problems are counted and listed.
Used by the loaders in :mod:`blocks.spec_loading` and by :mod:`blocks.job_settings`.
"""

from __future__ import annotations

import difflib
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from blocks.errors import SpecError
from blocks.spec import MODEL_FORMS, MODEL_TAGS, SETTINGS_KEYS, ModelDeploymentSpec

__all__ = ["at_line", "spec_error"]

_MISSING_HINTS = {
    "name": "Add 'name: <name>'.",
    "model": f"Add 'model:' as {MODEL_FORMS}, or an inline mapping with name, path and type.",
    "compute": "Add 'compute: azureml:<cluster-name>'.",
    "code": "Add the folder that holds the scoring script.",
    "scoring_script": "Add the scoring script's file name, e.g. 'batch_driver.py'.",
    "path": "Add the model file or folder, relative to the YAML file.",
}
_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "string_too_short": "a non-empty string",
}


def spec_error(
    exc: ValidationError,
    root: type[BaseModel],
    source: str,
    *,
    text: str | None = None,
    legacy: bool = False,
    moved: set[str] | frozenset[str] = frozenset(),
) -> SpecError:
    """The first problem of ``exc`` (key, value, hint, line in ``text``); the rest are counted."""
    errors = exc.errors()
    paths = [_user_path(error, moved) for error in errors]
    problem, hint = _describe(errors[0], paths[0], root, legacy)
    key = ".".join(paths[0])
    problem += at_line(text, key)
    if len(errors) > 1:
        more = sorted({".".join(p) or "<root>" for p in paths[1:]})
        s = "s" if len(errors) > 2 else ""
        problem += f" (and {len(errors) - 1} more problem{s}, at: {', '.join(more)})"
    return SpecError(problem, source=source, key=key or None, hint=hint or None)


def _user_path(error: Any, moved: set[str] | frozenset[str]) -> list[str]:
    """The dotted key path as the user wrote it (no union tags; legacy keys at the root)."""
    path = [str(part) for part in error["loc"] if part not in MODEL_TAGS]
    if sub := (error.get("ctx") or {}).get("spec_key"):
        path.append(sub)
    if len(path) > 1 and path[0] == "settings" and path[1] in moved:
        path = path[1:]
    return path


def _describe(error: Any, path: list[str], root: type[BaseModel], legacy: bool) -> tuple[str, str]:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "spec_error":
        return ctx["spec_message"], ctx.get("spec_hint", "")
    if kind == "missing":
        return f"missing required key '{path[-1]}'", _MISSING_HINTS.get(path[-1], "")
    if kind == "extra_forbidden":
        return _unknown_key(error["loc"], root, legacy)
    shown = _show(value)
    noun = "an integer" if isinstance(value, int) and not isinstance(value, bool) else "a number"
    if kind in ("greater_than_equal", "greater_than"):
        op, bound = (">=", ctx.get("ge")) if kind == "greater_than_equal" else (">", ctx.get("gt"))
        expected = f"{noun} {op} {bound}"
    elif kind == "literal_error":
        expected = str(ctx.get("expected"))
    else:
        expected = _EXPECTED.get(kind) or error["msg"].removeprefix("Value error, ")
    name = path[-1] if path else "it"
    return f"invalid value {shown}: expected {expected}", f"Set '{name}' to {expected}."


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML (null, true), shortened."""
    if value is None or isinstance(value, bool):
        return str(value).lower().replace("none", "null")
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _unknown_key(loc: tuple, root: type[BaseModel], legacy: bool) -> tuple[str, str]:
    bad, parent = str(loc[-1]), _model_at(root, loc[:-1])
    valid = list(parent.model_fields) if parent is not None else []
    if parent is ModelDeploymentSpec and loc[:-1] == ():
        valid += [k if legacy else f"settings.{k}" for k in SETTINGS_KEYS]
    close = difflib.get_close_matches(bad, valid, n=1)
    if close:
        return (
            f"unknown key '{bad}'; did you mean '{close[0]}'?",
            f"Rename '{bad}' to '{close[0]}'.",
        )
    listing = ", ".join(valid) or "(none)"
    return f"unknown key '{bad}'; valid keys here are: {listing}", f"Remove '{bad}'."


def _model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (None when it is not a model)."""
    current: type[BaseModel] | None = root
    for part in loc:
        if part in MODEL_TAGS:
            current = MODEL_TAGS[part]
            continue
        field = current.model_fields.get(part) if current is not None else None
        if field is None:
            return None
        found = _models_in(field.annotation)
        current = found[0] if len(found) == 1 else None
    return current


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def at_line(text: str | None, key: str) -> str:
    """`` (line N)`` for the YAML line of the dotted ``key``, or "" when unknown."""
    if not text or not key:
        return ""
    try:
        node: Any = yaml.compose(text)
    except yaml.YAMLError:
        return ""
    line = None
    for part in key.split("."):
        if not isinstance(node, yaml.MappingNode):
            break
        entry = next(((k, v) for k, v in node.value if k.value == part), None)
        if entry is None:
            break
        line, node = entry[0].start_mark.line + 1, entry[1]
    return f" (line {line})" if line else ""
