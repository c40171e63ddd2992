"""The per-job overrides of ``pbe batch-endpoint invoke``: flags and ``--set key=value``.

Only what the platform lets a job change: ``mini_batch_size``, ``instance_count``,
``max_retries``, ``timeout``, ``error_threshold`` and ``output_file_name`` (each also under
its deployment.yml path, e.g. ``retry_settings.max_retries``). Concurrency, output action,
logging level and environment variables belong to the deployment.
"""

from __future__ import annotations

import difflib
from typing import Any

from blocks.errors import SpecError
from blocks.overrides import apply_set_overrides

__all__ = ["job_overrides"]

_ALIASES = {
    "mini_batch_size": ("settings.mini_batch_size",),
    "instance_count": ("resources.instance_count",),
    "max_retries": ("retry_settings.max_retries", "settings.retry_settings.max_retries"),
    "timeout": ("retry_settings.timeout", "settings.retry_settings.timeout"),
    "error_threshold": ("settings.error_threshold",),
    "output_file_name": ("settings.output_file_name", "output_dataset.file_name"),
}
_FIXED = ("max_concurrency_per_instance", "output_action", "logging_level",
          "environment_variables")
_KEYS = {alias: key for key, aliases in _ALIASES.items() for alias in (key, *aliases)}


def _leaves(data: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in _KEYS:
            out.extend(_leaves(value, f"{path}."))
        else:
            out.append((path, value))
    return out


def job_overrides(sets: list[str], **flags: Any) -> dict[str, Any]:
    """The overrides of one invocation; flags (``mini_batch_size=...``) win over ``--set``."""
    parsed = apply_set_overrides({}, list(sets or ()), source="--set")
    overrides: dict[str, Any] = {}
    for path, value in _leaves(parsed):
        key = _KEYS.get(path)
        if key is None:
            if path.rsplit(".", 1)[-1] in _FIXED:
                raise SpecError(
                    f"'{path}' cannot be changed per job", source="--set", key=path,
                    hint="Change it on the deployment: pbe batch-deployment update --set ...",
                )
            close = difflib.get_close_matches(path, list(_KEYS), n=1)
            hint = f"Did you mean '{close[0]}'?" if close else (
                "Per-job settings: " + ", ".join(_ALIASES) + ".")
            raise SpecError(f"unknown per-job setting '{path}'", source="--set", key=path,
                            hint=hint)
        overrides[key] = value
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return overrides
