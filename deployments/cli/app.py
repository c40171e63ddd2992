"""``pbe``: the root of the command tree and :func:`main`, which parses and runs a verb.

Usage errors (an unknown group, verb or option, a missing or malformed value) print a short
usage line, ``ERROR: …`` and ``Hint: …`` on stderr and exit 2, without a traceback; a verb's
own errors exit 1 (:func:`deployments.cli.common.run`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cyclopts import App, CycloptsError, Parameter

from deployments.cli import (
    batch_deployment,
    batch_endpoint,
    compute,
    data,
    datastore,
    job,
    model,
    server,
)
from deployments.cli.common import CommandGroup

__all__ = ["GROUPS", "app", "main"]

GROUPS: tuple[CommandGroup, ...] = (
    model.group,
    data.group,
    compute.group,
    datastore.group,
    batch_endpoint.group,
    batch_deployment.group,
    job.group,
    server.group,
)
"""The groups in the order ``pbe --help`` lists them; a new group is one more entry."""

HELP_FLAGS = ("--help", "-h")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prefect-batch-endpoints")
    except PackageNotFoundError:
        return "prefect-batch-endpoints (not installed)"


def _default(value: object) -> str | None:
    """The ``[default: …]`` of an option's help: none for a flag (it is off) or for None."""
    return None if value is None or isinstance(value, bool) else str(value)


app = App(
    name="pbe",
    help="Azure ML batch endpoints on Prefect and Dask: write pbe where you wrote az ml.",
    help_flags=HELP_FLAGS,
    version=_version,
    version_format="plaintext",
    help_format="plaintext",
    # az/argparse behaviour: flags have no --no-X twin; a repeated option's last value wins
    default_parameter=Parameter(negative=(), allow_repeating=True, show_default=_default),
)
for _order, _group in enumerate(GROUPS):
    _group.app.sort_key = _order
    app.command(_group.app)


def _usage_error(tokens: Sequence[str], message: str) -> int:
    """Print the usage line of the command ``tokens`` name, ``message`` and a hint; 2."""
    chain, apps, _ = app.parse_commands(list(tokens))
    command = " ".join(("pbe", *chain))
    try:
        from cyclopts.help import format_usage

        with app.app_stack(apps):
            usage = format_usage(app, chain, execution_path=apps)
        usage = getattr(usage, "plain", str(usage)).strip()
    except Exception:  # the usage line is a courtesy: never fail on it
        usage = f"{command} [OPTIONS]"
    if not usage.startswith("Usage:"):
        usage = f"Usage: {usage}"
    what = "verbs" if len(chain) < 2 else "options"
    print(usage, file=sys.stderr)
    print(f"ERROR: {message}", file=sys.stderr)
    print(f"Hint: {command} --help lists its {what}, with examples.", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run ``pbe argv`` (default ``sys.argv[1:]``) and return the exit code."""
    tokens = list(sys.argv[1:] if argv is None else argv)
    try:
        command, bound, _ = app.parse_args(tokens, exit_on_error=False, print_error=False)
    except CycloptsError as exc:
        return _usage_error(tokens, str(exc).strip().splitlines()[0])
    if getattr(command, "pbe_verb", None) is not None:  # a verb: run it
        return command(*bound.args, **bound.kwargs)
    # else one of Cyclopts' own: help (asked for, or for a bare pbe), or --version
    if tokens and not any(t in (*HELP_FLAGS, "--version") for t in tokens):
        verbs = next((list(g.verbs) for g in GROUPS if g.name == tokens[0]), [])
        return _usage_error(tokens, f"pbe {tokens[0]} needs a verb: {', '.join(verbs)}")
    command(*bound.args, **bound.kwargs)
    return 0 if tokens else 2
