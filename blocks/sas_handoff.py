"""SAS tokens handed from ``pbe`` to a job without being recorded as a run parameter.

A flow run's parameters are stored by the Prefect server and shown in its UI, so
``pbe batch-endpoint invoke --input 'https://<account>.blob.core.windows.net/c/p?<SAS>'``
does not pass the token there: :func:`stash` saves it as a Prefect ``Secret`` block
named ``pbe-sas-<digest>`` and passes ``https://…/c/p?{{ prefect.blocks.secret.pbe-sas-
<digest> }}`` (Prefect's placeholder syntax, shown as is). The job's
:meth:`blocks.datastore.SavedDatastores.resolve` puts the token back with :func:`unstash`.
(Prefect resolves such placeholders only in job variables, never in parameters.)
"""

from __future__ import annotations

import hashlib
import re

from blocks.azure_urls import parse_blob_url

_PLACEHOLDER = re.compile(
    r"\?\{\{\s*prefect\.blocks\.secret\.(?P<name>pbe-sas-[0-9a-f]{16})\s*\}\}\Z"
)


def stash(uri: str) -> str:
    """``uri`` with its SAS token replaced by a reference to a saved Secret block."""
    blob = parse_blob_url(uri) if "?" in uri and "{{" not in uri else None
    if blob is None or not blob.sas_token:
        return uri
    from prefect.blocks.system import Secret

    name = "pbe-sas-" + hashlib.sha256(blob.sas_token.encode()).hexdigest()[:16]
    Secret(value=blob.sas_token).save(name, overwrite=True)
    return f"{uri.split('?', 1)[0]}?{{{{ prefect.blocks.secret.{name} }}}}"


def unstash(uri: str) -> str:
    """``uri`` with a :func:`stash` reference replaced by the saved SAS token."""
    found = _PLACEHOLDER.search(uri)
    if found is None:
        return uri
    from prefect.blocks.system import Secret

    token = Secret.load(found["name"]).get()
    return f"{uri[: found.start()]}?{token}"
