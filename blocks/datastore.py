"""Datastores: named places where job inputs and outputs live, and resolving URIs to them.

A :class:`Datastore` is an S3 bucket prefix (any S3-compatible server, through
``endpoint_url``) or a local folder, saved as a Prefect Block. Users name it in
``azureml://datastores/<name>/paths/<path>``. The built-in ``workspaceblobstore`` is the
workspace's local folder and needs no saved block.

:func:`resolve_uri` is pure: it turns any job URI (local path, ``s3://``, ``https://``,
datastore path) into ``(uri, storage_options)`` given a lookup function, so it is tested
without a Prefect server. :class:`SavedDatastores` is that lookup against the Prefect API.
:func:`mask` removes secrets from any text before it reaches a message, log or artifact.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, model_validator

from blocks.errors import AlreadyExistsError, NotFoundError, SpecError
from blocks.workspace import DEFAULT_DATASTORE, datastore_root

DatastoreType = Literal["s3", "local"]
StorageOptions = dict[str, Any]


class Datastore(Block):
    """An S3 bucket prefix or a local folder that ``azureml://datastores/<name>/…`` names."""

    model_config = ConfigDict(hide_input_in_errors=True)  # never echo a secret back

    _block_type_name = "Batch Datastore"
    _block_type_slug = "batch-datastore"
    _description = "Where batch job inputs and outputs live: an S3 bucket prefix or a folder."

    type: DatastoreType = Field(description="s3: an S3 or S3-compatible bucket; local: a folder.")
    url: str = Field(description="s3://bucket[/prefix] for type s3; a folder path for local.")
    endpoint_url: str | None = Field(
        None, description="S3-compatible server, e.g. http://127.0.0.1:9000; unset means AWS."
    )
    key: SecretStr | None = Field(
        None, description="Access key id; unset means the standard AWS credential chain."
    )
    secret: SecretStr | None = Field(None, description="Secret access key, given with key.")
    region: str | None = Field(None, description="S3 region, e.g. eu-west-1 (optional).")

    @model_validator(mode="after")
    def _consistent(self) -> Datastore:
        if self.type == "s3":
            if not re.match(r"s3://[^/\s]+", self.url):
                raise SpecError(
                    "an s3 datastore needs url s3://<bucket>[/<prefix>]", key="url",
                    hint="e.g. --url s3://my-bucket/batch-data",
                )
            if (self.key is None) != (self.secret is None):
                raise SpecError(
                    "key and secret go together", key="key" if self.key is None else "secret",
                    hint="give both --key and --secret, or neither to use the AWS "
                    "credential chain (environment, profile, instance role)",
                )
            if self.endpoint_url and not re.match(r"https?://", self.endpoint_url):
                raise SpecError("endpoint_url must start with http:// or https://",
                                key="endpoint_url")
            return self
        if "://" in self.url and not self.url.startswith("file://"):
            raise SpecError(f"a local datastore needs a folder, not '{mask(self.url)}'",
                            key="url", hint="use --type s3 for s3:// URLs")
        extras = [name for name in ("endpoint_url", "key", "secret", "region")
                  if getattr(self, name) is not None]
        if extras:
            raise SpecError(f"{', '.join(extras)} only apply to type s3, not local",
                            key=extras[0])
        return self

    def root(self) -> str:
        """The datastore's base URI: ``s3://bucket/prefix`` or an absolute folder."""
        if self.type == "s3":
            return self.url.rstrip("/")
        folder = self.url[len("file://"):] if self.url.startswith("file://") else self.url
        return os.path.abspath(os.path.expanduser(folder))

    def uri_for(self, path: str) -> str:
        """The URI of ``path`` inside this datastore; ``..`` may not leave it."""
        parts = path.replace("\\", "/").split("/")
        if ".." in parts:
            raise SpecError(f"datastore path '{path}' goes outside the datastore",
                            hint="paths inside a datastore may not use '..'")
        clean = posixpath.normpath("/" + "/".join(parts)).lstrip("/")
        if not clean:
            return self.root() + "/" if self.type == "s3" else self.root()
        trailing = "/" if path.endswith("/") else ""
        if self.type == "s3":
            return f"{self.root()}/{clean}{trailing}"
        return os.path.join(self.root(), *clean.split("/")) + trailing

    def storage_options(self) -> StorageOptions:
        """fsspec options that reach this datastore (registers its secrets for :func:`mask`)."""
        if self.type != "s3":
            return {}
        options: StorageOptions = {}
        if self.key is not None and self.secret is not None:
            options["key"] = self.key.get_secret_value()
            options["secret"] = self.secret.get_secret_value()
            _register_secrets(options.values())
        client_kwargs = {k: v for k, v in (("endpoint_url", self.endpoint_url),
                                           ("region_name", self.region)) if v}
        if client_kwargs:
            options["client_kwargs"] = client_kwargs
        return options


def workspace_datastore() -> Datastore:
    """The built-in ``workspaceblobstore``: the workspace's local datastore folder."""
    return Datastore(type="local", url=str(datastore_root()))


# --- masking -------------------------------------------------------------------------------

_KNOWN_SECRETS: set[str] = set()
_MIN_SECRET = 4  # shorter values cannot be hidden without mangling ordinary words
_SECRET_OPTION_KEYS = {
    "key", "secret", "token", "password", "aws_access_key_id", "aws_secret_access_key",
    "aws_session_token", "account_key", "sas_token", "client_secret", "credential",
}
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"]+@")
_QUERY_SECRET = re.compile(
    r"(?P<name>[?&](?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token"
    r"|x-goog-signature|x-goog-credential|token|access_token|key|secret|password|code)=)"
    r"[^&\s'\"#]+",
    re.IGNORECASE,
)


def _register_secrets(values: Iterable[Any]) -> None:
    _KNOWN_SECRETS.update(v for v in values if isinstance(v, str) and len(v) >= _MIN_SECRET)


def secret_values(storage_options: Mapping[str, Any]) -> list[str]:
    """The secret values inside fsspec ``storage_options`` (nested dicts included)."""
    found: list[str] = []
    for name, value in storage_options.items():
        if isinstance(value, Mapping):
            found.extend(secret_values(value))
        elif isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, str) and name.lower() in _SECRET_OPTION_KEYS:
            found.append(value)
    return found


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with secrets hidden: URL passwords, signed-URL tokens, and known secret values.

    Known values are those in ``secrets`` plus every datastore secret this process handed
    out through :meth:`Datastore.storage_options`.
    """
    text = str(text)
    for value in sorted({*_KNOWN_SECRETS, *secrets}, key=len, reverse=True):
        if len(value) >= _MIN_SECRET:
            text = text.replace(value, "***")
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    return _QUERY_SECRET.sub(r"\g<name>***", text)


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
) -> tuple[str, StorageOptions]:
    """``(uri, storage_options)`` that fsspec can open, for any URI a job accepts.

    - ``azureml://datastores/<name>/paths/<path>``: through ``datastores(name)`` (the
      built-in ``workspaceblobstore`` needs no lookup); an unknown name is a
      :class:`NotFoundError` listing the known ones.
    - ``s3://…``: the credentials of the datastore in ``s3_stores`` whose url is the
      longest prefix of it, else none (the AWS environment/profile/role chain).
    - ``http(s)://…``: as given, no options. Local paths and ``file://``: absolute paths.
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
    if uri.startswith("s3://"):
        store = _covering(uri, s3_stores)
        return uri, store.storage_options() if store is not None else {}
    if "://" in uri and not uri.startswith("file://"):
        return uri, {}
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return os.path.abspath(os.path.expanduser(path)), {}


def _lookup(name: str, datastores: Callable[[str], Datastore]) -> Datastore:
    if name == DEFAULT_DATASTORE:
        return workspace_datastore()
    try:
        return datastores(name)
    except KeyError as exc:
        raise NotFoundError("datastore", name, known=[DEFAULT_DATASTORE],
                            hint="register it with: pbe datastore create --name "
                            f"{name} --type s3|local --url …") from exc


def _covering(uri: str, stores: Iterable[Datastore]) -> Datastore | None:
    target = uri.rstrip("/") + "/"
    matches = [s for s in stores if s.type == "s3" and target.startswith(s.root() + "/")]
    return max(matches, key=lambda s: len(s.root()), default=None)


# --- saved datastores (the Prefect API) ----------------------------------------------------


def block_name(name: str) -> str:
    """The Block document name of datastore ``name`` (Azure's ``_`` becomes Prefect's ``-``)."""
    candidate = name.strip().lower().replace("_", "-")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", candidate):
        raise SpecError(f"datastore name '{name}' is invalid", key="name",
                        hint="use lowercase letters, digits, '_' or '-'")
    return candidate


def save_datastore(name: str, datastore: Datastore, *, overwrite: bool = False) -> str:
    """Save ``datastore`` under ``name`` in the Prefect API; return the block document name."""
    document = block_name(name)
    if document == DEFAULT_DATASTORE:
        raise AlreadyExistsError("datastore", name,
                                 hint=f"{DEFAULT_DATASTORE} is built in; choose another name")
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
                    "datastore", name, known=self.names(),
                    hint="register it with: pbe datastore create --name "
                    f"{name} --type s3|local --url …",
                ) from exc
        return self._loaded[document]

    def s3_stores(self) -> Iterator[Datastore]:
        """The saved S3 datastores (loaded lazily, when iterated)."""
        for name in self.names():
            store = self(name)
            if store.type == "s3":
                yield store

    def resolve(self, uri: str) -> tuple[str, StorageOptions]:
        """:func:`resolve_uri` against the saved datastores."""
        return resolve_uri(uri, self, s3_stores=self.s3_stores())


def _saved_names(page: int = 200) -> list[str]:
    """Names of every saved Datastore block (none when the block type was never registered)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    names: list[str] = []
    with get_client(sync_client=True) as client:
        while True:
            try:
                documents = client.read_block_documents_by_type(
                    Datastore.get_block_type_slug(), offset=len(names), limit=page,
                    include_secrets=False,
                )
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code == 404:  # no datastore was ever saved
                    return []
                raise
            names.extend(d.name for d in documents if d.name and not d.is_anonymous)
            if len(documents) < page:
                return names
