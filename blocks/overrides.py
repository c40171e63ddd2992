"""``--set key.path=value`` overrides, as ``az ml ... create/update --set`` applies them."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from blocks.errors import SpecError

__all__ = ["apply_set_overrides"]

_HINT = "Write each override as key.path=value, e.g. --set settings.mini_batch_size=20."


def _value(text: str) -> Any:
    """``text`` as a YAML scalar (``3`` -> 3, ``true`` -> True), else the text itself.

    Flow collections (``[1, 2]``, ``{a: b}``) are parsed too; dates and ``a: b`` stay text.
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is None or isinstance(value, (str, int, float)):
        return value
    return value if text.startswith(("[", "{")) else text


def apply_set_overrides(data: dict, assignments: list[str], *, source: str) -> dict:
    """Return a copy of ``data`` with each ``key.path=value`` assignment applied in order.

    Intermediate mappings are created as needed; values are parsed as YAML, so ``3`` is an
    int, ``true`` a bool, ``null`` (or nothing after ``=``) None, and other text a string.
    A malformed assignment, or a path through a value that is not a mapping, raises SpecError.
    """
    result = copy.deepcopy(data)
    for assignment in assignments:
        path, sep, raw = assignment.partition("=")
        keys = [part.strip() for part in path.split(".")]
        if not sep or not all(keys):
            raise SpecError(
                f"malformed --set {assignment!r}: expected key.path=value",
                source=source,
                hint=_HINT,
            )
        target = result
        for depth, key in enumerate(keys[:-1]):
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                where = ".".join(keys[: depth + 1])
                raise SpecError(
                    f"cannot set '{path.strip()}': '{where}' holds {target!r}, not a mapping",
                    source=source,
                    key=path.strip(),
                    hint=f"Set '{where}' itself, or fix the key path.",
                )
        target[keys[-1]] = _value(raw.strip())
    return result
