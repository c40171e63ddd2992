"""Resume overhead: a job of 100,000 files of which 99,000 are committed, resumed, against a
fresh job of the 1,000 files left (no-op script, ``mini_batch_size`` 10, 2 processes).

Prints, in one run:
- the resume's own preparation for 100,000 files (list the input, fingerprint it, compare
  with the job's, list the committed parts once): seconds and the peak of Python memory,
  with 0 and with 9,900 committed mini-batches (the peak must not grow with them beyond
  the set of their indices);
- the whole resumed job (prepare, score the 100 mini-batches left, merge all 10,000 parts)
  against a fresh job of 1,000 files: seconds and their ratio, the CPU seconds of this
  (the flow's) process and their ratio (steadier than wall time on a loaded machine: the
  resume's extra work is all here), and each job's time per phase (from its summary
  artifact: prepare, cluster start, scoring, finish).

The interrupted job is made with the engine's own pieces (its record, fingerprint and
parts written as a job writes them), not by running and killing it: the point is the
resume. Run: ``python benchmarks/resume.py [--files 100000] [--left 1000]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

from _common import isolated_prefect, machine, noop_deployment, result_line, settle, write_files

MINI_BATCH = 10


def interrupted_job(spec, inputs: Path, output: Path, job: str, committed: int) -> None:
    """What a job killed after committing its first ``committed`` mini-batches leaves."""
    from blocks.job_settings import job_settings
    from blocks.overrides import JobOverrides
    from flows.fingerprint import fingerprint
    from flows.inputs import list_input
    from flows.planning import plan_mini_batches
    from flows.resume import JobJournal
    from flows.staging import JobStaging
    from flows.storage import Location

    source, out = Location(str(inputs)), Location(str(output))
    files = list_input(source)
    plan = plan_mini_batches(files, MINI_BATCH)
    staging = JobStaging(out.join(f".pbe-staging-{job}"))
    journal = JobJournal.begin(
        previous=None,
        committed=frozenset(),
        job_name=job,
        output=out,
        staging=staging,
        input_display=str(inputs),
        input_type="uri_folder",
        stamps=fingerprint(source, files),
        settings=job_settings(spec, JobOverrides()),
        plan=plan,
        output_file=str(output / "predictions.csv"),
        flow_run_id=None,
    )
    for mini_batch in plan[:committed]:  # the no-op script's rows: one path per line
        staging.commit_rows(mini_batch.index, "".join(f"{f}\n" for f in mini_batch.files).encode())
    journal.end("Failed", None, "benchmark: the job was interrupted")


def prepare(spec, inputs: Path, output: Path, job: str) -> tuple[float, float, int]:
    """The resume's preparation: seconds (untraced), peak MiB of Python memory (traced
    apart: tracing slows it), committed found."""
    seconds, _, _ = _prepare(spec, inputs, output, job, trace=False)
    _, peak, found = _prepare(spec, inputs, output, job, trace=True)
    return seconds, peak, found


def _prepare(spec, inputs: Path, output: Path, job: str, *, trace: bool):
    from blocks.job_settings import job_settings
    from blocks.overrides import JobOverrides
    from flows.fingerprint import fingerprint
    from flows.inputs import list_input
    from flows.resume import check_resumable, job_to_resume
    from flows.staging import JobStaging
    from flows.storage import Location

    source, out = Location(str(inputs)), Location(str(output))
    settings = job_settings(spec, JobOverrides())
    if trace:
        tracemalloc.start()
    clock = time.perf_counter()
    previous = job_to_resume(out, job, resume=True, retried=False)
    files = list_input(source)
    staging = JobStaging(out.join(f".pbe-staging-{job}"))
    committed = check_resumable(previous, staging, fingerprint(source, files), settings)
    seconds = time.perf_counter() - clock
    peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else 0.0
    tracemalloc.stop()
    return seconds, peak, len(committed)


def cpu_seconds() -> float:
    """CPU time of this process so far (all its threads: the flow, Dask's scheduler)."""
    times = os.times()
    return times.user + times.system


def phases(flow_run_id) -> str:
    """A job's time per phase, as its summary artifact gives them (``prepare 1.2 s, …``)."""
    import re

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    for artifact in artifacts:
        found = re.findall(r"^\| ([a-z ]+) \| ([0-9.]+) \|$", str(artifact.data), re.M)
        if found:
            return ", ".join(f"{name} {seconds} s" for name, seconds in found)
    return "phases not found"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--left", type=int, default=1_000)
    args = parser.parse_args()
    committed = (args.files - args.left) // MINI_BATCH
    print(f"resume overhead · {machine()}")
    with tempfile.TemporaryDirectory(prefix="pbe-bench-resume-") as tmp, isolated_prefect():
        from flows.batch_score import batch_score

        root = Path(tmp)
        spec = noop_deployment(root, mini_batch_size=MINI_BATCH, max_concurrency_per_instance=2)
        big = write_files(root / "big", args.files)
        small = write_files(root / "small", args.left)
        interrupted_job(spec, big, root / "none", "bench-none", 0)
        interrupted_job(spec, big, root / "out", "bench-resume", committed)
        none_s, none_peak, _ = prepare(spec, big, root / "none", "bench-none")
        prep_s, prep_peak, found = prepare(spec, big, root / "out", "bench-resume")
        assert found == committed, (found, committed)
        print(
            f"preparation, {args.files:,} files: 0 committed {none_s:.2f} s, peak "
            f"{none_peak:.1f} MiB; {committed:,} committed {prep_s:.2f} s, peak "
            f"{prep_peak:.1f} MiB (growth {prep_peak - none_peak:+.1f} MiB)"
        )

        batch_score(input=str(small), deployment=spec, output_path=str(root / "warm"))
        settle()
        clock, cpu = time.perf_counter(), cpu_seconds()
        fresh_state = batch_score(
            input=str(small),
            deployment=spec,
            output_path=str(root / "fresh"),
            job_name="bench-fresh",
            return_state=True,
        )
        fresh_s, fresh_cpu = time.perf_counter() - clock, cpu_seconds() - cpu
        fresh = fresh_state.result()
        settle()
        clock, cpu = time.perf_counter(), cpu_seconds()
        resumed_state = batch_score(
            input=str(big),
            deployment=spec,
            output_path=str(root / "out"),
            job_name="bench-resume",
            resume=True,
            return_state=True,
        )
        resume_s, resume_cpu = time.perf_counter() - clock, cpu_seconds() - cpu
        resumed = resumed_state.result()
        rows = sum(1 for _ in open(root / "out" / "predictions.csv"))
        assert rows == args.files and resumed.mini_batches_skipped == committed
        print(
            f"fresh job of {args.left:,} files: {fresh_s:.2f} s (scoring "
            f"{fresh.scoring_seconds:.2f} s; flow process CPU {fresh_cpu:.2f} s)\n"
            f"  {phases(fresh_state.state_details.flow_run_id)}"
        )
        print(
            f"resumed job, {args.left:,} of {args.files:,} files left: {resume_s:.2f} s "
            f"(scoring {resumed.scoring_seconds:.2f} s; merged {rows:,} rows) = "
            f"{resume_s / fresh_s:.2f} x the fresh job; flow process CPU {resume_cpu:.2f} s = "
            f"{resume_cpu / fresh_cpu:.2f} x\n"
            f"  {phases(resumed_state.state_details.flow_run_id)}"
        )
        print(
            result_line(
                files=args.files,
                left=args.left,
                prepare_s=prep_s,
                prepare_peak_mib=prep_peak,
                prepare_peak_growth_mib=prep_peak - none_peak,
                fresh_s=fresh_s,
                resume_s=resume_s,
                ratio=resume_s / fresh_s,
                fresh_cpu_s=fresh_cpu,
                resume_cpu_s=resume_cpu,
                cpu_ratio=resume_cpu / fresh_cpu,
            )
        )


if __name__ == "__main__":
    main()
