"""The README's main command: examples/mnist/run.sh, on a few real digits."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                    reason="MNIST files not found at ../shared/data/mnist")
def test_the_mnist_example_runs_end_to_end(pbe_workspace, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    env = {**pbe_workspace.env, "WORK": str(tmp_path), "COUNT": "30",
           "MNIST_DIR": str(MNIST_DIR), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "examples" / "mnist" / "run.sh")], env=env,
                          capture_output=True, text=True, timeout=840, cwd=str(tmp_path))
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    accuracies = re.findall(r"accuracy against the labels: (\d+)/(\d+)", done.stdout)
    assert len(accuracies) == 3, done.stdout[-3000:]
    for correct, total in accuracies:
        assert int(total) == 30
        assert int(correct) >= 27  # held-out digits 8000+, models at ~98%
    assert "job (Prefect flow run): batchjob-" in done.stdout
