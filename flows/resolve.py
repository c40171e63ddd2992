"""From what the caller named (an endpoint, or a deployment spec) to what a job runs."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from blocks.compute import DaskCompute
from blocks.errors import SpecError
from blocks.spec import InlineModel, ModelDeploymentSpec


@dataclass(frozen=True)
class ResolvedDeployment:
    """A deployment with every reference resolved to something a worker can open."""

    name: str
    endpoint: str | None
    spec: ModelDeploymentSpec
    code_dir: str
    scoring_script: str
    model_dir: str
    compute: DaskCompute

    @property
    def label(self) -> str:
        return f"{self.endpoint}/{self.name}" if self.endpoint else self.name


def model_dir_for(path: str, *, workdir: str | None = None) -> str:
    """A folder that holds the model file or folder at ``path`` under its own name.

    That is what ``AZUREML_MODEL_DIR`` points at: scripts do
    ``glob(f"{AZUREML_MODEL_DIR}/*/*.pt")`` or ``os.path.join(AZUREML_MODEL_DIR, "model")``.
    The folder holds a symbolic link, so nothing is copied.
    """
    holder = tempfile.mkdtemp(prefix="pbe-model-", dir=workdir)
    source = os.path.abspath(path)
    os.symlink(source, os.path.join(holder, os.path.basename(source.rstrip(os.sep))))
    return holder


def resolve_spec(
    spec: ModelDeploymentSpec, compute: DaskCompute | None = None
) -> ResolvedDeployment:
    """Resolve a spec given in Python (its model inline, its paths absolute)."""
    if spec.code_configuration is None:
        raise SpecError(
            "a deployment needs code_configuration (code and scoring_script)",
            source=spec.name,
            key="code_configuration",
        )
    if not isinstance(spec.model, InlineModel):
        raise SpecError(
            f"model '{spec.model}' is a registry reference; a spec run from Python needs the "
            "model inline",
            source=spec.name,
            key="model",
            hint="give model: {name: ..., path: ...}, or create the deployment with "
            "'pbe batch-deployment create' and invoke its endpoint",
        )
    return ResolvedDeployment(
        name=spec.name,
        endpoint=spec.endpoint_name,
        spec=spec,
        code_dir=os.path.abspath(spec.code_configuration.code),
        scoring_script=spec.code_configuration.scoring_script,
        model_dir=model_dir_for(spec.model.path),
        compute=compute or DaskCompute(),
    )


def resolve_endpoint(endpoint: str, deployment_name: str | None = None) -> ResolvedDeployment:
    """Resolve an endpoint's deployment (its default unless one is named) from its Blocks."""
    raise NotImplementedError("endpoint resolution arrives with the management plane")
