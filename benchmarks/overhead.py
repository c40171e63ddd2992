"""Orchestration overhead: 1,000 no-op mini-batches on 2 worker processes.

Prints the flow's cost per mini-batch (scoring phase: first submission to last result;
the cluster start is printed apart), beside, in the same run:
- raw Dask: ``client.map`` of a no-op over the same count on the same kind of cluster (the
  floor), and
- stock prefect-dask: a no-op Prefect task on ``prefect_dask.DaskTaskRunner`` (fewer tasks:
  it is slow), to show what the engine's own task runner saves.

``--runner stock`` runs the flow on stock ``prefect_dask.DaskTaskRunner``
(``PBE_TASK_RUNNER=stock``) instead of the engine's own task runner (``fast``, the default):
the same job, mini-batch for mini-batch; give it fewer mini-batches.

Run: ``python benchmarks/overhead.py [--mini-batches 1000] [--stock-tasks 100] [--runner fast]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import isolated_prefect, machine, noop_deployment, result_line, verdict, write_files

TARGET_MS = 30.0


def _noop(value):
    return value


def raw_dask_ms(count: int) -> float:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.gather(client.map(_noop, range(20), pure=False))
            started = time.perf_counter()
            client.gather(client.map(_noop, range(count), pure=False))
            return (time.perf_counter() - started) * 1000 / count


def stock_prefect_dask_ms(count: int) -> float:
    from prefect import flow, task
    from prefect_dask import DaskTaskRunner

    @task
    def noop(value):
        return value

    runner = DaskTaskRunner(
        cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "dashboard_address": None}
    )

    @flow(task_runner=runner)
    def stock() -> float:
        [f.result() for f in [noop.submit(i) for i in range(4)]]
        started = time.perf_counter()
        [f.result() for f in [noop.submit(i) for i in range(count)]]
        return (time.perf_counter() - started) * 1000 / count

    return stock()


def engine_run(root: Path, count: int):
    from flows.batch_score import batch_score

    spec = noop_deployment(root, mini_batch_size=1, max_concurrency_per_instance=2)
    inputs = write_files(root / "inputs", count)
    return batch_score(input=str(inputs), deployment=spec, output_path=str(root / "out"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mini-batches", type=int, default=1000)
    parser.add_argument("--stock-tasks", type=int, default=100)
    parser.add_argument(
        "--runner",
        choices=("fast", "stock"),
        default="fast",
        help="the batch-score flow's task runner (PBE_TASK_RUNNER)",
    )
    args = parser.parse_args()
    os.environ["PBE_TASK_RUNNER"] = args.runner

    print(f"machine: {machine()}")
    with isolated_prefect(), tempfile.TemporaryDirectory(prefix="pbe-overhead-") as tmp:
        result = engine_run(Path(tmp), args.mini_batches)
        engine_ms = result.scoring_seconds * 1000 / args.mini_batches
        raw_ms = raw_dask_ms(args.mini_batches)
        stock_ms = stock_prefect_dask_ms(args.stock_tasks) if args.stock_tasks else float("nan")

    print(
        f"batch-score flow : {engine_ms:8.1f} ms per mini-batch ({args.runner} runner, "
        f"{args.mini_batches} mini-batches; cluster start {result.cluster_seconds:.1f} s apart)"
    )
    print(f"raw Dask map     : {raw_ms:8.1f} ms per task (the floor)")
    print(f"stock prefect-dask: {stock_ms:7.1f} ms per task ({args.stock_tasks} tasks)")
    print(
        f"flow / raw Dask  : {engine_ms / raw_ms:8.1f}x;  stock / flow: {stock_ms / engine_ms:.1f}x"
    )
    print(f"target <= {TARGET_MS:.0f} ms per mini-batch: {verdict(engine_ms <= TARGET_MS)}")
    print(
        result_line(
            runner=args.runner,
            ms_per_minibatch=engine_ms,
            raw_dask_ms_per_task=raw_ms,
            stock_prefect_dask_ms_per_task=stock_ms,
            cluster_start_s=result.cluster_seconds,
            target_met=str(engine_ms <= TARGET_MS).lower(),
        )
    )


if __name__ == "__main__":
    main()
