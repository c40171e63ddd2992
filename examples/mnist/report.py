"""Summarise the example's predictions: where they are, their first rows, and accuracy.

Usage: ``python examples/mnist/report.py --labels LABELS.csv NAME=PREDICTIONS.csv[@JOB] ...``

``LABELS.csv`` is what ``data.py`` writes beside the image folder (columns ``file,label``);
each predictions file is the ``append_row`` output of a deployment (``file class
probability``, space-separated, no header).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read_labels(path: Path) -> dict[str, int]:
    with open(path, newline="") as handle:
        return {row["file"]: int(row["label"]) for row in csv.DictReader(handle)}


def read_predictions(path: Path) -> list[tuple[str, int, float]]:
    rows = []
    for line in path.read_text().splitlines():
        name, predicted, probability = line.split(" ")
        rows.append((name, int(predicted), float(probability)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("runs", nargs="+", metavar="NAME=PREDICTIONS[@JOB]")
    args = parser.parse_args()
    labels = read_labels(args.labels)
    print()
    print("=" * 72)
    for run in args.runs:
        name, _, rest = run.partition("=")
        path, _, job = rest.partition("@")
        rows = read_predictions(Path(path))
        correct = sum(labels.get(file) == predicted for file, predicted, _ in rows)
        print(f"{name}: {path}")
        if job:
            print(f"  job (Prefect flow run): {job}")
        print("  first rows:")
        for line in Path(path).read_text().splitlines()[:3]:
            print(f"    {line}")
        print(f"  accuracy against the labels: {correct}/{len(rows)} = {correct / len(rows):.2%}")
    print("=" * 72)


if __name__ == "__main__":
    main()
