"""``pbe``'s command tree without a Prefect server: help, examples, usage errors. Fast.

The tree is walked through Cyclopts, so a verb added later is checked too: every option has
help text, every group shows examples (which must parse), and usage errors exit 2 with a
short message and no traceback.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from deployments.cli import main
from deployments.cli.app import GROUPS, app
from deployments.cli.common import Format
from deployments.output import FORMATS

REPO = Path(__file__).resolve().parents[1]


def _verbs():
    for group_name in (name for name in app if not name.startswith("-")):
        group = app[group_name]
        for verb_name in (name for name in group if not name.startswith("-")):
            yield group_name, verb_name, group, group[verb_name]


def _pbe(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _examples(help_text: str) -> list[str]:
    """The command lines of the help's Examples section (continuation lines joined)."""
    section = help_text.split("Examples:\n", 1)[1]
    lines = [line.strip() for line in section.splitlines() if line.strip()]
    commands, current = [], ""
    for line in lines:
        current = f"{current} {line}".strip()
        if current.endswith("\\"):
            current = current[:-1].strip()
            continue
        commands.append(current)
        current = ""
    return commands


def test_every_group_and_verb_is_registered():
    assert [name for name in app if not name.startswith("-")] == [g.name for g in GROUPS]
    for group in GROUPS:
        assert [v for v in app[group.name] if not v.startswith("-")] == list(group.verbs)


@pytest.mark.parametrize("group", [g.name for g in GROUPS])
def test_group_help_shows_examples_that_parse(capsys, group):
    code, out, err = _pbe(capsys, group, "--help")
    assert code == 0, err
    for line in (x for g in GROUPS if g.name == group for e in g.examples for x in e.splitlines()):
        assert len(line) <= 76, f"an example wider than a terminal wraps: {line!r}"
    examples = _examples(out)
    assert len(examples) >= 3, out
    verbs = set()
    for example in examples:
        tokens = shlex.split(example, comments=True)
        assert tokens[:2] == ["pbe", group], example
        command, _, _ = app.parse_args(tokens[1:], exit_on_error=False, print_error=False)
        verbs.add(command.pbe_verb.name)
    assert {"create", "show"} <= verbs or group in ("job", "server"), verbs


def test_a_verbs_help_shows_its_own_examples(capsys):
    code, out, _ = _pbe(capsys, "batch-endpoint", "invoke", "--help")
    assert code == 0
    examples = _examples(out)
    assert examples and all(e.startswith("pbe batch-endpoint invoke ") for e in examples)
    for option in ("--mini-batch-size", "--instance-count", "--input-type", "--query"):
        assert option in out


def test_every_option_of_every_verb_has_help():
    missing, verbs = [], 0
    for group_name, verb_name, group, verb in _verbs():
        verbs += 1
        assert verb.help and verb.help != "", (group_name, verb_name)
        with app.app_stack([app, group, verb]):
            arguments = verb.assemble_argument_collection(parse_docstring=True)
        for argument in arguments:
            if argument.children:  # the GlobalOptions dataclass itself: its fields are checked
                continue
            if not (argument.parameter.help or "").strip():
                missing.append(f"pbe {group_name} {verb_name} {argument.names[0]}")
    assert verbs >= 30
    assert not missing, missing


def test_output_formats_are_those_of_the_renderer():
    assert typing.get_args(Format) == FORMATS


def test_usage_errors_exit_2_with_a_short_message(capsys):
    for args, phrase in [
        (("batch-endpoint", "show"), "--name"),  # a missing required option
        (("batch-endpoint", "frobnicate"), "frobnicate"),  # an unknown verb
        (("no-such-group",), "no-such-group"),
        (("model", "list", "--no-such-flag"), "--no-such-flag"),
        (("model", "show", "-n", "m", "extra"), "extra"),  # no positional arguments
        (
            ("batch-endpoint", "invoke", "-n", "e", "--input", "x", "--mini-batch-size", "ten"),
            "--mini-batch-size",
        ),
        (("model", "list", "-o", "xml"), "xml"),
        (("compute", "create", "-n", "c", "--type", "kubernetes"), "kubernetes"),
        (("batch-endpoint", "invoke", "-n", "e", "--input", "x", "--no-wait"), "--no-wait"),
        (("model", "list", "--no-debug"), "--no-debug"),  # flags have no --no-X twin
        (("model",), "needs a verb"),
    ]:
        code, out, err = _pbe(capsys, *args)
        assert code == 2, (args, out, err)
        assert out == ""
        usage, error, hint = err.strip().splitlines()
        assert usage.startswith("Usage: pbe"), err
        assert error.startswith("ERROR: ") and phrase in error, err
        assert hint.startswith("Hint: pbe"), err


def test_a_usage_error_of_a_real_process_has_no_traceback():
    for args in (["batch-endpoint", "show"], ["batch-endpoint", "frobnicate"]):
        done = subprocess.run(
            [sys.executable, "-m", "deployments.cli", *args],
            capture_output=True,
            text=True,
            cwd=str(REPO),
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
        assert done.stderr.startswith("Usage: pbe batch-endpoint")


def test_help_version_and_a_bare_pbe(capsys):
    code, out, _ = _pbe(capsys, "--help")
    assert code == 0 and all(g.name in out for g in GROUPS)
    assert _pbe(capsys, "-h")[0] == 0
    code, out, _ = _pbe(capsys, "--version")
    assert code == 0 and out.strip()
    code, out, _ = _pbe(capsys)  # no group: the help, and a usage error's exit code
    assert code == 2 and "batch-endpoint" in out


def test_az_flags_are_accepted_and_a_repeated_option_keeps_the_last():
    _, bound, _ = app.parse_args(
        [
            "compute",
            "create",
            "-n",
            "c",
            "--type",
            "amlcompute",
            "--size",
            "Standard_D2",
            "--tier",
            "low",
            "--location",
            "eu",
            "--idle-time-before-scale-down",
            "120",
            "--no-wait",
            "-g",
            "rg",
            "-w",
            "ws",
            "--subscription",
            "s",
            "--only-show-errors",
            "--verbose",
            "--min-instances",
            "-1",
            "-o",
            "tsv",
            "-o",
            "table",
        ],
        exit_on_error=False,
        print_error=False,
    )
    assert bound.arguments["min_instances"] == -1  # a negative number is a value
    assert bound.arguments["options"].output == "table"
    _, bound, _ = app.parse_args(
        [
            "batch-deployment",
            "create",
            "-f",
            "d.yml",
            "--all-traffic",
            "--set",
            "a=1",
            "--set",
            "b=2",
        ],
        exit_on_error=False,
        print_error=False,
    )
    assert bound.arguments["sets"] == ("a=1", "b=2")


def test_a_verb_takes_options_only():
    from deployments.cli.common import CommandGroup

    group = CommandGroup("scratch", "A scratch group.", examples=[])
    with pytest.raises(TypeError, match="keyword-only"):
        group.verb(lambda name: name)


def test_help_does_not_import_prefect():
    code = (
        "import sys; from deployments.cli import main; code = main(['--help']); "
        "code += main(['batch-endpoint', 'invoke', '--help']); "
        "assert not [m for m in sys.modules if m.startswith('prefect')]; sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO), timeout=60
    )
    assert done.returncode == 0, done.stderr
