"""``bash examples/tabular/run.sh``: the no-code MLflow example as a new user runs it, in a copy
of the repository's tracked files, with its own workspace and embedded Prefect server."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
from conftest import _subprocess_env, run_pbe
from test_example_run import fresh_clone

pytest.importorskip("mlflow")
pytest.importorskip("pyarrow")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_tabular_mlflow_example_runs_end_to_end(tmp_path):
    clone = fresh_clone(tmp_path / "clone" / "prefect-batch-endpoints")
    env = _subprocess_env(tmp_path / "pbe-home")
    work = tmp_path / "work"
    env.update(PYTHONPATH=str(clone), WORK=str(work), PYTHON=sys.executable)
    try:
        done = subprocess.run(
            ["bash", "examples/tabular/run.sh"],
            env=env,
            capture_output=True,
            text=True,
            timeout=840,
            cwd=clone,
        )
    finally:
        run_pbe(env, "server", "stop", timeout=120)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    assert '"code": null' in done.stdout  # the deployment has no code_configuration

    predictions = work / "download" / "named-outputs" / "score" / "predictions.csv"
    rows = list(csv.reader(predictions.open(newline="")))
    with (work / "labels.csv").open(newline="") as handle:
        labels = {(r["file"], r["row"]): r["label"] for r in csv.DictReader(handle)}
    assert sorted((file, row) for row, _, file in rows) == sorted(labels)  # every row once
    assert {file for _, _, file in rows} == {"part-0.csv", "part-1.csv", "part-2.parquet"}
    correct = sum(labels[(file, row)] == predicted for row, predicted, file in rows)
    assert correct >= 0.9 * len(labels), correct  # ~97 % on the held-out rows
    assert f"accuracy: {correct}/{len(labels)}" in done.stdout
