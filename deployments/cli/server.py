"""``pbe server``: the embedded Prefect server and worker (when PREFECT_API_URL is unset)."""

from __future__ import annotations

from typing import Any

from deployments.cli.common import CommandGroup

group = CommandGroup(
    "server",
    "The embedded Prefect server and worker (when PREFECT_API_URL is unset).",
    prefect=False,
    examples=[
        "pbe server start  # optional: the first command that needs it starts it",
        "pbe server status --query api_url -o tsv",
        "pbe server stop",
    ],
)


def _external() -> dict[str, Any] | None:
    """What the server verbs say when PREFECT_API_URL names the user's own server."""
    from deployments.api import external_api_url

    if url := external_api_url():
        return {
            "mode": "external",
            "api_url": url,
            "running": True,
            "note": "PREFECT_API_URL is set: pbe uses that server and starts nothing",
        }
    return None


def _embedded() -> Any:
    from blocks.workspace import workspace_root
    from deployments.server import EmbeddedPrefect

    return EmbeddedPrefect(workspace_root())


@group.verb
def start() -> dict[str, Any]:
    """Start the embedded server and worker (unless they run)."""
    if external := _external():
        return external
    embedded = _embedded()
    embedded.ensure()
    return embedded.status()


@group.verb
def status() -> dict[str, Any]:
    """Show whether the embedded server and worker run, and where."""
    return _external() or _embedded().status()


@group.verb
def stop() -> dict[str, Any]:
    """Stop the embedded server and worker (and the runs the worker started)."""
    return _external() or _embedded().stop()
