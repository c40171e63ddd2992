"""Datastores through ``pbe datastore``: S3 prefixes, Blob containers or folders.

The blocks and URI resolution are :mod:`blocks.datastore`; this adds the commands, and
``create -f`` reads Azure ML's datastore YAML (``type: azure_blob``, ``account_name``,
``container_name``, ``endpoint``, ``protocol``, ``credentials: {account_key | sas_token}``;
also ``s3`` and ``local`` with the fields of the flags). Secrets are never shown: ``show``
says which credentials are set, not what they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from blocks.datastore import (
    DEFAULT_DATASTORE,
    Datastore,
    SavedDatastores,
    block_name,
    save_datastore,
    workspace_datastore,
)
from blocks.errors import BatchEndpointError, SpecError

__all__ = [
    "create_datastore",
    "create_datastore_from_file",
    "delete_datastore",
    "list_datastores",
    "show_datastore",
]

_YAML_FIELDS = {
    "type",
    "url",
    "description",
    "endpoint_url",
    "region",
    "account_name",
    "container_name",
    "endpoint",
    "protocol",
}
_YAML_CREDENTIALS = {"account_key", "sas_token", "key", "secret"}


def _credentials(store: Datastore) -> str | None:
    if store.type == "s3":
        return "key and secret set" if store.key is not None else "default chain"
    if store.type == "azure_blob":
        return (
            "account key set"
            if store.account_key is not None
            else "sas token set"
            if store.sas_token is not None
            else "anonymous"
        )
    return None


def _record(name: str, store: Datastore) -> dict[str, Any]:
    record = {
        "name": name,
        "type": store.type,
        "url": store.url,
        "endpoint_url": store.endpoint_url,
        "region": store.region,
        "credentials": _credentials(store),
        "is_default": name == DEFAULT_DATASTORE,
    }
    if store.type == "azure_blob":
        del record["endpoint_url"], record["region"]
        record |= {
            "account_name": store.account_name,
            "container_name": store.container_name,
            "endpoint": store.endpoint or "core.windows.net",
            "protocol": store.protocol or "https",
        }
    if store.description:
        record["description"] = store.description
    return record


def create_datastore_from_file(
    path: str, *, name: str | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """``pbe datastore create -f FILE [--name N]``: Azure ML's datastore YAML."""
    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise SpecError(f"cannot read the file ({exc.strerror})", source=source) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"not valid YAML ({type(exc).__name__})", source=source) from None
    if not isinstance(data, dict):
        raise SpecError("a datastore file is a mapping of keys", source=source)
    data = {k: v for k, v in data.items() if k != "$schema"}
    name = name or data.pop("name", None)
    data.pop("name", None)
    if not name:
        raise SpecError(
            "a datastore needs a name",
            source=source,
            key="name",
            hint="add name: to the file, or pass --name",
        )
    credentials = data.pop("credentials", None) or {}
    if not isinstance(credentials, dict):
        raise SpecError(
            "credentials is a mapping (account_key or sas_token)", source=source, key="credentials"
        )
    for key in [*data, *credentials]:
        if key not in _YAML_FIELDS | _YAML_CREDENTIALS or (key in credentials) != (
            key in _YAML_CREDENTIALS
        ):
            where = f"credentials.{key}" if key in credentials else key
            raise SpecError(
                "unknown or misplaced key",
                source=source,
                key=where,
                hint="azure_blob takes account_name, container_name, endpoint, "
                "protocol, credentials: {account_key | sas_token}",
            )
    fields = {k: str(v) if v is not None else None for k, v in {**data, **credentials}.items()}
    try:
        store = Datastore(**fields)
    except SpecError as exc:
        raise SpecError(exc.message, source=source, hint=exc.hint) from None
    except ValueError as exc:
        raise _invalid(exc) from None
    document = save_datastore(name, store, overwrite=overwrite)
    return _record(document, store)


def _invalid(exc: ValueError) -> SpecError:
    """A pydantic error as one line that never echoes the values."""
    errors = exc.errors() if hasattr(exc, "errors") else []
    detail = f"{errors[0]['loc'][0]}: {errors[0]['msg']}" if errors else type(exc).__name__
    return SpecError(
        f"invalid datastore ({detail})",
        hint="--type s3 --url s3://bucket/prefix, --type local --url DIR, or -f datastore.yml",
    )


def create_datastore(
    name: str,
    *,
    type: str,
    url: str,
    endpoint_url: str | None = None,
    key: str | None = None,
    secret: str | None = None,
    region: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Register a datastore (``--overwrite`` replaces one of the same name)."""
    try:
        store = Datastore(
            type=type, url=url, endpoint_url=endpoint_url, key=key, secret=secret, region=region
        )
    except SpecError:
        raise
    except ValueError as exc:  # pydantic, e.g. an unknown type; never echo the values
        raise _invalid(exc) from None
    document = save_datastore(name, store, overwrite=overwrite)
    return _record(document, store)


def show_datastore(name: str) -> dict[str, Any]:
    document = block_name(name)
    return _record(document, SavedDatastores()(name))


def list_datastores() -> list[dict[str, Any]]:
    stores = SavedDatastores()
    return [_record(n, stores(n)) for n in stores.names()]


def delete_datastore(name: str) -> None:
    document = block_name(name)
    if document == DEFAULT_DATASTORE:
        raise BatchEndpointError(
            f"{DEFAULT_DATASTORE} is built in and cannot be deleted",
            hint=f"It is the folder {workspace_datastore().root()}.",
        )
    SavedDatastores()(name)  # NotFoundError listing the known ones
    Datastore.delete(document)
