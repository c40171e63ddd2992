"""Following, fetching and stopping a job: ``pbe job stream``, ``download`` and ``cancel``."""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any, TextIO

from blocks.errors import BatchEndpointError, NotFoundError
from deployments import api
from deployments.jobs import FINAL, find_job, job_record
from flows.storage import Location

__all__ = ["cancel_job", "download_job", "stream_job"]

OUTPUT_NAMES = ("score",)


def _format_log(log: Any) -> str:
    stamp = log.timestamp.strftime("%H:%M:%S.%f")[:-3]
    level = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}.get(
        log.level, str(log.level))
    return f"{stamp} | {level:<7} | {log.name} - {log.message}"


def stream_job(name: str, out: TextIO = sys.stdout, *, poll: float = 1.0) -> dict[str, Any]:
    """Print the job's logs as they arrive until it ends; return its final record."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    run = find_job(name)
    record = job_record(run)
    print(f"RunId: {record['name']}\nWeb View: {record['services']['Studio']['endpoint']}\n"
          "\nStreaming logs:\n", file=out, flush=True)
    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))
    seen, ended_at = 0, None
    with api.client() as prefect:
        while True:
            logs = prefect.read_logs(log_filter=log_filter, offset=seen, limit=200,
                                     sort=LogSort.TIMESTAMP_ASC)
            for log in logs:
                print(_format_log(log), file=out, flush=True)
            seen += len(logs)
            if len(logs) == 200:
                continue
            if ended_at is None:
                record = job_record(prefect.read_flow_run(run.id))
                if record["status"] in FINAL:
                    ended_at = time.monotonic()
            elif not logs and time.monotonic() - ended_at >= 2.0:
                break  # the run's last log batch arrives up to ~2 s after its end
            time.sleep(poll)
    print(f"\nExecution Summary\n=================\nRunId: {record['name']}\n"
          f"Status: {record['status']}\nMessage: {record['message']}\n"
          f"Output: {record['outputs']['score']['path']}\n"
          f"Web View: {record['services']['Studio']['endpoint']}", file=out, flush=True)
    return record


def download_job(name: str, *, download_path: str = ".", output_name: str | None = "score",
                 all_outputs: bool = False) -> dict[str, Any]:
    """Copy the job's output to ``<download_path>/named-outputs/<output_name>/``."""
    record = job_record(find_job(name))
    names = list(OUTPUT_NAMES) if all_outputs else [output_name or "score"]
    for wanted in names:
        if wanted not in OUTPUT_NAMES:
            raise NotFoundError("output", wanted, known=OUTPUT_NAMES,
                                hint="Batch jobs have one output: --output-name score")
    if record["status"] not in FINAL:
        raise BatchEndpointError(
            f"job '{name}' is {record['status']}; its output is not complete yet",
            hint=f"Wait for it: pbe job stream -n {name}")
    source = record["outputs"]["score"]["path"]
    copied = []
    for wanted in names:
        target = os.path.join(download_path, "named-outputs", wanted)
        _copy_tree(source, target)
        copied.append(target)
    return {"name": name, "status": record["status"], "downloaded": copied, "source": source}


def _copy_tree(source: str, target: str) -> None:
    from blocks.datastore import SavedDatastores

    uri, options = SavedDatastores().resolve(source)  # azureml://datastores/... too
    location = Location(uri, options)
    source = uri
    if not location.remote:
        if not os.path.isdir(source):
            raise NotFoundError("output folder", source, hint="The job wrote no output there.")
        shutil.copytree(source, target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".pbe-staging-*"))
        return
    fs, path = location.filesystem()
    if not fs.exists(path):
        raise NotFoundError("output folder", source, hint="The job wrote no output there.")
    os.makedirs(target, exist_ok=True)
    fs.get(path.rstrip("/") + "/", target.rstrip("/") + "/", recursive=True)


def cancel_job(name: str) -> dict[str, Any]:
    """Ask Prefect to cancel the job (its worker stops the run's processes)."""
    from prefect.client.schemas.objects import StateType
    from prefect.states import State

    run = find_job(name)
    record = job_record(run)
    if record["status"] in FINAL:
        raise BatchEndpointError(f"job '{name}' already ended ({record['status']})",
                                 hint="Only queued or running jobs can be canceled.")
    with api.client() as prefect:
        state_type = (StateType.CANCELLED if record["status"] in ("Queued", "Paused")
                      else StateType.CANCELLING)
        result = prefect.set_flow_run_state(run.id, State(type=state_type,
                                                          message="Canceled by pbe job cancel"),
                                            force=True)
        if getattr(result.status, "value", result.status) == "ABORT":
            raise BatchEndpointError(f"Prefect refused to cancel job '{name}': "
                                     f"{result.details.reason}")
        return job_record(prefect.read_flow_run(run.id))
