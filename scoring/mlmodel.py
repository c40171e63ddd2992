"""MLflow model folders read without mlflow: the ``MLmodel`` file, its signature, its needs.

An MLflow model is a folder with an ``MLmodel`` YAML file that names its flavors
(``python_function``, ``sklearn``, …) and, optionally, a signature: the inputs as columns
(``{"name", "type", "required"}``) or tensors (``{"type": "tensor", "tensor-spec": {"dtype",
"shape"}}``), and the outputs. ``requirements.txt`` (or ``conda.yaml``) beside it lists the
packages it was saved with. Registration (``pbe model create --type mlflow_model``), the
no-code deployment check and the built-in scorer all read it here, with PyYAML only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from blocks.errors import SpecError

__all__ = [
    "ColumnSpec",
    "MLflowModel",
    "Signature",
    "TensorSpec",
    "mlflow_model_folder",
    "read_mlmodel",
]

PYFUNC = "python_function"


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a column-based signature (``double``, ``long``, ``string``, …)."""

    name: str | None
    type: str
    required: bool = True


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a tensor-based signature: numpy dtype and shape (-1: any size)."""

    dtype: str
    shape: tuple[int, ...]
    name: str | None = None


@dataclass(frozen=True)
class Signature:
    """A model's inputs (columns or tensors) and outputs, as the MLmodel file states them."""

    inputs: tuple[ColumnSpec | TensorSpec, ...] = ()
    outputs: tuple[ColumnSpec | TensorSpec, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        """The input columns (empty for a tensor signature)."""
        return tuple(s for s in self.inputs if isinstance(s, ColumnSpec))

    @property
    def tensor(self) -> TensorSpec | None:
        """The one input tensor of a tensor signature, else None."""
        tensors = [s for s in self.inputs if isinstance(s, TensorSpec)]
        return tensors[0] if len(tensors) == 1 else None


@dataclass(frozen=True)
class MLflowModel:
    """What an ``MLmodel`` file says about its folder."""

    folder: Path
    flavors: dict[str, Any]
    signature: Signature | None
    requirements: list[str]
    mlflow_version: str | None = None

    @property
    def has_pyfunc(self) -> bool:
        return PYFUNC in self.flavors

    def record(self) -> dict[str, Any]:
        """The registry's view: flavors, signature {inputs, outputs}, requirements."""
        signature = self.signature.raw if self.signature else None
        return {
            "flavors": self.flavors,
            "signature": signature,
            "requirements": self.requirements,
            "mlflow_version": self.mlflow_version,
        }


def mlflow_model_folder(path: str | Path) -> Path | None:
    """The MLflow model folder at ``path``: the folder itself or, for a registered model's
    version folder, the one folder inside it, when it holds an ``MLmodel`` file."""
    folder = Path(path)
    if not folder.is_dir():
        return None
    if (folder / "MLmodel").is_file():
        return folder
    inside = [child for child in folder.iterdir() if child.is_dir()]
    if len(inside) == 1 and (inside[0] / "MLmodel").is_file():
        return inside[0]
    return None


def _refuse(path: Path, problem: str) -> SpecError:
    return SpecError(
        f"'{path}' is not an MLflow model: {problem}",
        key="path",
        hint="Give the folder mlflow.<flavor>.save_model wrote (it holds MLmodel), "
        "or register it with --type custom_model.",
    )


def read_mlmodel(path: str | Path) -> MLflowModel:
    """Read the MLflow model at ``path``; SpecError naming what is missing or unreadable."""
    given = Path(path)
    folder = mlflow_model_folder(given)
    if folder is None:
        problem = "it is a file, not a folder" if given.is_file() else "no MLmodel file in it"
        raise _refuse(given, problem)
    try:
        data = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _refuse(given, f"MLmodel cannot be read ({exc})") from exc
    if not isinstance(data, dict):
        raise _refuse(given, "MLmodel is not a YAML mapping")
    flavors = data.get("flavors")
    if not isinstance(flavors, dict) or not flavors:
        raise _refuse(given, "MLmodel has no 'flavors' mapping")
    return MLflowModel(
        folder=folder,
        flavors=flavors,
        signature=_signature(data.get("signature"), given),
        requirements=_requirements(folder),
        mlflow_version=data.get("mlflow_version"),
    )


def _signature(data: Any, path: Path) -> Signature | None:
    if not isinstance(data, dict) or not data.get("inputs"):
        return None
    raw: dict[str, Any] = {}
    parsed: dict[str, tuple[ColumnSpec | TensorSpec, ...]] = {}
    for part in ("inputs", "outputs"):
        text = data.get(part)
        try:
            specs = json.loads(text) if isinstance(text, str) else (text or [])
        except ValueError as exc:
            raise _refuse(path, f"MLmodel signature.{part} is not JSON ({exc})") from exc
        raw[part] = specs
        parsed[part] = tuple(_spec(item, path, part) for item in specs)
    return Signature(parsed["inputs"], parsed["outputs"], raw)


def _spec(item: Any, path: Path, part: str) -> ColumnSpec | TensorSpec:
    if not isinstance(item, dict) or "type" not in item:
        raise _refuse(path, f"MLmodel signature.{part} has an entry without a type: {item!r}")
    if item["type"] == "tensor":
        tensor = item.get("tensor-spec") or {}
        return TensorSpec(
            dtype=str(tensor.get("dtype", "float64")),
            shape=tuple(int(n) for n in tensor.get("shape") or ()),
            name=item.get("name"),
        )
    return ColumnSpec(
        name=item.get("name"), type=str(item["type"]), required=bool(item.get("required", True))
    )


def _requirements(folder: Path) -> list[str]:
    """The lines of ``requirements.txt`` (else the pip section of ``conda.yaml``)."""
    pip_file = folder / "requirements.txt"
    if pip_file.is_file():
        lines = pip_file.read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    conda = folder / "conda.yaml"
    if conda.is_file():
        data = yaml.safe_load(conda.read_text(encoding="utf-8")) or {}
        for entry in data.get("dependencies") or []:
            if isinstance(entry, dict) and entry.get("pip"):
                return [str(line) for line in entry["pip"]]
    return []
