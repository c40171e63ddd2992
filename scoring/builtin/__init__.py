"""Scoring scripts shipped with the package: what a deployment without code_configuration runs.

An MLflow model (registered as ``mlflow_model``: a folder with an ``MLmodel`` file and the
``python_function`` flavor) deployed with no code gets :data:`MLFLOW_SCRIPT` from this folder
as its scoring script, as the platform generates one. It runs in the usual scoring processes
like any script; :func:`builtin_code` checks the model first.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from blocks.errors import MissingDependencyError, SpecError
from scoring.mlmodel import read_mlmodel

__all__ = ["CODE_DIR", "MLFLOW_EXTRA", "MLFLOW_SCRIPT", "builtin_code", "require_mlflow"]

CODE_DIR = str(Path(__file__).resolve().parent)
MLFLOW_SCRIPT = "mlflow_driver.py"
MLFLOW_EXTRA = "'prefect-batch-endpoints[mlflow]'"


def require_mlflow() -> None:
    """MissingDependencyError naming the ``[mlflow]`` extra when mlflow is not installed."""
    if importlib.util.find_spec("mlflow") is None:
        raise MissingDependencyError(
            "the built-in MLflow scorer needs mlflow (and pyarrow for Parquet), which are "
            "not installed in the scoring environment",
            packages=[MLFLOW_EXTRA],
        )


def builtin_code(
    model_path: str | os.PathLike[str], *, model_type: str | None, label: str
) -> tuple[str, str]:
    """``(code folder, scoring script)`` of a no-code deployment of the model at ``model_path``.

    SpecError when the model is not an MLflow model with the ``python_function`` flavor;
    MissingDependencyError when mlflow is not installed.
    """
    if model_type is not None and model_type != "mlflow_model":
        raise SpecError(
            f"model {label} is a {model_type}; a deployment without code_configuration needs "
            "an mlflow_model (the platform generates its scoring script)",
            key="code_configuration",
            hint="Add code_configuration (code and scoring_script), or register the MLflow "
            "model folder with: pbe model create --type mlflow_model --path FOLDER",
        )
    model = read_mlmodel(model_path)
    if not model.has_pyfunc:
        raise SpecError(
            f"model {label} has the flavor(s) {', '.join(model.flavors)} but not "
            "python_function; the built-in scorer loads models with mlflow.pyfunc.load_model",
            key="model",
            hint="Save the model with a flavor that adds python_function (mlflow.sklearn, "
            "mlflow.pyfunc, ...), or add code_configuration with a script that loads it.",
        )
    require_mlflow()
    return CODE_DIR, MLFLOW_SCRIPT
