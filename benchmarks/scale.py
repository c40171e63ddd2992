"""Scale: listing, planning and merging 1,000,000 files; real jobs of 100,000 mini-batches.

Each size runs in a fresh process that reports its seconds and its peak memory (max RSS).
The inputs are real (empty) files in a temporary folder; the parts are what succeeded
mini-batches commit (10 rows each). The merge streams parts into the output, so its memory
must not grow with the number of rows: the peak after the merge is compared with the peak
before it.

``--flow 10000 100000`` runs real jobs instead: that many no-op mini-batches (one file each)
through ``batch_score`` on the local cluster (2 workers), each in a fresh process with a
fresh Prefect server (``--server embedded``: pbe's own; ``pg-redis``: PostgreSQL + Redis on
loopback, see docs/production.md), and reports ms per mini-batch, peak RSS of the flow and of
each worker (and above their first sample), the events the server dropped (0 required) and
the task runs it recorded in a final state (all required), with the rate it recorded them.

Run: ``python benchmarks/scale.py [--sizes 100000 1000000] [--mini-batch-size 10]``
     ``python benchmarks/scale.py --flow 10000 100000 [--server embedded|pg-redis]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, result_line, verdict

TARGET_PEAK_MIB = 1024
#: a job's processes may grow at most this much above their idle size, whatever its size
TARGET_GROWTH_MIB = 300


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(count: int, mini_batch_size: int) -> dict[str, float]:
    """One size, in this process: make the files, then time list → plan → merge."""
    from flows.inputs import list_input
    from flows.planning import plan_mini_batches
    from flows.staging import JobStaging
    from flows.storage import Location

    with tempfile.TemporaryDirectory(prefix="pbe-scale-") as tmp:
        inputs = Path(tmp) / "inputs"
        inputs.mkdir()
        for number in range(count):
            os.close(os.open(inputs / f"{number:08d}.png", os.O_CREAT | os.O_WRONLY, 0o644))
        staging = JobStaging(Location(str(Path(tmp) / "staging")))
        baseline = _max_rss_mib()

        clock = time.perf_counter()
        files = list_input(Location(str(inputs)))
        list_s = time.perf_counter() - clock
        clock = time.perf_counter()
        plan = plan_mini_batches(files, mini_batch_size)
        plan_s = time.perf_counter() - clock

        parts = Path(staging.root.uri) / "parts"
        parts.mkdir(parents=True)
        for mini_batch in plan:  # what the workers commit: one part per mini-batch
            rows = "".join(f"{os.path.basename(f)} 7 0.99\n" for f in mini_batch.files)
            (parts / f"{mini_batch.index:09d}.rows").write_text(rows)
        before_merge = _max_rss_mib()

        clock = time.perf_counter()
        size = Location(str(Path(tmp) / "predictions.csv")).write_atomic(
            staging.rows(mb.index for mb in plan)
        )
        merge_s = time.perf_counter() - clock
        after_merge = _max_rss_mib()
    return {
        "files": count,
        "list_s": list_s,
        "plan_s": plan_s,
        "merge_s": merge_s,
        "merged_mib": size / 2**20,
        "baseline_mib": baseline,
        "peak_mib": after_merge,
        "merge_growth_mib": after_merge - before_merge,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--mini-batch-size", type=int, default=10)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--flow", type=int, nargs="+", help="real jobs of these mini-batches")
    parser.add_argument("--server", choices=("embedded", "pg-redis"), default="embedded")
    args = parser.parse_args()
    if args.flow:
        flow_main(args.flow, args.server)
        return
    if args.one:
        print(json.dumps(measure(args.one, args.mini_batch_size)))
        return

    print(f"machine: {machine()}")
    figures = {}
    for count in args.sizes:
        output = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                str(count),
                "--mini-batch-size",
                str(args.mini_batch_size),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(output.strip().splitlines()[-1])
        print(
            f"{count:>9,} files: list {r['list_s']:6.2f} s, plan {r['plan_s']:5.2f} s, "
            f"merge {r['merge_s']:6.2f} s ({r['merged_mib']:.0f} MiB written) | peak "
            f"{r['peak_mib']:6.0f} MiB (imports {r['baseline_mib']:.0f} MiB), merge added "
            f"{r['merge_growth_mib']:.0f} MiB"
        )
        figures[count] = r
    largest = figures[max(figures)]
    met = largest["peak_mib"] <= TARGET_PEAK_MIB
    print(
        f"target: {max(figures):,} files with peak flow memory <= {TARGET_PEAK_MIB} MiB: "
        f"{verdict(met)}"
    )
    values = {}
    for count, r in figures.items():
        tag = f"{count // 1000}k"
        values[f"seconds_{tag}"] = round(r["list_s"] + r["plan_s"] + r["merge_s"], 2)
        values[f"peak_mib_{tag}"] = round(r["peak_mib"], 1)
        values[f"merge_growth_mib_{tag}"] = round(r["merge_growth_mib"], 1)
    print(result_line(**values, target_met=str(met).lower()))


def flow_main(sizes: list[int], server: str) -> None:
    """Real jobs through ``batch_score``, each in a fresh process with a fresh server."""
    print(f"machine: {machine()}; server: {server}")
    values: dict[str, float | int | str] = {"server": server}
    met = True
    for count in sizes:
        output = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("_flow_scale.py")), str(count), server],
            check=True,
            stdout=subprocess.PIPE,
            text=True,  # its log and errors: on stderr
        ).stdout
        r = json.loads(output.strip().splitlines()[-1])
        flow_growth = r["flow_peak_mib"] - r["flow_idle_mib"]
        workers = ", ".join(
            f"{w['peak_mib']:.0f} (+{w['peak_mib'] - w['first_mib']:.0f})" for w in r["workers"]
        )
        worker_growth = max((w["peak_mib"] - w["first_mib"] for w in r["workers"]), default=0)
        ok = (
            r["dropped_events"] == 0
            and r["task_runs_final"] == count
            and max(flow_growth, worker_growth) <= TARGET_GROWTH_MIB
        )
        met = met and ok
        print(
            f"{count:>9,} mini-batches: {r['ms_per_minibatch']:6.1f} ms each (job "
            f"{r['job_seconds']:.0f} s; server recorded all in {r['recorded_seconds']:.0f} s = "
            f"{r['recorded_per_second']:.1f}/s) | peak RSS flow {r['flow_peak_mib']:.0f} MiB "
            f"(+{flow_growth:.0f}), workers {workers} MiB | dropped events "
            f"{r['dropped_events']} | task runs final {r['task_runs_final']}/{count} "
            f"(of {r['task_runs']})"
        )
        tag = f"{count // 1000}k"
        values |= {
            f"ms_per_minibatch_{tag}": round(r["ms_per_minibatch"], 2),
            f"recorded_per_s_{tag}": round(r["recorded_per_second"], 1),
            f"flow_peak_mib_{tag}": round(r["flow_peak_mib"], 1),
            f"worker_peak_mib_{tag}": round(max(w["peak_mib"] for w in r["workers"]), 1),
            f"dropped_{tag}": r["dropped_events"],
            f"final_{tag}": r["task_runs_final"],
        }
    print(
        f"target: no dropped event, every task run final, flow and workers <= "
        f"{TARGET_GROWTH_MIB} MiB above idle: {verdict(met)}"
    )
    print(result_line(**values, target_met=str(met).lower()))


if __name__ == "__main__":
    main()
