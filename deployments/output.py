"""``--query`` (JMESPath) and ``-o json|jsonc|tsv|table|yaml|none``, as the ``az`` CLI renders them.

- json: indented JSON; tsv: a scalar as is, a mapping as its scalar values joined by tabs,
  a list as one line per element (so ``--query name -o tsv`` gives a bare name);
- table: one row per element with the scalar fields as columns; yaml: block YAML.
"""

from __future__ import annotations

import json
from typing import Any

import jmespath
import yaml

__all__ = ["FORMATS", "apply_query", "render"]

FORMATS = ("json", "jsonc", "tsv", "table", "yaml", "yamlc", "none")


def apply_query(result: Any, query: str | None) -> Any:
    """``result`` filtered through a JMESPath expression (unchanged when none is given)."""
    if not query:
        return result
    from blocks.errors import BatchEndpointError

    try:
        return jmespath.search(query, result)
    except jmespath.exceptions.JMESPathError as exc:
        raise BatchEndpointError(
            f"invalid --query {query!r}: {exc}",
            hint='JMESPath, e.g. --query name or --query "{Name:name, Defaults:defaults}"',
        ) from exc


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def _tsv_line(value: Any) -> str:
    if isinstance(value, dict):
        return "\t".join(_scalar(v) for v in value.values() if not isinstance(v, (dict, list)))
    if isinstance(value, list):
        return "\t".join(_scalar(v) for v in value)
    return _scalar(value)


def _table(value: Any, columns: dict[str, str] | None = None) -> str:
    rows = value if isinstance(value, list) else [value]
    rows = [r if isinstance(r, dict) else {"Result": r} for r in rows]
    if not rows:
        return ""
    if columns is None:
        names: list[str] = []
        for row in rows:
            names += [
                k for k, v in row.items() if k not in names and not isinstance(v, (dict, list))
            ]
        columns = {n.replace("_", " ").title(): n for n in names}
    titles = list(columns)
    cells = [[_scalar(jmespath.search(path, row)) for path in columns.values()] for row in rows]
    widths = [max(len(t), *(len(r[i]) for r in cells)) for i, t in enumerate(titles)]
    header = "  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join([header.rstrip(), rule, *body])


def render(result: Any, output: str = "json", columns: dict[str, str] | None = None) -> str:
    """The text ``pbe`` prints for ``result`` in the ``-o`` format (no trailing newline).

    ``columns`` (title -> JMESPath) chooses the table's columns; by default every
    top-level scalar field is one.
    """
    if output == "none" or result is None:
        return ""
    if output in ("json", "jsonc"):
        return json.dumps(result, indent=2, default=str)
    if output in ("yaml", "yamlc"):
        return yaml.safe_dump(json.loads(json.dumps(result, default=str)), sort_keys=False).rstrip(
            "\n"
        )
    if output == "tsv":
        if isinstance(result, list):
            return "\n".join(_tsv_line(item) for item in result)
        return _tsv_line(result)
    if output == "table":
        return _table(result, columns)
    from blocks.errors import BatchEndpointError

    raise BatchEndpointError(
        f"unknown output format {output!r}", hint=f"Use one of: {', '.join(FORMATS)}"
    )
