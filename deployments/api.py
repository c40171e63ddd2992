"""The connection to Prefect: which server, one sync client, and its errors translated once.

``connect()`` picks the server (``PREFECT_API_URL``, or the embedded one of
:mod:`deployments.server`) and makes it the current Prefect setting for this process and
for the processes it starts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from blocks.errors import BatchEndpointError
from blocks.workspace import workspace_root
from deployments.server import EmbeddedPrefect, configured_api_url, work_pool_name

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

__all__ = [
    "client",
    "connect",
    "ensure_work_pool",
    "external_api_url",
    "translate_error",
    "ui_url",
]


@contextlib.contextmanager
def connect() -> Iterator[str]:
    """Use the configured or the embedded Prefect server for the enclosed code.

    The environment and Prefect's settings are restored afterwards, so ``main()`` can be
    called in-process (tests do).
    """
    url = external_api_url() or EmbeddedPrefect(workspace_root()).ensure()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url  # for ui_url() and any process started meanwhile
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous


def external_api_url() -> str | None:
    """The user's Prefect server: ``PREFECT_API_URL`` from the environment or the active
    Prefect profile (``prefect config set PREFECT_API_URL=...``); None means embedded."""
    if url := configured_api_url():
        return url
    from prefect.settings import PREFECT_API_URL
    from prefect.settings.profiles import load_current_profile

    # the persisted profile only: not settings a surrounding context (a test) put in place
    return load_current_profile().settings.get(PREFECT_API_URL) or None


def client() -> SyncPrefectClient:
    """A sync Prefect client (use it as a context manager)."""
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def ui_url(path: str = "") -> str:
    """The Prefect UI address, e.g. of a flow run: ``ui_url(f"/runs/flow-run/{id}")``."""
    base = os.environ.get("PREFECT_UI_URL")
    if not base:
        api = os.environ.get("PREFECT_API_URL", "")
        base = api.removesuffix("/").removesuffix("/api")
    return f"{base.rstrip('/')}{path}"


def ensure_work_pool(prefect: SyncPrefectClient) -> str:
    """Create the process work pool endpoints are deployed to, unless it exists."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    name = work_pool_name()
    try:
        prefect.read_work_pool(name)
        return name
    except ObjectNotFound:
        pass
    template = ProcessWorker.get_default_base_job_template()
    with contextlib.suppress(ObjectAlreadyExists):  # the worker made it meanwhile
        prefect.create_work_pool(
            WorkPoolCreate(name=name, type="process", base_job_template=template)
        )
    return name


def translate_error(exc: BaseException) -> BatchEndpointError | None:
    """The user-facing error for a Prefect or HTTP failure, or None if it is not one."""
    import httpx

    url = os.environ.get("PREFECT_API_URL", "(unset)")
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return BatchEndpointError(
            f"Cannot reach the Prefect API at {url}: {exc}",
            hint="Start the server (prefect server start) or unset PREFECT_API_URL to let "
            "pbe run its own.",
        )
    from prefect.exceptions import PrefectHTTPStatusError

    if isinstance(exc, PrefectHTTPStatusError):
        detail: Any = ""
        with contextlib.suppress(Exception):
            detail = exc.response.json().get("detail", "")
        return BatchEndpointError(
            f"The Prefect API at {url} refused the request "
            f"({exc.response.status_code}): {detail or exc}",
            hint="Run with --debug for the full request; check the server's log.",
        )
    return None
