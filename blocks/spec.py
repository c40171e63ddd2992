"""Typed specs of the endpoint and batch-deployment YAML files that ``az ml`` users write.

Pure code (no Prefect), models only. They are pydantic v2 with ``extra="forbid"``; their
validators fail with our own message, key and hint. Modules that build on them, each importing
only downwards: :mod:`blocks.spec_errors` turns a ``ValidationError`` into one
:class:`SpecError`, :mod:`blocks.spec_loading` reads and validates the YAML files, and
:mod:`blocks.job_settings` applies a job's overrides to a deployment's settings.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from blocks.errors import SpecError
from blocks.names import validate_name

__all__ = [
    "DEFAULT_OUTPUT_FILE_NAME",
    "CodeConfiguration",
    "DeploymentSettings",
    "EndpointDefaults",
    "EndpointSpec",
    "EnvironmentSpec",
    "InlineModel",
    "JobSettings",
    "MODEL_FORMS",
    "MODEL_TAGS",
    "ModelDeploymentSpec",
    "ModelReference",
    "ResourceSettings",
    "SpecModel",
    "RetrySettings",
    "SETTINGS_KEYS",
    "StrDict",
    "VersionText",
]

DEFAULT_OUTPUT_FILE_NAME = "predictions.csv"
SETTINGS_KEYS = (
    "max_concurrency_per_instance",
    "mini_batch_size",
    "retry_settings",
    "error_threshold",
    "output_action",
    "output_file_name",
    "logging_level",
    "environment_variables",
)
_BAD_FILE_CHARS = '/\\~"#%&*:<>?{|}'
MODEL_FORMS = "'azureml:<name>:<version>' or 'azureml:<name>@latest'"
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_MODEL_REF = re.compile(
    rf"azureml:(?P<name>{_MODEL_NAME.pattern})(?::(?P<version>[A-Za-z0-9._-]+)|@(?P<label>latest))"
)


def _fail(message: str, *, key: str = "", hint: str = "") -> PydanticCustomError:
    """A validation error carrying our own message, an optional sub-key and a hint."""
    ctx = {"spec_message": message, "spec_key": key, "spec_hint": hint}
    return PydanticCustomError("spec_error", "{spec_message}", ctx)


def _name_rule(kind: str) -> AfterValidator:
    def check(value: str) -> str:
        try:
            return validate_name(kind, value)
        except SpecError as exc:
            raise _fail(exc.message, hint=exc.hint or "") from None

    return AfterValidator(check)


def _output_file_name(value: str) -> str:
    bad = sorted({ch for ch in value if ch in _BAD_FILE_CHARS})
    if bad or value.strip() in ("", ".", ".."):
        shown = f"contains {' '.join(bad)}" if bad else "is not a file name"
        raise _fail(
            f"output file name {value!r} {shown}; it must be a plain file name without path "
            f'separators or any of ~"#%&*:<>?\\{{|}}',
            hint="Use a name such as 'predictions.csv'; choose the folder with the output path.",
        )
    return value


def _choice(*choices: str) -> BeforeValidator:
    """Accept ``append_row``, ``AppendRow``, ``APPEND-ROW`` … as the canonical choice."""

    def fold(value: Any) -> Any:
        if isinstance(value, str):
            folded = re.sub(r"[_\s-]", "", value).lower()
            return next((c for c in choices if c.replace("_", "") == folded), value)
        return value

    return BeforeValidator(fold)


def _check_file_name_fits(action: str, file_name: str | None, hint: str) -> None:
    """A summary_only deployment or job writes no output file, so it cannot name one."""
    if action == "summary_only" and file_name is not None:
        raise _fail(
            f"output_file_name {file_name!r} cannot be used with output_action 'summary_only' "
            "(nothing is written to an output file)",
            key="output_file_name",
            hint=hint,
        )


def _stringify_values(value: Any) -> Any:
    """YAML numbers and booleans in a str->str mapping become strings (``true`` -> "true")."""
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, (int, float)):
            item = str(item)
        out[key] = item
    return out


_Count = Annotated[int, Field(ge=1, strict=True)]
_Seconds = Annotated[int, Field(gt=0, strict=True)]
_Threshold = Annotated[int, Field(ge=-1, strict=True)]
StrDict = Annotated[dict[str, str], BeforeValidator(_stringify_values)]
#: a version as YAML users write it: ``version: 3`` is the text "3"
VersionText = Annotated[
    str, BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v)
]
_OutputAction = Annotated[
    Literal["append_row", "summary_only"], _choice("append_row", "summary_only")
]
_LoggingLevel = Annotated[Literal["warning", "info", "debug"], _choice("warning", "info", "debug")]
_OutputFileName = Annotated[str, AfterValidator(_output_file_name)]
_EndpointName = Annotated[str, _name_rule("endpoint")]
_DeploymentName = Annotated[str, _name_rule("deployment")]


class SpecModel(BaseModel):
    """Base of the spec models: unknown keys are refused, ``$schema`` is ignored."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_schema(cls, data: Any) -> Any:
        if isinstance(data, dict) and "$schema" in data:
            return {k: v for k, v in data.items() if k != "$schema"}
        return data


class RetrySettings(SpecModel):
    """How a failed or timed-out mini-batch is retried."""

    max_retries: _Count = Field(3, description="Attempts in total for one mini-batch.")
    timeout: _Seconds = Field(30, description="Seconds allowed for one run() call.")


class DeploymentSettings(SpecModel):
    """The ``settings:`` block of a model deployment (or the legacy root-level keys)."""

    max_concurrency_per_instance: _Count = Field(1, description="Scoring processes per node.")
    mini_batch_size: _Count = Field(10, description="Files per run() call.")
    retry_settings: RetrySettings = Field(default_factory=RetrySettings)
    error_threshold: _Threshold = Field(-1, description="Failed items tolerated; -1 = no limit.")
    output_action: _OutputAction = Field("append_row", description="append_row or summary_only.")
    output_file_name: _OutputFileName | None = Field(None, description="append_row file name.")
    logging_level: _LoggingLevel = Field("info", description="warning, info or debug.")
    environment_variables: StrDict = Field(default_factory=dict, description="Set per process.")

    @model_validator(mode="after")
    def _file_name_needs_append_row(self) -> DeploymentSettings:
        _check_file_name_fits(
            self.output_action,
            self.output_file_name,
            "Remove output_file_name, or set output_action: append_row.",
        )
        return self

    @property
    def effective_output_file_name(self) -> str | None:
        """The file rows are appended to: ``predictions.csv`` unless named; None if summary_only."""
        if self.output_action == "summary_only":
            return None
        return self.output_file_name or DEFAULT_OUTPUT_FILE_NAME


class CodeConfiguration(SpecModel):
    """Where the scoring script lives: ``code`` is its folder, ``scoring_script`` its file."""

    code: str = Field(min_length=1, description="Folder holding the scoring script.")
    scoring_script: str = Field(min_length=1, description="Script file, relative to code.")


class EnvironmentSpec(SpecModel):
    """An inline environment ``{name, image, conda_file}`` or a string ``reference``."""

    name: str | None = None
    version: str | int | None = None
    image: str | None = None
    conda_file: str | None = Field(None, description="conda.yaml, relative to the YAML file.")
    description: str | None = None
    reference: str | None = Field(None, description="e.g. 'azureml:my-env:1'.")


class ModelReference(SpecModel):
    """A registered model: ``azureml:<name>:<version>`` or ``azureml:<name>@latest``."""

    name: str
    version: str | None = None
    label: str | None = None

    @classmethod
    def parse(cls, text: str, *, source: str | None = None, key: str = "model") -> ModelReference:
        """Parse a reference string, raising SpecError that shows the accepted forms."""
        match = _MODEL_REF.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise SpecError(_bad_model(text), source=source, key=key, hint=_MODEL_HINT)
        return cls(**match.groupdict())

    @model_validator(mode="after")
    def _version_or_label(self) -> ModelReference:
        if (self.version is None) == (self.label is None):
            raise _fail("a model reference has either a version or the label 'latest'")
        return self

    def __str__(self) -> str:
        suffix = f"@{self.label}" if self.label else f":{self.version}"
        return f"azureml:{self.name}{suffix}"


class InlineModel(SpecModel):
    """A model given inline (``{name, path, type}``); deploying it registers a new version."""

    name: str
    path: str = Field(min_length=1, description="Model file or folder, relative to the YAML.")
    type: str = "custom_model"
    version: VersionText | None = None
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if not _MODEL_NAME.fullmatch(value):
            raise _fail(f"invalid model name {value!r}: use letters, digits, '-', '_' and '.'")
        return value


_MODEL_HINT = f"Use {MODEL_FORMS}, or an inline mapping with name, path and type."
#: the tags of the ``model:`` union (they appear in validation error locations)
MODEL_TAGS: dict[str, type[BaseModel]] = {
    "model-reference": ModelReference,
    "inline-model": InlineModel,
}


def _bad_model(value: Any) -> str:
    return f"invalid model {value!r}: expected {MODEL_FORMS}, or an inline {{name, path, type}}"


def _model_tag(value: Any) -> str:
    if isinstance(value, InlineModel) or (isinstance(value, dict) and "label" not in value):
        return "inline-model"
    return "model-reference"


_ModelField = Annotated[
    Annotated[ModelReference, Tag("model-reference")] | Annotated[InlineModel, Tag("inline-model")],
    Discriminator(_model_tag),
]


class ResourceSettings(SpecModel):
    """``resources:`` of a deployment."""

    instance_count: _Count = Field(1, description="Nodes per job.")


class EndpointDefaults(SpecModel):
    """``defaults:`` of an endpoint."""

    deployment_name: _DeploymentName | None = Field(None, description="Runs when none is named.")


class EndpointSpec(SpecModel):
    """A batch endpoint (``endpoint.yml``)."""

    name: _EndpointName
    description: str | None = None
    tags: StrDict = Field(default_factory=dict)
    auth_mode: str | None = Field("aad_token", description="Accepted, informational.")
    defaults: EndpointDefaults = Field(default_factory=EndpointDefaults)


class JobSettings(SpecModel):
    """The effective settings of one job: deployment settings with invoke overrides applied."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mini_batch_size: _Count
    instance_count: _Count
    max_concurrency_per_instance: _Count
    max_retries: _Count
    timeout: _Seconds
    error_threshold: _Threshold
    output_action: _OutputAction
    output_file_name: _OutputFileName | None = None
    logging_level: _LoggingLevel
    environment_variables: StrDict = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_file_name(cls, data: Any) -> Any:
        """An append_row job writes to ``predictions.csv`` unless it names a file."""
        if isinstance(data, dict) and data.get("output_action") == "append_row":
            if data.get("output_file_name") is None:
                return {**data, "output_file_name": DEFAULT_OUTPUT_FILE_NAME}
        return data

    @model_validator(mode="after")
    def _file_name_matches_action(self) -> JobSettings:
        _check_file_name_fits(
            self.output_action,
            self.output_file_name,
            "Do not pass an output file name to a summary_only deployment.",
        )
        return self

    @property
    def process_count(self) -> int:
        """Scoring processes of the job: instance_count × max_concurrency_per_instance."""
        return self.instance_count * self.max_concurrency_per_instance


class ModelDeploymentSpec(SpecModel):
    """A model batch deployment (``deployment.yml``), in the ``settings:`` or legacy layout."""

    name: _DeploymentName
    endpoint_name: _EndpointName | None = Field(None, description="Else given on the CLI.")
    type: Literal["model"] = "model"
    description: str | None = None
    tags: StrDict = Field(default_factory=dict)
    model: _ModelField
    code_configuration: CodeConfiguration | None = None
    environment: EnvironmentSpec | None = None
    compute: str = Field(description="azureml:<cluster-name>")
    resources: ResourceSettings = Field(default_factory=ResourceSettings)
    settings: DeploymentSettings = Field(default_factory=DeploymentSettings)

    @model_validator(mode="before")
    @classmethod
    def _layout(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        kind, flat = data.get("type"), [k for k in SETTINGS_KEYS if k in data]
        if kind is None:
            if flat and "settings" in data:
                raise _fail(
                    f"'{flat[0]}' sits at the root (legacy layout) but a 'settings:' block exists",
                    key=flat[0],
                    hint=f"Move '{flat[0]}' under 'settings:' and add 'type: model'.",
                )
            rest = {k: v for k, v in data.items() if k not in flat}
            return {**rest, "settings": {k: data[k] for k in flat}} if flat else data
        if not isinstance(kind, str) or kind.strip().lower() != "model":
            raise _fail(
                f"deployment type {kind!r} is not supported: only 'model' deployments "
                "are supported",
                key="type",
                hint="Set 'type: model' and describe the model, code and settings.",
            )
        if flat:
            raise _fail(
                f"'{flat[0]}' belongs under 'settings:' when the deployment has 'type: model'",
                key=flat[0],
                hint=f"Move it to 'settings.{flat[0]}', or drop 'type' (legacy flat layout).",
            )
        return {**data, "type": "model"}

    @field_validator("model", mode="before")
    @classmethod
    def _model_reference(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return ModelReference.parse(value)
            except SpecError as exc:
                raise _fail(exc.message, hint=_MODEL_HINT) from None
        if not isinstance(value, (dict, ModelReference, InlineModel)):
            raise _fail(_bad_model(value), hint=_MODEL_HINT)
        return value

    @field_validator("environment", mode="before")
    @classmethod
    def _environment_reference(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.startswith("azureml:"):
                raise _fail(
                    f"invalid environment {value!r}: expected a reference such as "
                    "'azureml:<name>:<version>' or a mapping {name, image, conda_file}"
                )
            return {"reference": value}
        return value

    @field_validator("compute")
    @classmethod
    def _compute_reference(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", value.strip().removeprefix("azureml:")):
            raise _fail(
                f"invalid compute {value!r}: expected 'azureml:<cluster-name>'",
                hint="Name a compute cluster, e.g. 'compute: azureml:batch-cluster'.",
            )
        return value.strip()

    @property
    def compute_name(self) -> str:
        """The cluster name: ``batch-cluster`` for ``azureml:batch-cluster``."""
        return self.compute.removeprefix("azureml:")
