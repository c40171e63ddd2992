"""Azure Blob Storage as a store: the adlfs filesystem for a canonical URI, and its errors.

URIs reaching here are canonical (``https://<account>.blob.<suffix>/<container>/<path>``,
see :mod:`blocks.azure_urls`); the storage options carry the endpoint and credentials as
an adlfs connection string. :func:`explain` turns azure-core and adlfs exceptions into
``(problem, hint)`` for :func:`flows.storage.describe`.
"""

from __future__ import annotations

from typing import Any

from blocks.azure_urls import BlobPath, is_anonymous, parse_blob_url
from blocks.errors import SpecError

_EXTRA_HINT = 'pip install "prefect-batch-endpoints[azure]" (adlfs)'
_DENIED_CODES = {
    "AuthenticationFailed",
    "AuthorizationFailure",
    "AuthorizationPermissionMismatch",
    "AuthorizationResourceTypeMismatch",
    "InsufficientAccountPermissions",
    "NoAuthenticationInformation",
    "PublicAccessNotPermitted",
    "InvalidAuthenticationInfo",
}
_CREDENTIALS_HINT = (
    "check the datastore's account_key or sas_token, or the SAS token in the URL "
    "(its permissions and expiry)"
)
_ANONYMOUS_HINT = (
    "the container is not public: register an azure_blob datastore with an account_key or "
    "sas_token and use azureml://datastores/<name>/paths/…, or add a SAS token to the URL"
)


def blob_path(uri: str) -> BlobPath | None:
    """The place a canonical Blob URI names, or None for other URIs.

    URIs reach here resolved (:func:`blocks.datastore.resolve_uri` refused malformed ones).
    """
    if not uri.lower().startswith(("https://", "http://")):
        return None
    try:
        return parse_blob_url(uri)
    except SpecError:
        return None


def require_adlfs() -> None:
    """Raise ImportError naming the ``azure`` extra when adlfs is not installed."""
    try:
        import adlfs  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"Azure Blob Storage needs adlfs: {_EXTRA_HINT}") from exc


def filesystem(blob: BlobPath, storage_options: dict[str, Any]) -> tuple[Any, str]:
    """``(AzureBlobFileSystem, "<container>/<path>")`` for ``blob``."""
    from adlfs import AzureBlobFileSystem

    fs = AzureBlobFileSystem(**storage_options)
    return fs, f"{blob.container}/{blob.path}".rstrip("/") if blob.path else blob.container


def check_container(fs: Any, path: str) -> None:
    """Raise when ``path``'s container is missing or these credentials cannot list it.

    Lists the (usually empty) output folder rather than reading the container's
    properties, which a container SAS token may not do. Creates nothing.
    """
    try:
        fs.ls(path.rstrip("/"), detail=False, refresh=True)
    except FileNotFoundError as exc:
        chain = [exc, exc.__cause__, exc.__context__]
        if any(getattr(e, "error_code", None) == "ContainerNotFound" for e in chain):
            raise


def explain(
    exc: BaseException, chain: list[BaseException], blob: BlobPath, storage_options: dict
) -> tuple[str, str | None]:
    """``(problem, hint)`` for an exception met while reaching ``blob``."""
    statuses = {getattr(e, "status_code", None) for e in chain} - {None}
    codes = {str(getattr(e, "error_code", "") or "") for e in chain} - {""}
    names = {type(e).__name__ for e in chain}
    anonymous = is_anonymous(storage_options)
    if "ClientAuthenticationError" in names or codes & _DENIED_CODES or statuses & {401, 403}:
        if anonymous:
            return "access denied to an anonymous reader", _ANONYMOUS_HINT
        return "access denied: wrong account key or SAS token, or it lacks permission here", (
            _CREDENTIALS_HINT
        )
    if "ServiceRequestError" in names or any(
        isinstance(e, (ConnectionError, TimeoutError)) for e in chain
    ):
        return "cannot reach the storage account", (
            "check the account name, the network, and PBE_AZURE_BLOB_ENDPOINT_"
            f"{blob.account.upper()} if it points at an emulator or private endpoint"
        )
    missing = (
        "ResourceNotFoundError" in names
        or 404 in statuses
        or any(isinstance(e, FileNotFoundError) for e in chain)
    )
    if missing and anonymous and "ContainerNotFound" not in codes:
        return "not found by an anonymous reader (missing, or not public)", (
            "check the path; "
            + _ANONYMOUS_HINT.replace(
                "the container is not public: ", "if the container is private, "
            )
        )
    if missing:
        if (
            "ContainerNotFound" in codes
            or not blob.path.strip("/")
            or (_container_missing(blob, storage_options))
        ):
            return f"container '{blob.container}' does not exist", (
                "check the container name (it is never created)"
            )
        return "no blob or folder at this path", "check the path (names are case-sensitive)"
    if statuses:
        return f"the storage account answered HTTP {min(statuses)}", None
    return f"{type(exc).__name__}: {exc}", None


def _container_missing(blob: BlobPath, storage_options: dict) -> bool:
    """Whether the container is known not to exist (False when that cannot be told).

    Asks the SDK directly: called while an exception is being handled, adlfs's re-raised
    errors would lose the Azure error they came from.
    """
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import ContainerClient

    try:
        client = ContainerClient.from_connection_string(
            storage_options["connection_string"], blob.container
        )
        pages = client.list_blobs(name_starts_with=blob.path or None, results_per_page=1)
        next(iter(pages.by_page()), None)
    except ResourceNotFoundError as exc:
        return exc.error_code == "ContainerNotFound"
    except Exception:  # these credentials cannot list here: cannot tell
        return False
    return False
