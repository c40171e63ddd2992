"""The naming rule shared by endpoints and deployments.

A name is 3–32 characters long, starts with a letter, uses only ``[a-zA-Z0-9-]`` and ends
with a letter or a digit (the rule ``az ml`` applies to batch endpoints and deployments).
"""

from __future__ import annotations

import re

from blocks.errors import SpecError

__all__ = ["NAME_RULE", "validate_name"]

NAME_RULE = (
    "3-32 characters, starting with a letter, using only letters, digits and '-', "
    "and ending with a letter or a digit"
)

_ALLOWED = re.compile(r"[A-Za-z0-9-]+")


def _problem(name: object) -> str | None:
    """Say what is wrong with ``name``, or return None when it follows the rule."""
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if not 3 <= len(name) <= 32:
        return f"has {len(name)} characters"
    if not name[0].isascii() or not name[0].isalpha():
        return "does not start with a letter"
    if not _ALLOWED.fullmatch(name):
        bad = sorted({ch for ch in name if not _ALLOWED.fullmatch(ch)})
        return "contains " + ", ".join(repr(ch) for ch in bad)
    if name.endswith("-"):
        return "ends with '-'"
    return None


def validate_name(
    kind: str, name: str, *, source: str | None = None, key: str | None = None
) -> str:
    """Return ``name`` when it is a valid ``kind`` name (e.g. "endpoint"), else raise SpecError.

    The message states the rule and the bad value; ``source`` and ``key`` say where it came from.
    """
    problem = _problem(name)
    if problem is None:
        return name
    raise SpecError(
        f"invalid {kind} name {name!r}: it {problem}. Valid {kind} names are {NAME_RULE}.",
        source=source,
        key=key,
        hint=f"Choose a {kind} name such as 'my-{kind}-1'.",
    )
