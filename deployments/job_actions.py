"""Following, fetching and stopping a job: ``pbe job stream``, ``download`` and ``cancel``."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from blocks.errors import BatchEndpointError, NotFoundError
from deployments import api
from deployments.jobs import FINAL, find_job, job_record
from flows.script_output import SCRIPT_LOGGER
from flows.storage import Location

__all__ = ["cancel_job", "download_job", "stream_job"]

OUTPUT_NAMES = ("score",)


_TRACEBACK = "Traceback (most recent call last):"


def _without_framework_traceback(log: Any) -> str:
    """Prefect's own loggers attach the traceback of the engine that saw a failure; the
    stream shows their first and last lines only. The script's traceback comes on the
    script's own logger (and is kept in logs/errors.txt), so it stays whole."""
    message = log.message
    if (
        not log.name.startswith("prefect")
        or log.name == SCRIPT_LOGGER
        or (_TRACEBACK not in message)
    ):
        return message
    head, _, tail = message.partition(_TRACEBACK)
    last = tail.strip().splitlines()[-1] if tail.strip() else ""
    return " ".join(part for part in (head.strip(), last) if part)


def _format_log(log: Any, task_runs: dict[Any, str] | None = None) -> str:
    """A log line; the script's own lines and task runs' lines name their mini-batch."""
    stamp = log.timestamp.strftime("%H:%M:%S.%f")[:-3]
    level = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}.get(
        log.level, str(log.level)
    )
    source = "script" if log.name == SCRIPT_LOGGER else log.name
    task_run = (task_runs or {}).get(log.task_run_id) if log.task_run_id else None
    if task_run:
        source = f"{task_run} | {source}"
    return f"{stamp} | {level:<7} | {source} - {_without_framework_traceback(log)}"


def _task_run_names(prefect: Any, logs: list[Any], names: dict[Any, str]) -> dict[Any, str]:
    """Add the names (``mini-batch-<i>``) of the task runs ``logs`` came from to ``names``."""
    for task_run_id in {log.task_run_id for log in logs if log.task_run_id} - set(names):
        try:
            names[task_run_id] = prefect.read_task_run(task_run_id).name
        except Exception:  # noqa: BLE001 - a name is a nicety
            names[task_run_id] = str(task_run_id)[:8]
    return names


def stream_job(
    name: str, out: TextIO = sys.stdout, *, poll: float = 1.0, live: bool | None = None
) -> dict[str, Any]:
    """Print the job's logs as they arrive until it ends, with its progress (a live bar on
    a terminal, unless ``live`` says otherwise); return its final record."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    from deployments.progress import ProgressView

    run = find_job(name)
    record = job_record(run)
    print(
        f"RunId: {record['name']}\nWeb View: {record['services']['Studio']['endpoint']}\n"
        "\nStreaming logs:\n",
        file=out,
        flush=True,
    )
    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))
    seen, ended_at, task_runs = 0, None, {}
    with api.client() as prefect, ProgressView(out, live=live) as view:
        while True:
            logs = prefect.read_logs(
                log_filter=log_filter, offset=seen, limit=200, sort=LogSort.TIMESTAMP_ASC
            )
            _task_run_names(prefect, logs, task_runs)
            for log in logs:
                view.log(_format_log(log, task_runs))
            seen += len(logs)
            if len(logs) == 200:
                continue
            if ended_at is None:
                record = job_record(prefect.read_flow_run(run.id))
                view.update(record["properties"], record["status"])
                if record["status"] in FINAL:
                    ended_at = time.monotonic()
            elif not logs and time.monotonic() - ended_at >= 2.0:
                break  # the run's last log batch arrives up to ~2 s after its end
            time.sleep(poll)
    print(
        f"\nExecution Summary\n=================\nRunId: {record['name']}\n"
        f"Status: {record['status']}\nMessage: {record['message']}\n"
        f"Output: {record['outputs']['score']['path']}\n"
        f"Web View: {record['services']['Studio']['endpoint']}",
        file=out,
        flush=True,
    )
    return record


def download_job(
    name: str,
    *,
    download_path: str = ".",
    output_name: str | None = "score",
    all_outputs: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Copy the job's output to ``<download_path>/named-outputs/<output_name>/``.

    Files already there are never replaced without ``overwrite``: the download is refused
    before anything is copied, naming them. A job that wrote nothing says so.
    """
    record = job_record(find_job(name))
    names = list(OUTPUT_NAMES) if all_outputs else [output_name or "score"]
    for wanted in names:
        if wanted not in OUTPUT_NAMES:
            raise NotFoundError(
                "output",
                wanted,
                known=OUTPUT_NAMES,
                hint="Batch jobs have one output: --output-name score",
            )
    if record["status"] not in FINAL:
        raise BatchEndpointError(
            f"job '{name}' is {record['status']}; its output is not complete yet",
            hint=f"Wait for it: pbe job stream -n {name}",
        )
    source = record["outputs"]["score"]["path"]
    location, files = _output_files(source)
    if not files:
        raise BatchEndpointError(
            f"job '{name}' ({record['status']}) has nothing to download: it wrote no output "
            f"to {location.display}",
            hint=f"See why it ended: pbe job show -n {name}",
        )
    copied = []
    for wanted in names:
        target = os.path.join(download_path, "named-outputs", wanted)
        _copy_files(location, files, target, overwrite=overwrite)
        copied.append(target)
    return {
        "name": name,
        "status": record["status"],
        "downloaded": copied,
        "source": source,
        "files": len(files),
    }


def _output_files(source: str) -> tuple[Location, list[str]]:
    """The job's output folder and the files in it (relative paths), without job internals."""
    from blocks.datastore import SavedDatastores

    location = Location(*SavedDatastores().resolve(source))  # azureml://datastores/... too
    fs, root = location.filesystem()
    root = root.rstrip("/")
    with location.errors():
        found = fs.find(root) if fs.isdir(root) else []
    relative = [path[len(root) :].lstrip("/") for path in found]
    return location, sorted(p for p in relative if not _internal(p))


def _internal(relative: str) -> bool:
    """A job's staging folder or output claim (see flows.staging, flows.claims)."""
    first = relative.split("/", 1)[0]
    return first.startswith(".pbe-staging-") or (first.startswith(".") and first.endswith(".claim"))


def _copy_files(location: Location, files: list[str], target: str, *, overwrite: bool) -> None:
    existing = [f for f in files if os.path.lexists(os.path.join(target, f))]
    if existing and not overwrite:
        shown = ", ".join(existing[:5]) + (
            f" and {len(existing) - 5} more" if len(existing) > 5 else ""
        )
        raise BatchEndpointError(
            f"{len(existing)} file(s) already in {target}: {shown}; nothing was downloaded",
            hint="Choose another --download-path, or pass --overwrite to replace them.",
        )
    fs, root = location.filesystem()
    for relative in files:
        destination = os.path.join(target, relative)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        partial = f"{destination}.pbe-download"
        with location.errors():
            fs.get_file(f"{root.rstrip('/')}/{relative}", partial)
        os.replace(partial, destination)  # a file appears whole, or not at all


def cancel_job(name: str) -> dict[str, Any]:
    """Ask Prefect to cancel the job (its worker stops the run's processes)."""
    from prefect.client.schemas.objects import StateType
    from prefect.states import State

    run = find_job(name)
    record = job_record(run)
    if record["status"] in FINAL:
        raise BatchEndpointError(
            f"job '{name}' already ended ({record['status']})",
            hint="Only queued or running jobs can be canceled.",
        )
    with api.client() as prefect:
        state_type = (
            StateType.CANCELLED
            if record["status"] in ("Queued", "Paused")
            else StateType.CANCELLING
        )
        result = prefect.set_flow_run_state(
            run.id, State(type=state_type, message="Canceled by pbe job cancel"), force=True
        )
        if getattr(result.status, "value", result.status) == "ABORT":
            raise BatchEndpointError(
                f"Prefect refused to cancel job '{name}': {result.details.reason}"
            )
        return job_record(prefect.read_flow_run(run.id))
