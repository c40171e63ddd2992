"""Azure Blob Storage URLs: one canonical form, the account's endpoint, and adlfs options.

Every way of naming a blob becomes one canonical URI,
``https://<account>.blob.<suffix>/<container>/<path>`` (no query string), which is what
jobs list, log and show. Accepted forms:

- ``https://<account>.blob.core.windows.net/<container>/<path>[?<SAS token>]``
- ``wasbs://<container>@<account>.blob.core.windows.net/<path>`` (and ``wasb://``)
- ``abfss://<container>@<account>.dfs.core.windows.net/<path>`` (and ``abfs://``)
- ``az://<container>/<path>``: the account comes from a datastore of that container, or
  from ``AZURE_STORAGE_ACCOUNT_NAME`` (adlfs's convention)
- ``<endpoint>/<container>/<path>`` for an account whose endpoint is configured (below)

**Endpoints.** An account is reached at ``<protocol>://<account>.blob.<endpoint>``
(https and core.windows.net unless a datastore says otherwise). The environment variable
``PBE_AZURE_BLOB_ENDPOINT_<ACCOUNT>`` (account name upper-cased) replaces that URL for
one account, e.g. ``PBE_AZURE_BLOB_ENDPOINT_DEVSTOREACCOUNT1=http://127.0.0.1:10000/
devstoreaccount1`` for Azurite (path-style) or a private endpoint. URLs written against
that endpoint are recognised as the account's too.

The secrets (account key, SAS token) only ever live in the fsspec storage options, as an
adlfs ``connection_string``; :func:`connection_secrets` lists them for masking.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from blocks.errors import SpecError

DEFAULT_ENDPOINT = "core.windows.net"
ENDPOINT_VARIABLE = "PBE_AZURE_BLOB_ENDPOINT_"
ACCOUNT_VARIABLE = "AZURE_STORAGE_ACCOUNT_NAME"

ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")
CONTAINER_NAME = re.compile(r"\$root|\$web|[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_BLOB_HOST = re.compile(r"(?P<account>[a-z0-9]{3,24})\.blob\.(?P<endpoint>core\.[a-z0-9.-]+)")
_STORE_HOST = re.compile(
    r"(?P<account>[a-z0-9]{3,24})\.(?:blob|dfs)\.(?P<endpoint>core\.[a-z0-9.-]+)"
)
_CONNECTION_SECRET = re.compile(r"(?:AccountKey|SharedAccessSignature)=([^;]+)")


@dataclass(frozen=True)
class BlobPath:
    """A place in Blob Storage. ``account`` is empty for ``az://`` URLs not yet resolved."""

    account: str
    container: str
    path: str = ""  # inside the container; a trailing "/" is kept
    endpoint: str = DEFAULT_ENDPOINT
    protocol: str = "https"
    sas_token: str | None = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        """The canonical URI: ``https://<account>.blob.<endpoint>/<container>[/<path>]``."""
        base = f"https://{self.account}.blob.{self.endpoint}/{self.container}"
        return f"{base}/{self.path}" if self.path else base

    def account_url(self) -> str:
        return account_url(self.account, self.endpoint, self.protocol)


def container_url(account: str, container: str, endpoint: str = DEFAULT_ENDPOINT) -> str:
    return BlobPath(account, container, endpoint=endpoint).uri


def account_url(account: str, endpoint: str = DEFAULT_ENDPOINT, protocol: str = "https") -> str:
    """Where ``account``'s blob service answers: its ``PBE_AZURE_BLOB_ENDPOINT_*`` or Azure's."""
    configured = os.environ.get(ENDPOINT_VARIABLE + account.upper(), "").strip()
    return configured.rstrip("/") if configured else f"{protocol}://{account}.blob.{endpoint}"


def _configured_endpoints() -> dict[str, str]:
    return {
        name[len(ENDPOINT_VARIABLE) :].lower(): value.strip().rstrip("/")
        for name, value in os.environ.items()
        if name.startswith(ENDPOINT_VARIABLE) and value.strip()
    }


def parse_blob_url(uri: str) -> BlobPath | None:
    """The :class:`BlobPath` that ``uri`` names, or None when it is not a Blob Storage URL."""
    parts = urlsplit(uri.strip())
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        host = _BLOB_HOST.fullmatch(parts.netloc.lower())
        if host:
            return _split(host["account"], parts.path, host["endpoint"], scheme, parts.query, uri)
        bare = uri.strip().split("?", 1)[0].split("#", 1)[0]
        for account, base in _configured_endpoints().items():
            if bare == base or bare.startswith(base + "/"):
                return _split(
                    account, bare[len(base) :], DEFAULT_ENDPOINT, "https", parts.query, uri
                )
        return None
    if scheme in ("wasb", "wasbs", "abfs", "abfss") and "@" in parts.netloc:
        container, _, host_name = parts.netloc.partition("@")
        host = _STORE_HOST.fullmatch(host_name.lower())
        if not host:
            raise SpecError(
                f"'{_bare(uri)}' does not name a storage account",
                hint=f"write {scheme}://<container>@<account>.blob.core.windows.net/…",
            )
        protocol = "http" if scheme == "wasb" else "https"
        return _split(
            host["account"],
            f"/{container}{parts.path}",
            host["endpoint"],
            protocol,
            parts.query,
            uri,
        )
    if scheme == "az":
        account = os.environ.get(ACCOUNT_VARIABLE, "").strip().lower()
        return _split(
            account, f"/{parts.netloc}{parts.path}", DEFAULT_ENDPOINT, "https", parts.query, uri
        )
    return None


def _split(account: str, path: str, endpoint: str, protocol: str, query: str, uri: str) -> BlobPath:
    container, _, inside = unquote(path).lstrip("/").partition("/")
    if not CONTAINER_NAME.fullmatch(container):
        raise SpecError(
            f"'{_bare(uri)}' names no valid container ('{container}')",
            hint="container names are 3-63 lowercase letters, digits and '-'",
        )
    if ".." in inside.split("/"):
        raise SpecError(
            f"'{_bare(uri)}' goes outside its container", hint="blob paths may not use '..'"
        )
    return BlobPath(account, container, inside, endpoint, protocol, query or None)


def _bare(uri: str) -> str:
    return uri.split("?", 1)[0]


def storage_options(
    path: BlobPath, *, account_key: str | None = None, sas_token: str | None = None
) -> dict[str, str]:
    """adlfs options that reach ``path``'s account: with a key, a SAS token, or anonymously.

    A connection string is the one adlfs input that takes any endpoint (http, path-style).
    """
    parts = [f"BlobEndpoint={path.account_url()}"]
    if account_key:
        parts += [f"AccountName={path.account}", f"AccountKey={account_key}"]
    elif sas_token:
        parts.append(f"SharedAccessSignature={sas_token.lstrip('?')}")
    return {"connection_string": ";".join(parts) + ";"}


def connection_secrets(connection_string: str) -> list[str]:
    """The secrets inside an adlfs connection string: the key, the SAS token, its signature."""
    found = []
    for value in _CONNECTION_SECRET.findall(connection_string):
        found.append(value)
        for name, _, item in (p.partition("=") for p in value.split("&")):
            if name.lower() == "sig" and item:
                found += [item, unquote(item)]
    return found


def is_anonymous(storage_options: dict) -> bool:
    """Whether these options reach Blob Storage without any credential."""
    return not _CONNECTION_SECRET.search(str(storage_options.get("connection_string", "")))
