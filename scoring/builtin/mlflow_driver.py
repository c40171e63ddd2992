"""The built-in scoring script of MLflow models (no-code deployments).

``init()`` loads the model in ``AZUREML_MODEL_DIR`` once per process with
``mlflow.pyfunc.load_model``. ``run(mini_batch)`` reads each file by its extension
(:mod:`scoring.readers`, typed and shaped by the model's signature), calls ``predict`` once
per file, and renders the platform's MLflow output: per prediction row, the row number in
its file, the prediction column(s), then the file name, comma-separated, no header. A file
that cannot be read or predicted is a failed item with its reason; the others still score.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pandas as pd

from scoring.builtin import require_mlflow

try:  # at top level, so a job's fork server imports it once for all its scoring processes
    import mlflow.pyfunc
except ImportError:  # init() says which extra installs it
    mlflow = None
from scoring.mlmodel import Signature, read_mlmodel
from scoring.readers import read_input
from scoring.results import MiniBatchOutput

logger = logging.getLogger("mlflow_driver")
model = None
signature: Signature | None = None


def init() -> None:
    """Load the model once: the MLflow folder inside ``AZUREML_MODEL_DIR``."""
    global model, signature
    found = read_mlmodel(os.environ["AZUREML_MODEL_DIR"])
    if mlflow is None:
        require_mlflow()
    started = time.monotonic()
    # the real folder, not the symlink in AZUREML_MODEL_DIR (mlflow refuses paths that leave
    # it); its requirements were checked at create, so mlflow's own check (seconds spent
    # reading every installed package's metadata, in each process) is skipped
    model = mlflow.pyfunc.load_model(str(found.folder.resolve()), suppress_warnings=True)
    signature = found.signature
    logger.info(
        "Loaded MLflow model %s in %.1f s (flavors: %s; signature: %s).",
        found.folder.name,
        time.monotonic() - started,
        ", ".join(found.flavors),
        "yes" if signature else "none",
    )


def run(mini_batch: list[str]) -> MiniBatchOutput:
    """Predict each file; rows of the files that scored, and why each other file failed."""
    rows: list[str] = []
    failed: dict[str, str] = {}
    for path in mini_batch:
        try:
            text = score_file(path)
        except Exception as exc:  # noqa: BLE001 - a file's failure is its own, not the batch's
            reason = getattr(exc, "problem", None) or f"{type(exc).__name__}: {exc}"
            failed[path] = " ".join(reason.split())  # one line: the report lists one per file
            continue
        if text:
            rows.append(text.removesuffix("\n"))  # one element per file, written + "\n"
    return MiniBatchOutput(rows, failed)


def score_file(path: str) -> str:
    """The output lines of one file: ``row,prediction…,file`` per prediction row."""
    data = read_input(path, signature)
    predictions = prediction_frame(model.predict(data))
    predictions.insert(predictions.shape[1], "file", os.path.basename(path), allow_duplicates=True)
    return predictions.to_csv(sep=",", header=False, index=True, lineterminator="\n")


def prediction_frame(predicted: object) -> pd.DataFrame:
    """``predict``'s result as a frame indexed 0..n-1 (one column per output column)."""
    if isinstance(predicted, pd.DataFrame):
        return predicted.reset_index(drop=True)
    if isinstance(predicted, pd.Series):
        return predicted.reset_index(drop=True).to_frame()
    if isinstance(predicted, dict):
        return pd.DataFrame(predicted)
    values = np.asarray(predicted)
    if values.ndim == 0:
        values = values.reshape(1)
    if values.ndim > 2:
        values = values.reshape(len(values), -1)
    return pd.DataFrame(values)
