"""The az ml MNIST sequence (tests/az_sequence.sh) run with ``pbe`` on real MNIST digits.

Trains small torch (and, when TensorFlow is installed, Keras) models on the MNIST test set
bundled in ``examples/mnist/data``, then registers, deploys, invokes (default, with an output path
and file name, with ``--mini-batch-size 20 --instance-count 5``, a non-default deployment
by name, a switched default), streams, lists, downloads and deletes, checking each job.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]


def _frameworks() -> str:
    return "torch keras" if importlib.util.find_spec("tensorflow") else "torch"


def test_az_ml_sequence(pbe_workspace, tmp_path: Path):
    pytest.importorskip("torch")
    env = {
        **pbe_workspace.env,
        "WORK": str(tmp_path),
        "COUNT": "40",
        "FRAMEWORKS": _frameworks(),
        "PYTHON": sys.executable,
    }
    done = subprocess.run(
        ["bash", str(REPO / "tests" / "az_sequence.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        cwd=str(tmp_path),
    )
    log = done.stdout + done.stderr
    (tmp_path / "az_sequence.log").write_text(log)
    assert done.returncode == 0, log[-6000:]
    assert "az ml sequence: OK" in done.stdout
    assert "Traceback" not in log
    assert (tmp_path / "download" / "named-outputs" / "score" / "predictions.csv").is_file()
