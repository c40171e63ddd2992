"""Reading one input file as a model input, by extension, as the platform's MLflow scorer does.

``.csv`` → a ``pandas.DataFrame`` (its columns cast to the signature's types when there is
one), ``.parquet``/``.pqt`` → a DataFrame (cast the same way), ``.png``/``.jpg``/``.jpeg``/
``.tiff``/``.bmp``/``.gif`` → a ``numpy`` array with a leading batch dimension of 1, shaped
and typed to the signature's tensor (``uint8`` without one). Any other extension, a missing
column, a value that does not cast, or an image that does not fit the tensor raises
:class:`InputFileError` naming the file and the reason. Scoring scripts may use these too:
``from scoring.readers import read_table``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from blocks.errors import InputFileError, MissingDependencyError
from scoring.mlmodel import ColumnSpec, Signature, TensorSpec

__all__ = [
    "IMAGE_TYPES",
    "SUPPORTED_TYPES",
    "TABLE_TYPES",
    "enforce_columns",
    "read_image",
    "read_input",
    "read_table",
]

TABLE_TYPES = (".csv", ".parquet", ".pqt")
IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".tiff", ".bmp", ".gif")
SUPPORTED_TYPES = TABLE_TYPES + IMAGE_TYPES

_INTEGERS = {"integer": "int32", "long": "int64"}
_UNREADABLE = "{value} cannot be read as {type}"
_FLOATS = {"float": "float32", "double": "float64"}


def read_input(path: str, signature: Signature | None = None) -> pd.DataFrame | np.ndarray:
    """The model input of one file, chosen by its extension (see the module docstring)."""
    extension = os.path.splitext(path)[1].lower()
    if extension in TABLE_TYPES:
        return read_table(path, signature.columns if signature else ())
    if extension in IMAGE_TYPES:
        return read_image(path, signature.tensor if signature else None)
    shown = f"'{extension}'" if extension else "without an extension"
    raise InputFileError(
        path,
        f"file type {shown} is not supported; the built-in MLflow scorer reads "
        f"{', '.join(SUPPORTED_TYPES)}",
        hint="Remove the file from the input, or deploy with a scoring script that reads it.",
    )


def read_table(path: str, columns: Sequence[ColumnSpec] = ()) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame, its columns cast to ``columns`` (a signature)."""
    if os.path.splitext(path)[1].lower() == ".csv":
        frame = pd.read_csv(path)
    else:
        try:
            frame = pd.read_parquet(path)
        except ImportError as exc:
            raise MissingDependencyError(
                f"reading '{path}' needs pyarrow, which is not installed ({exc})",
                packages=["'prefect-batch-endpoints[mlflow]'"],
            ) from exc
    return enforce_columns(frame, columns, path)


def enforce_columns(frame: pd.DataFrame, columns: Sequence[ColumnSpec], path: str) -> pd.DataFrame:
    """``frame`` with the signature's columns present and cast; InputFileError otherwise.

    Columns the signature does not name are kept as they are; a signature without column
    names is not enforced here.
    """
    if not columns or any(spec.name is None for spec in columns):
        return frame
    missing = [spec.name for spec in columns if spec.required and spec.name not in frame]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputFileError(
            path,
            f"missing column {missing[0]!r}{more}, which the model's signature requires",
            hint="Add the column to the file, or score files that have every signature column.",
        )
    changed = {}
    for spec in columns:
        if spec.name in frame:
            cast = _cast(frame[spec.name], spec, path)
            if cast is not frame[spec.name]:
                changed[spec.name] = cast
    return frame.assign(**changed) if changed else frame


def _cast(values: pd.Series, spec: ColumnSpec, path: str) -> pd.Series:
    kind = spec.type
    if kind in _INTEGERS or kind in _FLOATS:
        if _plain_number(values):
            numbers = values
        else:
            numbers = pd.to_numeric(values, errors="coerce")
            _first_bad(values, numbers.isna() & values.notna(), spec, path, _UNREADABLE)
        if kind in _FLOATS:
            return numbers if numbers.dtype == _FLOATS[kind] else numbers.astype(_FLOATS[kind])
        _first_bad(values, numbers.isna(), spec, path, "the value is empty; {type} cannot be")
        _first_bad(
            values,
            numbers != np.floor(numbers),
            spec,
            path,
            "{value} is not a whole number ({type})",
        )
        return numbers if numbers.dtype == _INTEGERS[kind] else numbers.astype(_INTEGERS[kind])
    if kind == "boolean":
        if pd.api.types.is_bool_dtype(values):
            return values
        words = values.astype(str).str.strip().str.lower()
        truth = words.map(
            {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}
        )
        _first_bad(values, truth.isna(), spec, path, _UNREADABLE)
        return truth.astype(bool)
    if kind == "datetime":
        stamps = pd.to_datetime(values, errors="coerce")
        _first_bad(values, stamps.isna() & values.notna(), spec, path, _UNREADABLE)
        return stamps
    if kind == "string":
        return values.where(values.isna(), values.astype(str)).astype(object)
    return values  # binary and types we do not cast: passed as read


def _plain_number(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _first_bad(values: pd.Series, bad: pd.Series, spec: ColumnSpec, path: str, what: str) -> None:
    """Raise for the first ``bad`` row: ``what`` is a template of {value} and {type}."""
    if not bad.any():
        return
    row = int(np.argmax(bad.to_numpy()))
    value = values.iloc[row]
    shown = repr(value) if isinstance(value, str) else str(value)
    reason = what.format(value="the empty value" if pd.isna(value) else shown, type=spec.type)
    raise InputFileError(
        path,
        f"column {spec.name!r}, row {row}: {reason}",
        hint="Fix the value, or score the file with a model whose signature accepts it.",
    )


def read_image(path: str, tensor: TensorSpec | None = None) -> np.ndarray:
    """An image as an array of one item (``(1, H, W[, C])``), fitted to ``tensor`` if given."""
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image)
    if tensor is None:
        return pixels[np.newaxis]
    shaped = _fit(pixels, tensor.shape)
    if shaped is None:
        raise InputFileError(
            path,
            f"image of shape {pixels.shape} ({pixels.size} values) does not fit the "
            f"signature's tensor shape {list(tensor.shape)}",
            hint="Give images of the size the model was trained on, or resize them first.",
        )
    return shaped.astype(np.dtype(tensor.dtype), copy=False)


def _fit(pixels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``pixels`` as one item of ``shape`` (-1 is any size), or None when it cannot be."""
    if not shape:
        return pixels[np.newaxis]
    item = shape[1:] if shape[0] == -1 else shape
    batch = (1,) if shape[0] == -1 else ()
    if -1 not in item:
        if pixels.size != math.prod(item):
            return None
        return pixels.reshape(batch + tuple(item))
    if len(item) != pixels.ndim:
        return None
    if all(d in (-1, n) for d, n in zip(item, pixels.shape, strict=True)):
        return pixels.reshape(batch + pixels.shape)
    return None
