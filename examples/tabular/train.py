"""Train the example's classifier and write its unlabeled input files.

A scikit-learn pipeline (standard scaling + logistic regression) is trained on the first 400
rows of scikit-learn's breast cancer data set (shipped with scikit-learn, no download) and
saved as an MLflow model with a signature (``--out``/model). The other 169 rows are written,
without their labels, as CSV and Parquet files (``--out``/data), and their labels as
``--out``/labels.csv (``file,row,label``) for the accuracy check at the end.

Run: ``python train.py --out WORK``
"""

from __future__ import annotations

import argparse
import logging
import shutil
from importlib.metadata import version
from pathlib import Path

import mlflow.sklearn
import pandas as pd
from mlflow.models import infer_signature
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

TRAIN_ROWS = 400
#: the held-out rows, cut into files: (name, first row, last row) in held-out order
FILES = (("part-0.csv", 0, 60), ("part-1.csv", 60, 100), ("part-2.parquet", 100, 169))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    out = parser.parse_args().out
    logging.getLogger("mlflow").setLevel(logging.ERROR)  # the pickle-format caution

    features, labels = load_breast_cancer(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(features[:TRAIN_ROWS], labels[:TRAIN_ROWS])
    shutil.rmtree(out / "model", ignore_errors=True)
    mlflow.sklearn.save_model(
        model,
        str(out / "model"),
        serialization_format="cloudpickle",
        signature=infer_signature(features, model.predict(features)),
        pip_requirements=[
            f"scikit-learn=={version('scikit-learn')}",
            f"cloudpickle=={version('cloudpickle')}",
            "mlflow",
        ],
    )
    print(f"model: {out / 'model'} (trained on {TRAIN_ROWS} rows)")

    held_out, truth = features[TRAIN_ROWS:], labels[TRAIN_ROWS:]
    shutil.rmtree(out / "data", ignore_errors=True)
    (out / "data").mkdir(parents=True)
    answers = []
    for name, start, end in FILES:
        part = held_out.iloc[start:end].reset_index(drop=True)
        if name.endswith(".csv"):
            part.to_csv(out / "data" / name, index=False)
        else:
            part.to_parquet(out / "data" / name, index=False)
        answers += [(name, row, int(label)) for row, label in enumerate(truth.iloc[start:end])]
    pd.DataFrame(answers, columns=["file", "row", "label"]).to_csv(out / "labels.csv", index=False)
    print(f"data: {len(held_out)} unlabeled rows in {len(FILES)} files in {out / 'data'}")


if __name__ == "__main__":
    main()
