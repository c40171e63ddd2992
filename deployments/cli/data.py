"""``pbe data``: data assets that jobs take as ``--input azureml:<name>@latest``."""

from __future__ import annotations

from typing import Annotated, Literal

from cyclopts import Parameter

from deployments.cli.common import CommandGroup, Name, OptionalName

group = CommandGroup(
    "data",
    "Data assets that jobs take as --input azureml:<name>@latest.",
    prefect=False,
    columns={"Name": "name", "Version": "version", "Type": "type", "Path": "path"},
    examples=[
        "pbe data create -f data.yml  # the platform's data YAML: name, type, path",
        "pbe data create --name heart-unlabeled --type uri_folder --path unlabeled/",
        "pbe data create -n one-digit --type uri_file --path s3://bucket/digits/1.png",
        "pbe data show --name heart-unlabeled --label latest",
        "pbe data list -o table",
    ],
)

Version = Annotated[str | None, Parameter(name=["--version", "-v"])]
Label = Annotated[str | None, Parameter(name=["--label", "-l"])]


@group.verb
def create(
    *,
    file: Annotated[str | None, Parameter(name=["--file", "-f"])] = None,
    name: OptionalName = None,
    type: Annotated[
        Literal["uri_folder", "uri_file"] | None, Parameter(name=["--type", "-t"])
    ] = None,
    path: Annotated[str | None, Parameter(name=["--path", "-p"])] = None,
    version: Version = None,
    description: Annotated[str | None, Parameter(name=["--description", "-d"])] = None,
) -> dict:
    """Register a new version of a data asset (a local path is copied in, a URI referenced).

    Parameters
    ----------
    file
        data.yml (name, version, type, path, description, tags).
    name
        Data asset name (wins over the file's).
    type
        uri_folder (the default) or uri_file.
    path
        Local folder or file, or a URI (s3://, https://, azureml://datastores/<name>/paths/...).
    version
        Version (default: the next number).
    description
        Free text shown by data show.
    """
    from blocks.data_assets import DataRegistry, data_spec

    return DataRegistry().create(
        data_spec(file, name=name, type=type, path=path, version=version, description=description)
    )


@group.verb
def show(*, name: Name, version: Version = None, label: Label = None) -> dict:
    """Show a data asset version.

    Parameters
    ----------
    name
        Data asset name.
    version
        Version (default: the newest).
    label
        latest: the newest version.
    """
    from blocks.data_assets import DataRegistry

    return DataRegistry().show(name, version, label=label)


@group.verb
def list_(*, name: OptionalName = None) -> list[dict]:
    """List data assets (the newest version of each), or every version of one.

    Parameters
    ----------
    name
        Data asset name: list its versions, newest first.
    """
    from blocks.data_assets import DataRegistry

    return DataRegistry().list_all(name)
