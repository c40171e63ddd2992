"""Datastores: named places where job inputs and outputs live, and resolving URIs to them.

A :class:`Datastore` is an S3 bucket prefix (any S3-compatible server, through
``endpoint_url``), an Azure Blob Storage container (``azure_blob``, Azure ML's datastore
fields; URLs and endpoints are :mod:`blocks.azure_urls`) or a local folder, saved as a
Prefect Block. Users name it in
``azureml://datastores/<name>/paths/<path>``. The built-in ``workspaceblobstore`` is the
workspace's local folder and needs no saved block.

:func:`resolve_uri` is pure: it turns any job URI (local path, ``s3://``, ``https://``,
datastore path) into ``(uri, storage_options)`` given a lookup function, so it is tested
without a Prefect server. :class:`SavedDatastores` is that lookup against the Prefect API.
:func:`mask` (:mod:`blocks.masking`) removes secrets from any text before it reaches a
message, log or artifact.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, model_validator

from blocks import azure_urls
from blocks.azure_urls import BlobPath, parse_blob_url
from blocks.errors import AlreadyExistsError, NotFoundError, SpecError
from blocks.masking import mask, register_secrets, secret_values
from blocks.workspace import DEFAULT_DATASTORE, datastore_root

DatastoreType = Literal["s3", "local", "azure_blob"]
StorageOptions = dict[str, Any]


class Datastore(Block):
    """An S3 prefix, a Blob container or a folder that ``azureml://datastores/<name>/…`` names."""

    model_config = ConfigDict(hide_input_in_errors=True)  # never echo a secret back

    _block_type_name = "Batch Datastore"
    _block_type_slug = "batch-datastore"
    _description = (
        "Where batch job inputs and outputs live: an S3 bucket prefix, an Azure "
        "Blob Storage container or a folder."
    )

    type: DatastoreType = Field(
        description="s3: an S3 or S3-compatible bucket; azure_blob: a Blob container; "
        "local: a folder."
    )
    url: str | None = Field(
        None,
        description="s3://bucket[/prefix] for type s3; a folder path for local; "
        "for azure_blob, set from the account and container.",
    )
    description: str | None = Field(None, description="Free text.")
    endpoint_url: str | None = Field(
        None, description="S3-compatible server, e.g. http://127.0.0.1:9000; unset means AWS."
    )
    key: SecretStr | None = Field(
        None, description="Access key id; unset means the standard AWS credential chain."
    )
    secret: SecretStr | None = Field(None, description="Secret access key, given with key.")
    region: str | None = Field(None, description="S3 region, e.g. eu-west-1 (optional).")
    account_name: str | None = Field(None, description="azure_blob: the storage account.")
    container_name: str | None = Field(None, description="azure_blob: the container.")
    endpoint: str | None = Field(
        None,
        description="azure_blob: the cloud's storage suffix (default core.windows.net); "
        "PBE_AZURE_BLOB_ENDPOINT_<ACCOUNT> points an account at an emulator or private endpoint.",
    )
    protocol: Literal["https", "http"] | None = Field(
        None, description="azure_blob: https (default) or http."
    )
    account_key: SecretStr | None = Field(None, description="azure_blob: an account key.")
    sas_token: SecretStr | None = Field(
        None, description="azure_blob: a SAS token; no key nor token means anonymous access."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Datastore:
        azure = [name for name in _AZURE_FIELDS if getattr(self, name) is not None]
        if self.type == "azure_blob":
            return self._consistent_blob()
        if azure:
            raise SpecError(f"{', '.join(azure)} only apply to type azure_blob", key=azure[0])
        if self.url is None:
            raise SpecError(
                f"a {self.type} datastore needs a url",
                key="url",
                hint="e.g. --url s3://my-bucket/batch-data, or --url DIR",
            )
        if self.type == "s3":
            if not re.match(r"s3://[^/\s]+", self.url):
                raise SpecError(
                    "an s3 datastore needs url s3://<bucket>[/<prefix>]",
                    key="url",
                    hint="e.g. --url s3://my-bucket/batch-data",
                )
            if (self.key is None) != (self.secret is None):
                raise SpecError(
                    "key and secret go together",
                    key="key" if self.key is None else "secret",
                    hint="give both --key and --secret, or neither to use the AWS "
                    "credential chain (environment, profile, instance role)",
                )
            if self.endpoint_url and not re.match(r"https?://", self.endpoint_url):
                raise SpecError(
                    "endpoint_url must start with http:// or https://", key="endpoint_url"
                )
            return self
        if "://" in self.url and not self.url.startswith("file://"):
            raise SpecError(
                f"a local datastore needs a folder, not '{mask(self.url)}'",
                key="url",
                hint="use --type s3 for s3:// URLs",
            )
        self._no_s3_fields()
        return self

    def _no_s3_fields(self) -> None:
        extras = [
            name
            for name in ("endpoint_url", "key", "secret", "region")
            if getattr(self, name) is not None
        ]
        if extras:
            raise SpecError(
                f"{', '.join(extras)} only apply to type s3, not {self.type}", key=extras[0]
            )

    def _consistent_blob(self) -> Datastore:
        self._no_s3_fields()
        for name, pattern, what in (
            ("account_name", azure_urls.ACCOUNT_NAME, "3-24 lowercase letters and digits"),
            ("container_name", azure_urls.CONTAINER_NAME, "3-63 lowercase letters, digits, '-'"),
        ):
            value = getattr(self, name)
            if not value or not pattern.fullmatch(value):
                raise SpecError(f"an azure_blob datastore needs {name} ({what})", key=name)
        if self.endpoint is not None and not re.fullmatch(r"[a-z0-9.-]+\.[a-z]+", self.endpoint):
            raise SpecError(
                f"endpoint '{self.endpoint}' is not a storage suffix",
                key="endpoint",
                hint="e.g. core.windows.net; for an emulator or a private endpoint "
                f"set {azure_urls.ENDPOINT_VARIABLE}{self.account_name.upper()}",
            )
        if self.account_key is not None and self.sas_token is not None:
            raise SpecError("give account_key or sas_token, not both", key="credentials")
        url = self._blob_root().uri
        if self.url is not None and self.url.rstrip("/") != url:
            raise SpecError(
                f"url '{mask(self.url)}' is not the container's URL {url}",
                key="url",
                hint="leave url out for azure_blob datastores",
            )
        self.url = url
        return self

    def _blob_root(self) -> BlobPath:
        return BlobPath(
            self.account_name or "",
            self.container_name or "",
            endpoint=self.endpoint or azure_urls.DEFAULT_ENDPOINT,
            protocol=self.protocol or "https",
        )

    def root(self) -> str:
        """The datastore's base URI: ``s3://bucket/prefix``, the container's URL, or a folder."""
        if self.type != "local":
            return str(self.url).rstrip("/")
        folder = self.url[len("file://") :] if self.url.startswith("file://") else self.url
        return os.path.abspath(os.path.expanduser(folder))

    def uri_for(self, path: str) -> str:
        """The URI of ``path`` inside this datastore; ``..`` may not leave it."""
        parts = path.replace("\\", "/").split("/")
        if ".." in parts:
            raise SpecError(
                f"datastore path '{path}' goes outside the datastore",
                hint="paths inside a datastore may not use '..'",
            )
        clean = posixpath.normpath("/" + "/".join(parts)).lstrip("/")
        remote = self.type != "local"
        if not clean:
            return self.root() + "/" if remote else self.root()
        trailing = "/" if path.endswith("/") else ""
        if remote:
            return f"{self.root()}/{clean}{trailing}"
        return os.path.join(self.root(), *clean.split("/")) + trailing

    def storage_options(self) -> StorageOptions:
        """fsspec options that reach this datastore (registers its secrets for :func:`mask`)."""
        if self.type == "azure_blob":
            return self.blob_options()
        if self.type != "s3":
            return {}
        options: StorageOptions = {}
        if self.key is not None and self.secret is not None:
            options["key"] = self.key.get_secret_value()
            options["secret"] = self.secret.get_secret_value()
            register_secrets(options.values())
        client_kwargs = {
            k: v
            for k, v in (("endpoint_url", self.endpoint_url), ("region_name", self.region))
            if v
        }
        if client_kwargs:
            options["client_kwargs"] = client_kwargs
        return options

    def blob_options(self, sas_token: str | None = None) -> StorageOptions:
        """adlfs options for this container; ``sas_token`` (from a URL) replaces its own."""
        key = self.account_key.get_secret_value() if self.account_key is not None else None
        token = sas_token or (self.sas_token.get_secret_value() if self.sas_token else None)
        options = azure_urls.storage_options(
            self._blob_root(), account_key=None if sas_token else key, sas_token=token
        )
        register_secrets(secret_values(options))
        return options


_AZURE_FIELDS = (
    "account_name",
    "container_name",
    "endpoint",
    "protocol",
    "account_key",
    "sas_token",
)


def workspace_datastore() -> Datastore:
    """The built-in ``workspaceblobstore``: the workspace's local datastore folder."""
    return Datastore(type="local", url=str(datastore_root()))


# --- resolving URIs ------------------------------------------------------------------------

_DATASTORE_URI = re.compile(
    r"azureml://(?:subscriptions/[^/]+/resourcegroups/[^/]+/workspaces/[^/]+/)?"
    r"datastores/(?P<name>[^/]+)/paths/(?P<path>.*)",
    re.IGNORECASE,
)


def resolve_uri(
    uri: str,
    datastores: Callable[[str], Datastore],
    *,
    s3_stores: Iterable[Datastore] = (),
    blob_stores: Iterable[Datastore] = (),
) -> tuple[str, StorageOptions]:
    """``(uri, storage_options)`` that fsspec can open, for any URI a job accepts.

    - ``azureml://datastores/<name>/paths/<path>``: through ``datastores(name)`` (the
      built-in ``workspaceblobstore`` needs no lookup); an unknown name is a
      :class:`NotFoundError` listing the known ones.
    - ``s3://…``: the credentials of the datastore in ``s3_stores`` whose url is the
      longest prefix of it, else none (the AWS environment/profile/role chain).
    - Azure Blob Storage URLs (:mod:`blocks.azure_urls`): the canonical
      ``https://<account>.blob.…/<container>/<path>``, reached with the URL's own SAS
      token, else the credentials of the longest covering datastore in ``blob_stores``,
      else anonymously. ``az://`` URLs take their account from such a datastore.
    - other ``http(s)://…``: as given, no options. Local paths and ``file://``: absolute.
    """
    uri = uri.strip()
    if uri.lower().startswith("azureml:"):
        match = _DATASTORE_URI.fullmatch(uri)
        if not match:
            raise SpecError(
                f"'{mask(uri)}' is not a datastore path",
                hint="write azureml://datastores/<name>/paths/<path>",
            )
        store = _lookup(match["name"], datastores)
        return store.uri_for(match["path"]), store.storage_options()
    blob = parse_blob_url(uri)
    if blob is not None:
        return _resolve_blob(blob, list(blob_stores))
    if uri.startswith("s3://"):
        store = _covering(uri, s3_stores)
        return uri, store.storage_options() if store is not None else {}
    if "://" in uri and not uri.startswith("file://"):
        return uri, {}
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    return os.path.abspath(os.path.expanduser(path)), {}


def _lookup(name: str, datastores: Callable[[str], Datastore]) -> Datastore:
    if name == DEFAULT_DATASTORE:
        return workspace_datastore()
    try:
        return datastores(name)
    except KeyError as exc:
        raise NotFoundError(
            "datastore",
            name,
            known=[DEFAULT_DATASTORE],
            hint="register it with: pbe datastore create --name "
            f"{name} --type s3|local --url …, or -f datastore.yml",
        ) from exc


def _covering(uri: str, stores: Iterable[Datastore]) -> Datastore | None:
    target = uri.rstrip("/") + "/"
    matches = [s for s in stores if s.type != "local" and target.startswith(s.root() + "/")]
    return max(matches, key=lambda s: len(s.root()), default=None)


def _resolve_blob(blob: BlobPath, stores: list[Datastore]) -> tuple[str, StorageOptions]:
    if not blob.account:  # az://container/path with no AZURE_STORAGE_ACCOUNT_NAME
        accounts = {
            s.account_name
            for s in stores
            if s.type == "azure_blob" and s.container_name == blob.container
        }
        if len(accounts) != 1:
            raise SpecError(
                f"'az://{blob.container}/{blob.path}' names no storage account"
                + (
                    f" (datastores of {len(accounts)} accounts hold that container)"
                    if accounts
                    else ""
                ),
                hint=f"set {azure_urls.ACCOUNT_VARIABLE}, register an azure_blob datastore "
                "for the container, or write https://<account>.blob.core.windows.net/…",
            )
        blob = BlobPath(accounts.pop(), blob.container, blob.path, sas_token=blob.sas_token)
    store = _covering(blob.uri, stores)
    if blob.sas_token:
        if "sig=" not in blob.sas_token.lower():
            raise SpecError(
                f"'{blob.uri}?…': the query string is not a SAS token",
                hint="Blob Storage URLs take only a SAS token (sv=…&sig=…) after '?'",
            )
        if store is not None:  # the datastore's endpoint, the URL's token
            return blob.uri, store.blob_options(sas_token=blob.sas_token)
        options = azure_urls.storage_options(blob, sas_token=blob.sas_token)
        register_secrets(secret_values(options))
        return blob.uri, options
    if store is not None:
        return blob.uri, store.storage_options()
    return blob.uri, azure_urls.storage_options(blob)


# --- saved datastores (the Prefect API) ----------------------------------------------------


def block_name(name: str) -> str:
    """The Block document name of datastore ``name`` (Azure's ``_`` becomes Prefect's ``-``)."""
    candidate = name.strip().lower().replace("_", "-")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", candidate):
        raise SpecError(
            f"datastore name '{name}' is invalid",
            key="name",
            hint="use lowercase letters, digits, '_' or '-'",
        )
    return candidate


def save_datastore(name: str, datastore: Datastore, *, overwrite: bool = False) -> str:
    """Save ``datastore`` under ``name`` in the Prefect API; return the block document name."""
    document = block_name(name)
    if document == DEFAULT_DATASTORE:
        raise AlreadyExistsError(
            "datastore", name, hint=f"{DEFAULT_DATASTORE} is built in; choose another name"
        )
    if not overwrite and document in SavedDatastores().names():
        raise AlreadyExistsError("datastore", name, hint="pass overwrite (--overwrite)")
    datastore.save(document, overwrite=True)
    return document


class SavedDatastores:
    """Datastores saved as Blocks in the Prefect API, looked up by name and cached.

    Call it with a name (it is the ``datastores`` argument of :func:`resolve_uri`), or use
    :meth:`resolve`, which also offers the saved S3 datastores' credentials for ``s3://``.
    """

    def __init__(self) -> None:
        self._loaded: dict[str, Datastore] = {}
        self._names: list[str] | None = None

    def names(self) -> list[str]:
        """The saved datastores' names, plus the built-in default."""
        if self._names is None:
            self._names = sorted(set(_saved_names()) | {DEFAULT_DATASTORE})
        return self._names

    def __call__(self, name: str) -> Datastore:
        document = block_name(name)
        if document == DEFAULT_DATASTORE:
            return workspace_datastore()
        if document not in self._loaded:
            try:
                self._loaded[document] = Datastore.load(document)
            except ValueError as exc:  # Prefect: "Unable to find block document named …"
                raise NotFoundError(
                    "datastore",
                    name,
                    known=self.names(),
                    hint="register it with: pbe datastore create --name "
                    f"{name} --type s3|local --url …, or -f datastore.yml",
                ) from exc
        return self._loaded[document]

    def s3_stores(self) -> Iterator[Datastore]:
        """The saved S3 datastores (loaded lazily, when iterated)."""
        return self._of_type("s3")

    def blob_stores(self) -> Iterator[Datastore]:
        """The saved Azure Blob datastores (loaded lazily, when iterated)."""
        return self._of_type("azure_blob")

    def _of_type(self, kind: str) -> Iterator[Datastore]:
        for name in self.names():
            store = self(name)
            if store.type == kind:
                yield store

    def resolve(self, uri: str) -> tuple[str, StorageOptions]:
        """:func:`resolve_uri` against the saved datastores (and SAS tokens handed over)."""
        from blocks.sas_handoff import unstash

        return resolve_uri(
            unstash(uri), self, s3_stores=self.s3_stores(), blob_stores=self.blob_stores()
        )


def _saved_names(page: int = 200) -> list[str]:
    """Names of every saved Datastore block (none when the block type was never registered)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    names: list[str] = []
    with get_client(sync_client=True) as client:
        while True:
            try:
                documents = client.read_block_documents_by_type(
                    Datastore.get_block_type_slug(),
                    offset=len(names),
                    limit=page,
                    include_secrets=False,
                )
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code == 404:  # no datastore was ever saved
                    return []
                raise
            names.extend(d.name for d in documents if d.name and not d.is_anonymous)
            if len(documents) < page:
                return names
