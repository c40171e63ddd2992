"""``pbe model``: register model files and folders as numbered versions."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

from deployments.cli.common import AZ, CommandGroup, Name, OptionalName

group = CommandGroup(
    "model",
    "Register model files and folders (versions 1, 2, …).",
    prefect=False,
    columns={"Name": "name", "Version": "version", "Type": "type", "Path": "path"},
    examples=[
        "pbe model create --name mnist-classifier-torch --type custom_model \\\n"
        "    --path models/torch/model",
        "pbe model create -n mnist-classifier-torch -p model.pt -v 7 -d retrained",
        "pbe model show --name mnist-classifier-torch --label latest",
        "pbe model show -n mnist-classifier-torch -v 1 --query path -o tsv",
        "pbe model list -o table",
        "pbe model list --name mnist-classifier-torch --query [].version",
    ],
)

Version = Annotated[str | None, Parameter(name=["--version", "-v"])]
Label = Annotated[str | None, Parameter(name=["--label", "-l"])]


@group.verb
def create(
    *,
    name: Name,
    path: Annotated[str, Parameter(name=["--path", "-p"])],
    type: Annotated[str, Parameter(name=["--type", "-t"])] = "custom_model",
    version: Version = None,
    description: Annotated[str | None, Parameter(name=["--description", "-d"])] = None,
    file: Annotated[str | None, Parameter(name=["--file", "-f"], group=AZ)] = None,
) -> dict:
    """Register a new version of a model.

    Parameters
    ----------
    name
        Model name.
    path
        Model file or folder (copied into the workspace).
    type
        Model type: custom_model.
    version
        Version (default: the next number).
    description
        Free text shown by model show.
    file
        A model YAML: give --name and --path instead.
    """
    from deployments.registry import ModelRegistry

    return ModelRegistry().create(name, path, version=version, type=type, description=description)


@group.verb
def show(*, name: Name, version: Version = None, label: Label = None) -> dict:
    """Show a model version.

    Parameters
    ----------
    name
        Model name.
    version
        Version (default: the newest).
    label
        latest: the newest version.
    """
    from deployments.registry import ModelRegistry

    return ModelRegistry().show(name, version, label=label)


@group.verb
def list_(*, name: OptionalName = None) -> list[dict]:
    """List models (the newest version of each), or every version of one.

    Parameters
    ----------
    name
        Model name: list its versions, newest first.
    """
    from deployments.registry import ModelRegistry

    return ModelRegistry().list_models(name)
