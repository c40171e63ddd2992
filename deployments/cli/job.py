"""``pbe job``: jobs (flow runs of an endpoint's deployments)."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

from cyclopts import Parameter

from deployments.cli.common import (
    JOB_COLUMNS,
    CommandGroup,
    GlobalOptions,
    MaxResults,
    Name,
    Sets,
    finished,
)

group = CommandGroup(
    "job",
    "Jobs (flow runs of an endpoint).",
    columns=JOB_COLUMNS,
    examples=[
        "pbe job show -n batchjob-5f3a --query status -o tsv",
        "pbe job show -n batchjob-5f3a --web  # its page in the Prefect UI",
        "pbe job stream -n batchjob-5f3a  # logs until it ends; exit 1 if it failed",
        "pbe job download -n batchjob-5f3a --output-name score --download-path out/",
        "pbe job cancel -n batchjob-5f3a",
        "pbe job resume -n batchjob-5f3a --set timeout=120 --wait  # after a failure",
        "pbe job list --max-results 10 -o table",
    ],
)


@group.verb
def show(*, name: Name, web: bool = False) -> dict[str, Any]:
    """Show a job: status, counts, inputs, outputs, and each run of it (resumes).

    Parameters
    ----------
    name
        Job name.
    web
        Print its Prefect UI page on stderr (and open it where there is a display).
    """
    from deployments import jobs

    record = jobs.job_record(jobs.find_job(name), details=True)
    if web:
        url = record["services"]["Studio"]["endpoint"]
        print(url, file=sys.stderr)
        if os.environ.get("DISPLAY") or sys.platform in ("darwin", "win32"):
            import webbrowser

            webbrowser.open(url)
    return record


@group.verb
def stream(*, name: Name, options: GlobalOptions) -> None:
    """Follow a job's logs until it ends (exit 1 if it did not complete).

    Parameters
    ----------
    name
        Job name.
    """
    from deployments import job_actions

    out = sys.stderr if options.query else sys.stdout  # stdout is for the --query result
    return finished(job_actions.stream_job(name, out), show=False)


@group.verb
def cancel(*, name: Name) -> dict[str, Any]:
    """Cancel a job.

    Parameters
    ----------
    name
        Job name.
    """
    from deployments import job_actions

    return job_actions.cancel_job(name)


@group.verb
def resume(
    *,
    name: Name,
    instance_count: int | None = None,
    wait: bool = False,
    sets: Sets = (),
) -> dict[str, Any] | None:
    """Continue a failed or canceled job: score only what it did not commit.

    The input must be unchanged (each file's name, size and modification time); a job that
    completed, or whose staging folder was removed, cannot be resumed.

    Parameters
    ----------
    name
        Job name.
    instance_count
        Nodes for the rest of the job (default: as the job had).
    wait
        Wait for the job, print it when it ends, and exit 1 if it did not complete.
    sets
        KEY=VALUE: a per-job setting to change, e.g. --set timeout=120 or
        --set max_retries=5 (mini_batch_size and output_file_name cannot change).
    """
    from deployments import jobs
    from deployments.resume import resume_job

    job = resume_job(name, sets=sets, instance_count=instance_count)
    if not wait:
        return job
    return finished(jobs.wait_for(job["name"]))


@group.verb
def download(
    *,
    name: Name,
    output_name: str = "score",
    download_path: Annotated[str, Parameter(name=["--download-path", "-p"])] = ".",
    all_outputs: Annotated[bool, Parameter(name="--all")] = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Download a job's output (into <download-path>/named-outputs/<output-name>/).

    Parameters
    ----------
    name
        Job name.
    output_name
        Output to download: score (the predictions file).
    download_path
        Folder to download into.
    all_outputs
        Download every output.
    overwrite
        Replace files already in the download folder (without it, nothing is replaced).
    """
    from deployments import job_actions

    return job_actions.download_job(
        name,
        download_path=download_path,
        output_name=output_name,
        all_outputs=all_outputs,
        overwrite=overwrite,
    )


@group.verb
def list_(*, max_results: MaxResults = 100) -> list[dict[str, Any]]:
    """List jobs, newest first."""
    from deployments import jobs

    return jobs.list_jobs(max_results=max_results)
