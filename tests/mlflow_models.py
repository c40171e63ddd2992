"""Real MLflow models for the no-code tests: saved with mlflow, scored by the built-in scorer."""

from __future__ import annotations

import logging
import textwrap
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

logging.getLogger("mlflow").setLevel(logging.ERROR)  # the cloudpickle format's caution


def _pip_requirements() -> list[str]:
    """Pinned as mlflow would infer them (given, so saving does not run a probe process)."""
    return [
        f"scikit-learn=={version('scikit-learn')}",
        f"cloudpickle=={version('cloudpickle')}",
        f"mlflow=={version('mlflow-skinny')}",
    ]


def breast_cancer() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(return_X_y=True, as_frame=True)


def save_sklearn_model(folder: Path, *, signature: bool = True) -> Path:
    """A logistic regression on scikit-learn's breast cancer data, as an MLflow model."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = breast_cancer()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(features[:400], labels[:400])
    mlflow.sklearn.save_model(
        model,
        str(folder),
        serialization_format="cloudpickle",
        signature=infer_signature(features, model.predict(features)) if signature else None,
        pip_requirements=_pip_requirements(),
    )
    return folder


IMAGE_MODEL_CODE = '''
import mlflow
import numpy as np


class PixelSum(mlflow.pyfunc.PythonModel):
    """A tiny pyfunc over 28x28 arrays: each image's pixel sum (checks values and shape)."""

    def predict(self, context, model_input, params=None):
        images = np.asarray(model_input)
        assert images.shape[1:] == (28, 28), images.shape
        return images.reshape(len(images), -1).sum(axis=1).astype("int64")


mlflow.models.set_model(PixelSum())
'''


def save_image_model(folder: Path) -> Path:
    """A pyfunc model (models from code) whose signature is a float32 (-1, 28, 28) tensor."""
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    code = folder.parent / "pixel_sum.py"
    folder.parent.mkdir(parents=True, exist_ok=True)
    code.write_text(textwrap.dedent(IMAGE_MODEL_CODE))
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype("float32"), (-1, 28, 28))]),
        outputs=Schema([TensorSpec(np.dtype("int64"), (-1,))]),
    )
    mlflow.pyfunc.save_model(
        str(folder),
        python_model=str(code),
        signature=signature,
        pip_requirements=[f"mlflow=={version('mlflow-skinny')}"],
    )
    return folder


def predictions_of(folder: Path, frame: pd.DataFrame) -> np.ndarray:
    """What the model predicts for ``frame`` in this process (the reference for the rows)."""
    import mlflow.pyfunc

    return np.asarray(mlflow.pyfunc.load_model(str(folder)).predict(frame))


FRAME_MODEL_CODE = '''
import mlflow
import pandas as pd


class Echo(mlflow.pyfunc.PythonModel):
    """Returns two output columns taken from its input: ``label`` and ``probability``."""

    def predict(self, context, model_input, params=None):
        return pd.DataFrame({"label": model_input["l"], "probability": model_input["p"]})


mlflow.models.set_model(Echo())
'''


def save_frame_model(folder: Path) -> Path:
    """A pyfunc model without a signature whose predict returns a two-column DataFrame."""
    import mlflow.pyfunc

    folder.parent.mkdir(parents=True, exist_ok=True)
    code = folder.parent / "echo.py"
    code.write_text(textwrap.dedent(FRAME_MODEL_CODE))
    mlflow.pyfunc.save_model(
        str(folder),
        python_model=str(code),
        pip_requirements=[f"mlflow=={version('mlflow-skinny')}"],
    )
    return folder
