"""What every ``pbe`` verb shares: the global options, the ``@group.verb`` decorator, running
a verb (workspace, Prefect connection, rendering) and turning errors into ``ERROR:``/``Hint:``.

A verb is one typed function: its keyword-only parameters are its options (``Annotated``
with :class:`cyclopts.Parameter` for the flag names, the docstring's ``Parameters`` section
for their help), it returns what is printed. :meth:`CommandGroup.verb` registers it and adds
the global options (:class:`GlobalOptions`). Nothing here imports Prefect: a verb's module
imports its domain module inside the function, after the server is chosen.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from cyclopts import App, Group, Parameter

__all__ = [
    "AZ",
    "JOB_COLUMNS",
    "CommandGroup",
    "GlobalOptions",
    "JobEnded",
    "MaxResults",
    "Name",
    "NoWait",
    "OptionalName",
    "Sets",
    "Yes",
    "confirm",
    "finished",
]

# --- the global options ----------------------------------------------------------------------

Format = Literal["json", "jsonc", "tsv", "table", "yaml", "yamlc", "none"]
"""``-o``: the formats of :mod:`deployments.output` (``FORMATS``), as ``az`` names them."""

GLOBAL = Group(
    "Global options",
    help="Also accepted and ignored, so az ml scripts run unchanged: -g/--resource-group, "
    "-w/--workspace-name, --subscription, --only-show-errors, --verbose.",
    sort_key=100,
)
AZ = Group("Accepted and ignored (az compatibility)", sort_key=90)
"""The panel of a verb's own az flags that mean nothing here (--no-wait, compute's --size …)."""


@Parameter(name="*", group=GLOBAL)
@dataclass(kw_only=True)
class GlobalOptions:
    """The options every verb takes (``--query``, ``-o``, ``--debug``, ``--workspace``)."""

    query: str | None = None
    """JMESPath query applied to the result, e.g. name or "{Name:name, Defaults:defaults}"."""

    output: Annotated[Format, Parameter(name=["--output", "-o"])] = "json"
    """Output format."""

    debug: bool = False
    """Show the traceback of an error."""

    workspace: str | None = None
    """Workspace root (default $PBE_HOME or ~/.pbe)."""

    only_show_errors: Annotated[bool, Parameter(show=False)] = False
    """Accepted and ignored (az compatibility)."""

    verbose: Annotated[bool, Parameter(show=False)] = False
    """Accepted and ignored (az compatibility)."""

    resource_group: Annotated[
        str | None, Parameter(name=["--resource-group", "-g"], show=False)
    ] = None
    """Accepted and ignored: there is no Azure resource group (az compatibility)."""

    workspace_name: Annotated[
        str | None, Parameter(name=["--workspace-name", "-w"], show=False)
    ] = None
    """Accepted and ignored: the workspace is --workspace or $PBE_HOME (az compatibility)."""

    subscription: Annotated[str | None, Parameter(show=False)] = None
    """Accepted and ignored: there is no Azure subscription (az compatibility)."""


# --- option types shared by several verbs (their help comes from each verb's docstring) -----

Name = Annotated[str, Parameter(name=["--name", "-n"])]
OptionalName = Annotated[str | None, Parameter(name=["--name", "-n"])]
Yes = Annotated[bool, Parameter(name=["--yes", "-y"])]
Sets = Annotated[tuple[str, ...], Parameter(name="--set", show_default=False)]
NoWait = Annotated[bool, Parameter(name="--no-wait", group=AZ)]
MaxResults = Annotated[int, Parameter(help="Most jobs listed, newest first.")]

JOB_COLUMNS = {
    "Name": "name",
    "Status": "status",
    "Endpoint": "endpoint_name",
    "Deployment": "deployment_name",
    "Created": "creation_context.created_at",
}
"""The table columns of job records (``job``, ``list-jobs``, ``invoke``)."""

# --- groups and verbs ----------------------------------------------------------------------


@dataclass(frozen=True)
class Verb:
    """A registered verb: its function and how its result is run and rendered."""

    group: str
    name: str
    function: Callable[..., Any]
    prefect: bool
    columns: dict[str, str] | None


class CommandGroup:
    """One ``pbe <group>``: a :class:`cyclopts.App` and the verbs registered on it.

    ``examples`` are ``pbe <group> <verb> …`` command lines (a ``#`` comment may follow
    each): the group's help lists them all, a verb's help those of that verb.
    ``prefect`` says whether its verbs need the Prefect server (a verb can override it),
    ``columns`` the ``-o table`` columns of its records (title -> JMESPath).
    """

    def __init__(
        self,
        name: str,
        help: str,
        *,
        examples: Sequence[str],
        prefect: bool = True,
        columns: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.examples = tuple(examples)
        self.prefect = prefect
        self.columns = columns
        self.verbs: dict[str, Verb] = {}
        self.app = App(
            name=name, help=help, help_epilogue=_examples(self.examples), version_flags=()
        )

    def verb(
        self,
        function: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        prefect: bool | None = None,
        columns: dict[str, str] | None = None,
    ) -> Any:
        """Register ``function`` as ``pbe <group> <name>`` (default: its name, dashed)."""
        if function is None:
            return functools.partial(self.verb, name=name, prefect=prefect, columns=columns)
        verb_name = name or function.__name__.strip("_").replace("_", "-")
        spec = Verb(
            self.name,
            verb_name,
            function,
            self.prefect if prefect is None else prefect,
            columns or self.columns,
        )
        command = _command(spec)
        mine = [e for e in self.examples if e.startswith(f"pbe {self.name} {verb_name} ")]
        self.app.command(
            command, name=verb_name, help_epilogue=_examples(mine) or "", sort_key=len(self.verbs)
        )
        self.verbs[verb_name] = spec
        return function


def _examples(lines: Sequence[str]) -> str | None:
    if not lines:
        return None
    return "Examples:\n" + "\n".join(f"  {line}" for line in lines)


def _command(spec: Verb) -> Callable[..., int]:
    """The function Cyclopts parses for: the verb's signature plus ``GlobalOptions``."""
    signature = inspect.signature(spec.function)
    takes_globals = "options" in signature.parameters
    parameters = list(signature.parameters.values())
    for parameter in parameters:
        if parameter.kind is not parameter.KEYWORD_ONLY:
            raise TypeError(
                f"pbe {spec.group} {spec.name}: parameter {parameter.name!r} must "
                "be keyword-only (options only: pbe takes no positional arguments)"
            )
    # the global options: appended, or in place of the verb's own ``options`` parameter
    parameters = [p for p in parameters if p.name != "options"]
    parameters.append(
        inspect.Parameter(
            "options",
            inspect.Parameter.KEYWORD_ONLY,
            default=GlobalOptions(),
            annotation=GlobalOptions,
        )
    )

    @functools.wraps(spec.function)
    def command(*, options: GlobalOptions | None = None, **kwargs: Any) -> int:
        options = options or GlobalOptions()
        if takes_globals:
            kwargs["options"] = options
        return run(spec, options, kwargs)

    command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    command.pbe_verb = spec  # type: ignore[attr-defined]
    return command


# --- running a verb -----------------------------------------------------------------------


def run(spec: Verb, options: GlobalOptions, kwargs: dict[str, Any]) -> int:
    """Run a parsed verb: its result printed, its error as ERROR/Hint; the exit code."""
    if options.workspace:
        os.environ["PBE_HOME"] = os.path.abspath(os.path.expanduser(options.workspace))
    try:
        if spec.prefect:
            from deployments.api import connect

            with connect():
                result = spec.function(**kwargs)
        else:
            result = spec.function(**kwargs)
        _print(result, options, spec.columns)
        return 0
    except JobEnded as ended:
        if not ended.record.get("_quiet"):
            _print(ended.record, options, spec.columns)
        print(
            f"ERROR: job '{ended.record['name']}' ended {ended.record['status']}: "
            f"{ended.record.get('message') or ''}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line and a hint; the traceback only with --debug
        return _error(exc, options.debug)


def _print(result: Any, options: GlobalOptions, columns: dict[str, str] | None) -> None:
    from deployments.output import apply_query, render

    text = render(
        apply_query(result, options.query), options.output, None if options.query else columns
    )
    if text:
        print(text)


def _error(exc: BaseException, debug: bool) -> int:
    from blocks.errors import BatchEndpointError

    if not isinstance(exc, BatchEndpointError):
        from deployments.api import translate_error

        exc = translate_error(exc) or exc
    if debug:
        traceback.print_exception(exc)
    if isinstance(exc, BatchEndpointError):
        print(f"ERROR: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"Hint: {exc.hint}", file=sys.stderr)
    else:
        print(f"ERROR: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        print("Hint: run again with --debug for the traceback.", file=sys.stderr)
    return 1


# --- helpers for verbs ---------------------------------------------------------------------


class JobEnded(Exception):
    """A job waited for ended without completing: print it, then exit 1."""

    def __init__(self, record: dict) -> None:
        super().__init__(record.get("message") or record["status"])
        self.record = record


def finished(record: dict, *, show: bool = True) -> dict | None:
    """``record`` of a job that ended: returned when Completed, else :class:`JobEnded`."""
    if record["status"] != "Completed":
        raise JobEnded(record if show else {**record, "_quiet": True})
    return record if show else None


def confirm(yes: bool, what: str) -> None:
    """Ask before deleting ``what`` (unless ``--yes``); refuse without a terminal."""
    from blocks.errors import BatchEndpointError

    if yes:
        return
    if sys.stdin.isatty():
        answer = input(f"Are you sure you want to delete {what}? (y/n): ")
        if answer.strip().lower() in ("y", "yes"):
            return
    raise BatchEndpointError(
        f"not deleting {what} without confirmation", hint="Pass --yes to delete without asking."
    )
