"""Datastores through ``pbe datastore``: S3 prefixes or folders that ``azureml://`` paths name.

The blocks and URI resolution are :mod:`blocks.datastore`; this adds the commands. Secrets
are never shown: ``show`` says whether credentials are set, not what they are.
"""

from __future__ import annotations

from typing import Any

from blocks.datastore import (
    DEFAULT_DATASTORE,
    Datastore,
    SavedDatastores,
    block_name,
    save_datastore,
    workspace_datastore,
)
from blocks.errors import BatchEndpointError, SpecError

__all__ = ["create_datastore", "delete_datastore", "list_datastores", "show_datastore"]


def _record(name: str, store: Datastore) -> dict[str, Any]:
    return {
        "name": name,
        "type": store.type,
        "url": store.url,
        "endpoint_url": store.endpoint_url,
        "region": store.region,
        "credentials": "key and secret set" if store.key is not None else "default chain"
        if store.type == "s3" else None,
        "is_default": name == DEFAULT_DATASTORE,
    }


def create_datastore(name: str, *, type: str, url: str, endpoint_url: str | None = None,
                     key: str | None = None, secret: str | None = None,
                     region: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Register a datastore (``--overwrite`` replaces one of the same name)."""
    try:
        store = Datastore(type=type, url=url, endpoint_url=endpoint_url, key=key, secret=secret,
                          region=region)
    except SpecError:
        raise
    except ValueError as exc:  # pydantic, e.g. an unknown type; never echo the values
        errors = exc.errors() if hasattr(exc, "errors") else []
        detail = f"{errors[0]['loc'][0]}: {errors[0]['msg']}" if errors else type(exc).__name__
        raise SpecError(f"invalid datastore ({detail})",
                        hint="--type s3 --url s3://bucket/prefix, or --type local --url DIR"
                        ) from None
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
        raise BatchEndpointError(f"{DEFAULT_DATASTORE} is built in and cannot be deleted",
                                 hint=f"It is the folder {workspace_datastore().root()}.")
    SavedDatastores()(name)  # NotFoundError listing the known ones
    Datastore.delete(document)
