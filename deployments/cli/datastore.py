"""``pbe datastore``: the Blob containers, S3 prefixes and folders that
``azureml://datastores/<name>/paths/…`` names."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from cyclopts import Parameter

from deployments.cli.common import CommandGroup, Name, Yes, confirm

group = CommandGroup(
    "datastore",
    "Datastores that azureml://datastores/<name>/paths/... names.",
    columns={"Name": "name", "Type": "type", "Url": "url", "Default": "is_default"},
    examples=[
        "pbe datastore create -f lake.yml   # Azure ML datastore YAML (azure_blob)",
        "pbe datastore create --name images --type s3 --url s3://bucket/images \\\n"
        "    --endpoint-url http://127.0.0.1:9000 --key KEY --secret SECRET",
        "pbe datastore create --name shared --type local --url /mnt/shared/batch",
        "pbe datastore show --name images",
        "pbe datastore list --query [].name -o tsv",
        "pbe datastore delete --name images --yes",
    ],
)


@group.verb
def create(
    *,
    file: Annotated[str | None, Parameter(name=["--file", "-f"])] = None,
    name: Annotated[str | None, Parameter(name=["--name", "-n"])] = None,
    type: Annotated[Literal["s3", "local"] | None, Parameter(name=["--type", "-t"])] = None,
    url: str | None = None,
    endpoint_url: str | None = None,
    key: str | None = None,
    secret: str | None = None,
    region: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Register an Azure Blob container (from its YAML), an S3 prefix or a local folder.

    Parameters
    ----------
    file
        Azure ML datastore YAML (type: azure_blob, s3 or local); then no other field flags.
    name
        Datastore name, as in azureml://datastores/<name>/paths/... (wins over the file).
    type
        Without --file: s3 (an S3 or S3-compatible prefix) or local (a folder).
    url
        Without --file: s3://bucket/prefix, or a folder.
    endpoint_url
        S3-compatible server, e.g. http://127.0.0.1:9000.
    key
        Access key id (default: the AWS credential chain).
    secret
        Secret access key, with --key (never shown again).
    region
        S3 region.
    overwrite
        Replace a datastore of the same name.
    """
    from blocks.errors import SpecError
    from deployments import datastores

    fields = {
        "type": type,
        "url": url,
        "endpoint_url": endpoint_url,
        "key": key,
        "secret": secret,
        "region": region,
    }
    if file:
        given = [f for f, value in fields.items() if value is not None]
        if given:
            raise SpecError(
                f"--{given[0].replace('_', '-')} does not go with --file",
                hint="put every field in the YAML file",
            )
        return datastores.create_datastore_from_file(file, name=name, overwrite=overwrite)
    missing = [f"--{f}" for f, value in (("name", name), ("type", type), ("url", url)) if not value]
    if missing:
        raise SpecError(
            f"datastore create needs {', '.join(missing)} (or --file)",
            hint="e.g. --name lake --type s3 --url s3://bucket/prefix, or -f datastore.yml",
        )
    return datastores.create_datastore(name, overwrite=overwrite, **fields)


@group.verb
def show(*, name: Name) -> dict[str, Any]:
    """Show a datastore (whether credentials are set, never what they are).

    Parameters
    ----------
    name
        Datastore name.
    """
    from deployments import datastores

    return datastores.show_datastore(name)


@group.verb
def delete(*, name: Name, yes: Yes = False) -> None:
    """Delete a datastore (workspaceblobstore is built in and stays).

    Parameters
    ----------
    name
        Datastore name.
    yes
        Do not ask for confirmation.
    """
    from deployments import datastores

    confirm(yes, f"datastore '{name}'")
    return datastores.delete_datastore(name)


@group.verb
def list_() -> list[dict[str, Any]]:
    """List datastores (workspaceblobstore is built in)."""
    from deployments import datastores

    return datastores.list_datastores()
