"""Overrides: ``--set key.path=value`` as ``az ml … --set`` applies them, and the per-job
settings a job may change (:class:`JobOverrides`), named in this one place."""

from __future__ import annotations

import copy
import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from blocks.errors import SpecError

__all__ = ["JobOverrides", "apply_set_overrides"]

_HINT = "Write each override as key.path=value, e.g. --set settings.mini_batch_size=20."


def _value(text: str) -> Any:
    """``text`` as a YAML scalar (``3`` -> 3, ``true`` -> True), else the text itself.

    Flow collections (``[1, 2]``, ``{a: b}``) are parsed too; dates and ``a: b`` stay text.
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is None or isinstance(value, (str, int, float)):
        return value
    return value if text.startswith(("[", "{")) else text


def apply_set_overrides(data: dict, assignments: list[str], *, source: str) -> dict:
    """Return a copy of ``data`` with each ``key.path=value`` assignment applied in order.

    Intermediate mappings are created as needed; values are parsed as YAML, so ``3`` is an
    int, ``true`` a bool, ``null`` (or nothing after ``=``) None, and other text a string.
    A malformed assignment, or a path through a value that is not a mapping, raises SpecError.
    """
    result = copy.deepcopy(data)
    for assignment in assignments:
        path, sep, raw = assignment.partition("=")
        keys = [part.strip() for part in path.split(".")]
        if not sep or not all(keys):
            raise SpecError(
                f"malformed --set {assignment!r}: expected key.path=value",
                source=source,
                hint=_HINT,
            )
        target = result
        for depth, key in enumerate(keys[:-1]):
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                where = ".".join(keys[: depth + 1])
                raise SpecError(
                    f"cannot set '{path.strip()}': '{where}' holds {target!r}, not a mapping",
                    source=source,
                    key=path.strip(),
                    hint=f"Set '{where}' itself, or fix the key path.",
                )
        target[keys[-1]] = _value(raw.strip())
    return result


def _also(*paths: str) -> Any:
    """A per-job setting, also accepted under its deployment.yml paths in ``--set``."""
    return field(default=None, metadata={"paths": paths})


@dataclass(frozen=True)
class JobOverrides:
    """What one job may change of its deployment, as the platform allows per invocation.

    Concurrency, output action, logging level and environment variables belong to the
    deployment. Values are checked when they are applied (:mod:`blocks.job_settings`).
    """

    mini_batch_size: int | None = _also("settings.mini_batch_size")
    instance_count: int | None = _also("resources.instance_count")
    max_retries: int | None = _also(
        "retry_settings.max_retries", "settings.retry_settings.max_retries"
    )
    timeout: int | None = _also("retry_settings.timeout", "settings.retry_settings.timeout")
    error_threshold: int | None = _also("settings.error_threshold")
    output_file_name: str | None = _also("settings.output_file_name", "output_dataset.file_name")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> JobOverrides:
        """The overrides among ``values`` (flow parameters, a job's parameters); others ignored."""
        return cls(**{name: values.get(name) for name in cls.names()})

    @classmethod
    def from_sets(cls, sets: Sequence[str] = (), **flags: Any) -> JobOverrides:
        """``--set`` assignments (names or deployment.yml paths) and flags; flags win."""
        keys = {
            path: f.name for f in dataclasses.fields(cls) for path in (f.name, *f.metadata["paths"])
        }
        parsed = apply_set_overrides({}, list(sets), source="--set")
        values: dict[str, Any] = {}
        for path, value in _leaves(parsed, keys):
            if path not in keys:
                raise _not_per_job(path, keys)
            values[keys[path]] = value
        values.update({k: v for k, v in flags.items() if v is not None})
        return cls.from_mapping(values)

    def given(self) -> dict[str, Any]:
        """The overrides that are set, by name."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


_FIXED = ("max_concurrency_per_instance", "output_action", "logging_level", "environment_variables")


def _leaves(data: dict, keys: Mapping[str, str], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in keys:
            out.extend(_leaves(value, keys, f"{path}."))
        else:
            out.append((path, value))
    return out


def _not_per_job(path: str, keys: Mapping[str, str]) -> SpecError:
    if path.rsplit(".", 1)[-1] in _FIXED:
        return SpecError(
            f"'{path}' cannot be changed per job",
            source="--set",
            key=path,
            hint="Change it on the deployment: pbe batch-deployment update --set ...",
        )
    close = difflib.get_close_matches(path, list(keys), n=1)
    hint = (
        f"Did you mean '{close[0]}'?"
        if close
        else ("Per-job settings: " + ", ".join(JobOverrides.names()) + ".")
    )
    return SpecError(f"unknown per-job setting '{path}'", source="--set", key=path, hint=hint)
