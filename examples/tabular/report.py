"""Accuracy of the downloaded predictions against the held-out labels.

``predictions.csv`` is the built-in MLflow scorer's output: ``row,prediction,file`` per
input row, no header. ``labels.csv`` (from ``train.py``) has ``file,row,label``.

Run: ``python report.py --labels WORK/labels.csv named-outputs/score/predictions.csv``
"""

from __future__ import annotations

import argparse
import csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", required=True)
    parser.add_argument("predictions")
    args = parser.parse_args()
    with open(args.labels, newline="") as handle:
        labels = {(r["file"], int(r["row"])): int(r["label"]) for r in csv.DictReader(handle)}
    with open(args.predictions, newline="") as handle:
        rows = [(file, int(row), int(predicted)) for row, predicted, file in csv.reader(handle)]
    print(f"predictions: {args.predictions} ({len(rows)} rows)")
    for row in rows[:3]:
        print(f"  {row[0]} row {row[1]}: {row[2]}")
    scored = {(file, row): predicted for file, row, predicted in rows}
    if sorted(scored) != sorted(labels):
        raise SystemExit(f"predictions cover {len(scored)} rows, labels {len(labels)}")
    correct = sum(scored[key] == label for key, label in labels.items())
    print(f"accuracy: {correct}/{len(labels)} = {correct / len(labels):.3f} (held-out rows)")


if __name__ == "__main__":
    main()
