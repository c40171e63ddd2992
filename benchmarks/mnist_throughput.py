"""MNIST throughput: the flow's scoring phase against the same script in a plain loop.

10,000 real MNIST digits (PNG files written from ``../shared/data/mnist``), the example's
torch deployment script (seed style: one image per forward pass), 2 scoring processes, at
``mini_batch_size`` 10 and 100. The baseline is the same script called in one process over
the same mini-batches, in the same run. ``ratio = loop seconds / flow seconds`` (flow
throughput ÷ loop throughput; above 1 means the flow is faster).

Run: ``python benchmarks/mnist_throughput.py [--images 10000]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    MNIST_DIR,
    REPO,
    deployment_spec,
    isolated_prefect,
    machine,
    result_line,
    settle,
    verdict,
)

CODE = REPO / "examples" / "mnist" / "deployment-torch" / "code"
TARGETS = {10: 0.5, 100: 0.9}


def prepare(root: Path, images: int) -> tuple[Path, Path]:
    """PNG inputs and a trained torch model (the example's own training script)."""
    inputs = root / "digits"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "examples/mnist/data.py"),
            "--mnist-dir",
            str(MNIST_DIR),
            "--out",
            str(inputs),
            "--count",
            str(images),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    models = root / "models"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "examples/mnist/train.py"),
            "--mnist-dir",
            str(MNIST_DIR),
            "--out",
            str(models),
            "--framework",
            "torch",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return inputs, models / "torch"


_LOOP = """
import importlib.util, os, sys, time
started = time.perf_counter()
code, size = sys.argv[1], int(sys.argv[2])
files = sys.stdin.read().split("\\n")
sys.path.insert(0, code)
spec = importlib.util.spec_from_file_location("batch_driver", os.path.join(code, "batch_driver.py"))
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.init()
for start in range(0, len(files), size):
    module.run(files[start:start + size]).to_csv(header=None, index=None, sep=" ")
print(time.perf_counter() - started)
"""


def plain_loop(model_dir: Path, files: list[str], mini_batch_size: int) -> float:
    """Seconds for the same script over the same mini-batches in one fresh process.

    Like a scoring process, the loop pays for importing the script (and torch) and for
    ``init()``: the figure is comparable to the flow's scoring phase, which includes both.
    """
    env = {**os.environ, "AZUREML_MODEL_DIR": str(model_dir)}
    output = subprocess.run(
        [sys.executable, "-c", _LOOP, str(CODE), str(mini_batch_size)],
        input="\n".join(files),
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(output.strip().splitlines()[-1])


def flow_run(inputs: Path, model_dir: Path, out: Path, mini_batch_size: int):
    from flows.batch_score import batch_score

    spec = deployment_spec(
        CODE,
        "batch_driver.py",
        model_dir / "model",
        mini_batch_size=mini_batch_size,
        max_concurrency_per_instance=2,
    )
    started = time.perf_counter()
    result = batch_score(input=str(inputs), deployment=spec, output_path=str(out))
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="pbe-mnist-bench-") as tmp, isolated_prefect():
        root = Path(tmp)
        inputs, model_dir = prepare(root, args.images)
        files = sorted(str(p) for p in inputs.iterdir())
        for size in (10, 100):
            settle()
            loop_s = plain_loop(model_dir, files, size)
            settle()
            result, total_s = flow_run(inputs, model_dir, root / f"out-{size}", size)
            assert result.items_succeeded == len(files), result.message
            ratio = loop_s / result.scoring_seconds
            figures[f"ratio_mb{size}"] = ratio
            figures[f"end_to_end_ratio_mb{size}"] = loop_s / total_s
            print(
                f"mini_batch_size {size:3d}: loop {len(files) / loop_s:7.0f} img/s | flow scoring "
                f"{len(files) / result.scoring_seconds:7.0f} img/s, end to end "
                f"{len(files) / total_s:7.0f} img/s (cluster start {result.cluster_seconds:.1f} s)"
                f" | ratio {ratio:.2f} (target >= {TARGETS[size]}: "
                f"{verdict(ratio >= TARGETS[size])})"
            )
    print(
        result_line(
            **{k: round(v, 3) for k, v in figures.items()},
            targets_met=str(all(figures[f"ratio_mb{s}"] >= t for s, t in TARGETS.items())).lower(),
        )
    )


if __name__ == "__main__":
    main()
