"""The README's main command, ``bash examples/mnist/run.sh``, as a new user runs it: in a copy
of the repository's tracked files with nothing beside it (no shared data folder), its own
workspace and embedded Prefect server, on a few real held-out digits."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import _subprocess_env, run_pbe

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
COUNT = 30


def fresh_clone(dest: Path) -> Path:
    """The files ``git clone`` would give of this checkout (tracked, as they are now)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is not cloned
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def test_the_mnist_example_runs_end_to_end_from_a_fresh_clone(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    clone = fresh_clone(tmp_path / "clone" / "prefect-batch-endpoints")
    assert not (clone.parent / "shared").exists()
    env = _subprocess_env(tmp_path / "pbe-home")
    env.pop("MNIST_DIR", None)
    env.update(PYTHONPATH=str(clone), WORK=str(tmp_path / "work"), COUNT=str(COUNT),
               PYTHON=sys.executable)  # fmt: skip
    try:
        done = subprocess.run(["bash", "examples/mnist/run.sh"], env=env, capture_output=True,
                              text=True, timeout=840, cwd=clone)  # fmt: skip
    finally:
        run_pbe(env, "server", "stop", timeout=120)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    assert "data: MNIST test set (10000 images) from " + str(clone / "examples/mnist/data") in log

    labels_csv = (tmp_path / "work" / "digits_labels.csv").read_text()
    labels = dict(line.split(",") for line in labels_csv.split()[1:])
    assert sorted(labels) == [f"{i:05d}.png" for i in range(8000, 8000 + COUNT)]  # held out
    reports = re.findall(r"^(\S.*): (/\S+\.csv)\n  job \(Prefect flow run\): (batchjob-\S+)",
                         done.stdout, re.M)  # fmt: skip
    assert [name for name, _, _ in reports] == [
        "mnist-torch-dpl", "mnist-keras-dpl", "default (keras)"
    ]  # fmt: skip
    for name, predictions, _ in reports:  # accuracy recomputed here, from the files
        rows = [line.split(" ") for line in Path(predictions).read_text().splitlines()]
        assert sorted(row[0] for row in rows) == sorted(labels), name
        correct = sum(labels[file] == predicted for file, predicted, _ in rows)
        assert correct >= COUNT - 3, (name, correct)  # models at ~98 % on held-out digits
    assert re.search(r"^Total: \d+\.\d s$", done.stdout, re.M)
    assert done.stdout.count("--- done in ") >= 10  # every step says how long it took
    assert not os.path.exists(clone / "examples" / "mnist" / ".work")  # WORK was honoured
