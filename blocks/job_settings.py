"""The settings of one job: its deployment's settings with the job's overrides applied."""

from __future__ import annotations

from pydantic import ValidationError

from blocks.overrides import JobOverrides
from blocks.spec import JobSettings, ModelDeploymentSpec
from blocks.spec_errors import spec_error

__all__ = ["job_settings"]


def job_settings(spec: ModelDeploymentSpec, overrides: JobOverrides | None = None) -> JobSettings:
    """The settings a job of ``spec`` runs with; a bad override is one SpecError naming it."""
    overrides = overrides or JobOverrides()
    s = spec.settings
    values = {
        "mini_batch_size": s.mini_batch_size,
        "instance_count": spec.resources.instance_count,
        "max_concurrency_per_instance": s.max_concurrency_per_instance,
        "max_retries": s.retry_settings.max_retries,
        "timeout": s.retry_settings.timeout,
        "error_threshold": s.error_threshold,
        "output_action": s.output_action,
        "output_file_name": s.output_file_name,
        "logging_level": s.logging_level,
        "environment_variables": dict(s.environment_variables),
        **overrides.given(),
    }
    try:
        return JobSettings.model_validate(values)
    except ValidationError as exc:
        raise spec_error(exc, JobSettings, f"job overrides for deployment '{spec.name}'") from exc
