"""MNIST throughput: the flow's scoring phase against the same script in a plain loop.

10,000 real MNIST digits (PNG files written from ``examples/mnist/data``), the example's
torch deployment script (seed style: one image per forward pass), 2 scoring processes, at
``mini_batch_size`` 10 and 100. The baseline is the same script called in one process over
the same mini-batches, in the same run. ``ratio = loop seconds / flow seconds`` (flow
throughput ÷ loop throughput; above 1 means the flow is faster).

Each size is measured in ``--rounds`` loop/flow pairs (default 3) and the median ratio counts:
on a shared two-core machine one pair can be 10 % off either way.

Run: ``python benchmarks/mnist_throughput.py [--images 10000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
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


def measure(inputs: Path, model_dir: Path, root: Path, size: int, round_: int) -> dict:
    """One round at one ``mini_batch_size``: the loop, then the flow, each from an idle machine."""
    files = sorted(str(p) for p in inputs.iterdir())
    settle()
    loop_s = plain_loop(model_dir, files, size)
    settle()
    result, total_s = flow_run(inputs, model_dir, root / f"out-{size}-{round_}", size)
    assert result.items_succeeded == len(files), result.message
    figures = {
        "loop": len(files) / loop_s,
        "scoring": len(files) / result.scoring_seconds,
        "end_to_end": len(files) / total_s,
        "ratio": loop_s / result.scoring_seconds,
        "end_to_end_ratio": loop_s / total_s,
    }
    print(
        f"mini_batch_size {size:3d}, round {round_}: loop {figures['loop']:5.0f} img/s | flow "
        f"scoring {figures['scoring']:5.0f} img/s, end to end {figures['end_to_end']:5.0f} img/s"
        f" (cluster start {result.cluster_seconds:.1f} s) | ratio {figures['ratio']:.2f}"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="loop/flow pairs per size; the median counts"
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="pbe-mnist-bench-") as tmp, isolated_prefect():
        root = Path(tmp)
        inputs, model_dir = prepare(root, args.images)
        for size in (10, 100):
            rounds = [measure(inputs, model_dir, root, size, n + 1) for n in range(args.rounds)]
            ratio = statistics.median(r["ratio"] for r in rounds)
            figures[f"ratio_mb{size}"] = ratio
            figures[f"end_to_end_ratio_mb{size}"] = statistics.median(
                r["end_to_end_ratio"] for r in rounds
            )
            each = ", ".join(f"{r['ratio']:.2f}" for r in rounds)
            print(
                f"mini_batch_size {size:3d}: median ratio {ratio:.2f} (rounds {each}; "
                f"target >= {TARGETS[size]}: {verdict(ratio >= TARGETS[size])})"
            )
    print(
        result_line(
            **{k: round(v, 3) for k, v in figures.items()},
            targets_met=str(all(figures[f"ratio_mb{s}"] >= t for s, t in TARGETS.items())).lower(),
        )
    )


if __name__ == "__main__":
    main()
