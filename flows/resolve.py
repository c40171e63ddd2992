"""From what the caller named (an endpoint, or a deployment spec) to what a job runs."""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from dataclasses import dataclass

from blocks.compute import DaskCompute
from blocks.endpoint import deployment_blocks, load_compute, load_deployment, load_endpoint
from blocks.errors import SpecError
from blocks.spec import InlineModel, ModelDeploymentSpec
from scoring.builtin import CODE_DIR, MLFLOW_SCRIPT, builtin_code
from scoring.environment import check_model_folder


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
    The folder holds a symbolic link, so nothing is copied; it is named after the model's
    path, so every job of the same model shares one instead of leaving one behind each.
    """
    source = os.path.abspath(path)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    holder = os.path.join(workdir or tempfile.gettempdir(), "pbe-models", digest)
    link = os.path.join(holder, os.path.basename(source.rstrip(os.sep)) or "model")
    os.makedirs(holder, exist_ok=True)
    try:
        os.symlink(source, link)
    except FileExistsError:  # made by an earlier job (or a concurrent one) of this model
        if os.path.realpath(link) != os.path.realpath(source):
            os.replace(_new_link(source, holder), link)
    return holder


def _new_link(source: str, holder: str) -> str:
    fresh = os.path.join(holder, f".link-{os.getpid()}-{uuid.uuid4().hex}")
    os.symlink(source, fresh)
    return fresh


def resolve_spec(
    spec: ModelDeploymentSpec, compute: DaskCompute | None = None
) -> ResolvedDeployment:
    """Resolve a spec given in Python (its model inline, its paths absolute).

    Without ``code_configuration`` the inline model must be an ``mlflow_model``: the
    built-in MLflow scorer runs it.
    """
    if not isinstance(spec.model, InlineModel):
        raise SpecError(
            f"model '{spec.model}' is a registry reference; a spec run from Python needs the "
            "model inline",
            source=spec.name,
            key="model",
            hint="give model: {name: ..., path: ...}, or create the deployment with "
            "'pbe batch-deployment create' and invoke its endpoint",
        )
    if spec.code_configuration is None:
        try:
            code_dir, script = builtin_code(
                spec.model.path, model_type=spec.model.type, label=f"'{spec.model.name}'"
            )
        except SpecError as exc:
            raise SpecError(exc.message, source=spec.name, key=exc.key, hint=exc.hint) from None
        report = check_model_folder(spec.model.path)  # what create checks; the scorer does not
        if report is not None:
            report.raise_for_missing()
    else:
        code_dir = os.path.abspath(spec.code_configuration.code)
        script = spec.code_configuration.scoring_script
    return ResolvedDeployment(
        name=spec.name,
        endpoint=spec.endpoint_name,
        spec=spec,
        code_dir=code_dir,
        scoring_script=script,
        model_dir=model_dir_for(spec.model.path),
        compute=compute or DaskCompute(),
    )


def resolve_endpoint(endpoint: str, deployment_name: str | None = None) -> ResolvedDeployment:
    """Resolve an endpoint's deployment (its default unless one is named) from its Blocks.

    Loads the ``BatchEndpoint`` block, then the ``BatchDeployment`` block (the code
    snapshot, model folder and settings pinned when it was created), then the
    ``DaskCompute`` block its ``compute: azureml:<name>`` names. Each missing piece is a
    NotFoundError listing what exists; an endpoint without a default deployment, invoked
    without naming one, is a SpecError listing its deployments.
    """
    found = load_endpoint(endpoint)
    name = deployment_name or found.default_deployment
    if not name:
        known = sorted(b.name for b in deployment_blocks(found.name))
        raise SpecError(
            f"endpoint '{found.name}' has no default deployment and the invocation named "
            f"none; its deployments: {', '.join(known) or '(none)'}",
            source=f"endpoint '{found.name}'",
            key="defaults.deployment_name",
            hint="Name one (--deployment-name D, or deployment_name=D), or make one the "
            f"default: pbe batch-endpoint update --name {found.name} "
            "--set defaults.deployment_name=D",
        )
    block = load_deployment(found.name, name)
    label = f"deployment '{found.name}/{block.name}'"
    spec = block.model_spec()
    code_dir, script = block.code_dir, block.scoring_script
    if spec.code_configuration is None:  # the built-in scorer of this installation
        code_dir, script = CODE_DIR, MLFLOW_SCRIPT
    for path, key in ((code_dir, "code_configuration.code"), (block.model_dir, "model")):
        if not os.path.isdir(path):
            raise SpecError(
                f"'{path}' is gone from the workspace",
                source=label,
                key=key,
                hint="Re-create the deployment: pbe batch-deployment create --file ... "
                f"--endpoint-name {found.name}",
            )
    return ResolvedDeployment(
        name=block.name,
        endpoint=found.name,
        spec=spec,
        code_dir=code_dir,
        scoring_script=script,
        model_dir=block.model_dir,
        compute=load_compute(block.compute),
    )
