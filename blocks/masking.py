"""Masking: secrets removed from any text before it reaches a message, log or artifact.

:func:`mask` hides URL passwords, signed-URL tokens (``sig=``, ``X-Amz-Signature=``, …),
the secrets of Azure connection strings, and every secret value this process has seen:
those :func:`register_secrets` was given (datastores register theirs when they hand out
storage options) plus those passed in. :func:`secret_values` finds the secrets inside
fsspec storage options.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import SecretStr

from blocks import azure_urls

_KNOWN_SECRETS: set[str] = set()
_MIN_SECRET = 4  # shorter values cannot be hidden without mangling ordinary words
_SECRET_OPTION_KEYS = {
    "key",
    "secret",
    "token",
    "password",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "account_key",
    "sas_token",
    "client_secret",
    "credential",
    "connection_string",
}
_USERINFO = re.compile(  # not wasbs:// or abfss://, whose "user" is the container
    r"(?P<scheme>\b(?!(?:wasbs?|abfss?)://)[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"]+@"
)
_QUERY_SECRET = re.compile(
    r"(?P<name>[?&](?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token"
    r"|x-goog-signature|x-goog-credential|token|access_token|key|secret|password|code)=)"
    r"[^&\s'\"#]+",
    re.IGNORECASE,
)
_CONNECTION_SECRET = re.compile(r"(?P<name>\b(?:AccountKey|SharedAccessSignature)=)[^;\s'\"]+")


def register_secrets(values: Iterable[Any]) -> None:
    """Remember secret values, so that :func:`mask` hides them from now on."""
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
            if name.lower() == "connection_string":
                found.extend(azure_urls.connection_secrets(value))
    return found


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with secrets hidden: URL passwords, signed-URL tokens, and known secret values.

    Known values are those in ``secrets`` plus every secret this process registered (each
    datastore's, when it hands out storage options).
    """
    text = str(text)
    for value in sorted({*_KNOWN_SECRETS, *secrets}, key=len, reverse=True):
        if len(value) >= _MIN_SECRET:
            text = text.replace(value, "***")
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _CONNECTION_SECRET.sub(r"\g<name>***", text)
    return _QUERY_SECRET.sub(r"\g<name>***", text)
