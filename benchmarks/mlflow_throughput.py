"""MLflow no-code throughput: the built-in scorer in a job against ``model.predict`` in a loop.

A scikit-learn classifier (the tabular example's: scaling + logistic regression on the breast
cancer data) saved as an MLflow model; ``--files`` CSV files of ``--rows`` rows each (rows
drawn from the data set with noise). The job is a no-code deployment (the built-in scorer:
typed reading, one ``predict`` per file, the platform's output rows) with 2 scoring
processes and ``mini_batch_size`` 2. The baseline is one fresh process that imports mlflow,
loads the model and runs ``predict(pd.read_csv(file))`` over the same files, in the same run.
``ratio = loop seconds / flow scoring seconds`` (above 1: the job is faster); the median of
``--rounds`` loop/flow pairs counts.

Run: ``python benchmarks/mlflow_throughput.py [--files 24] [--rows 10000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import isolated_prefect, machine, result_line, settle

_LOOP = """
import sys, time
started = time.perf_counter()
import mlflow.pyfunc
import pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
rows = 0
for path in sys.argv[2:]:
    rows += len(model.predict(pd.read_csv(path)))
print(rows, time.perf_counter() - started)
"""


def prepare(root: Path, files: int, rows: int) -> tuple[Path, Path]:
    """An MLflow model and ``files`` CSV inputs of ``rows`` rows each."""
    from importlib.metadata import version

    import mlflow.sklearn
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    features, labels = load_breast_cancer(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(features, labels)
    model_dir = root / "model"
    mlflow.sklearn.save_model(
        model,
        str(model_dir),
        serialization_format="cloudpickle",
        signature=infer_signature(features, model.predict(features)),
        pip_requirements=[f"scikit-learn=={version('scikit-learn')}", "cloudpickle", "mlflow"],
    )
    inputs = root / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for number in range(files):
        sample = features.sample(rows, replace=True, random_state=number).reset_index(drop=True)
        sample *= rng.normal(1.0, 0.01, size=sample.shape)
        sample.to_csv(inputs / f"rows-{number:03d}.csv", index=False)
    return model_dir, inputs


def plain_loop(model_dir: Path, paths: list[str]) -> tuple[int, float]:
    """Rows and seconds of import + load + read/predict per file, in one fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", _LOOP, str(model_dir), *paths],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(out[-2]), float(out[-1])


def flow_run(model_dir: Path, inputs: Path, output: Path):
    from blocks.spec_loading import parse_deployment
    from flows.batch_score import batch_score

    spec = parse_deployment(
        {
            "name": "bench-mlflow",
            "type": "model",
            "compute": "azureml:local",
            "model": {"name": "bench-model", "path": str(model_dir), "type": "mlflow_model"},
            "settings": {"mini_batch_size": 2, "max_concurrency_per_instance": 2},
        }
    )
    started = time.perf_counter()
    result = batch_score(input=str(inputs), deployment=spec, output_path=str(output))
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--rows", type=int, default=10_000, help="rows per file (>= 10,000)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="pbe-mlflow-bench-") as tmp, isolated_prefect():
        root = Path(tmp)
        model_dir, inputs = prepare(root, args.files, args.rows)
        paths = sorted(str(p) for p in inputs.iterdir())
        total = args.files * args.rows
        ratios, loops, flows = [], [], []
        for round_ in range(1, args.rounds + 1):
            settle()
            rows, loop_s = plain_loop(model_dir, paths)
            assert rows == total, rows
            settle()
            result, end_to_end = flow_run(model_dir, inputs, root / f"out-{round_}")
            assert result.items_succeeded == args.files, result.message
            written = sum(1 for _ in open(result.output_file))
            assert written == total, written
            ratios.append(loop_s / result.scoring_seconds)
            loops.append(total / loop_s)
            flows.append(total / result.scoring_seconds)
            print(
                f"round {round_}: loop {loops[-1]:8.0f} rows/s | job scoring "
                f"{flows[-1]:8.0f} rows/s, end to end {total / end_to_end:8.0f} rows/s | "
                f"ratio {ratios[-1]:.2f}"
            )
    ratio = statistics.median(ratios)
    print(
        f"{args.files} files x {args.rows} rows: median ratio {ratio:.2f} "
        f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})"
    )
    print(
        result_line(
            files=args.files,
            rows_per_file=args.rows,
            loop_rows_per_s=round(statistics.median(loops), 1),
            flow_rows_per_s=round(statistics.median(flows), 1),
            ratio=round(ratio, 3),
        )
    )


if __name__ == "__main__":
    main()
