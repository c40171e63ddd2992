"""The ``batch-score`` flow: list the input, fan mini-batches out on Dask, reduce, merge."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from typing import Any, Literal

from prefect import Flow, get_client, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, State

from blocks.compute import DaskCompute
from blocks.data_assets import resolve_input
from blocks.datastore import SavedDatastores, mask
from blocks.errors import SpecError
from blocks.job_settings import job_settings
from blocks.overrides import JobOverrides
from blocks.spec import JobSettings, ModelDeploymentSpec
from blocks.workspace import default_output_path
from flows.artifacts import JobSummary, PhaseClock
from flows.claims import claim_output
from flows.fanout import score_all
from flows.fingerprint import fingerprint
from flows.finish import check_outcome, merge_output
from flows.inputs import list_input
from flows.job import ScoringJob
from flows.job_progress import JobProgress
from flows.job_record import record_location
from flows.planning import plan_mini_batches
from flows.preflight import check_output
from flows.processes import fork_server_for
from flows.report import write_report
from flows.resolve import ResolvedDeployment, resolve_endpoint, resolve_spec
from flows.result_log import ResultLog
from flows.results import JobCounts, JobResult
from flows.resume import JobJournal, check_resumable, job_to_resume
from flows.staging import JobStaging
from flows.storage import Location, publish_folder
from flows.task_runner import make_task_runner
from flows.threshold import ErrorBudget
from scoring.model_formats import framework_environment
from scoring.spec import ScoringProcessSpec


def _resolve(
    endpoint: str | None,
    deployment_name: str | None,
    deployment: ModelDeploymentSpec | None,
    compute: DaskCompute | None,
) -> ResolvedDeployment:
    if deployment is not None:
        return resolve_spec(deployment, compute)
    if endpoint is None:
        raise SpecError(
            "name an endpoint (endpoint=...) or pass a deployment spec (deployment=...)"
        )
    return resolve_endpoint(endpoint, deployment_name)


def _tag_run(resolved: ResolvedDeployment) -> None:
    """Tag the run with its endpoint and deployment, however it was started.

    ``pbe batch-deployment list-jobs`` finds a deployment's jobs by these tags, so runs
    started by a schedule or ``prefect deployment run`` are listed too.
    """
    run_id = flow_run.get_id()
    if run_id is None:
        return
    tags = [f"deployment:{resolved.name}"]
    if resolved.endpoint:
        tags.insert(0, f"endpoint:{resolved.endpoint}")
    current = list(flow_run.get_tags())
    missing = [tag for tag in tags if tag not in current]
    if missing:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run_id, tags=[*current, *missing])


def _publish_counts(counts: JobCounts, logger: logging.LoggerAdapter) -> None:
    """Put the job's final counts on its flow run (labels), where ``pbe job show`` reads
    them: one write per job (while it runs, the progress artifact carries them).

    Best effort: a server too busy to answer costs the labels, never the job (its output
    and report are written already; the final state message carries the counts too).
    """
    run_id = flow_run.get_id()
    if run_id is None:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(run_id, counts.to_labels())
    except Exception as exc:  # noqa: BLE001 - an API error must not fail a scored job
        logger.warning("Could not record the job's counts on its flow run: %s", exc)


def _process_spec(
    resolved: ResolvedDeployment, settings: JobSettings, job_name: str, output_dir: str
) -> ScoringProcessSpec:
    return ScoringProcessSpec(
        code_dir=resolved.code_dir,
        scoring_script=resolved.scoring_script,
        model_dir=resolved.model_dir,
        output_dir=output_dir,
        deployment=resolved.label,
        job=job_name,
        logging_level=settings.logging_level,
        environment_variables={
            **framework_environment(resolved.model_dir),
            **settings.environment_variables,
        },
        init_timeout=max(300.0, 10.0 * settings.timeout),
    )


class _SecretSafeFlow(Flow):
    """A flow whose runs' parameters are recorded with their secrets masked.

    Prefect stores what :meth:`serialize_parameters` returns as the run's parameters (the
    UI shows them); the call itself still gets the values as given, so a SAS token in an
    input URL reaches the job but not the record.
    """

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        serialized = super().serialize_parameters(parameters)
        return {k: mask(v) if isinstance(v, str) else v for k, v in serialized.items()}


def batch_score(
    input: str,
    endpoint: str | None = None,
    deployment_name: str | None = None,
    deployment: ModelDeploymentSpec | None = None,
    input_type: Literal["uri_folder", "uri_file"] = "uri_folder",
    output_path: str | None = None,
    output_file_name: str | None = None,
    mini_batch_size: int | None = None,
    instance_count: int | None = None,
    max_retries: int | None = None,
    timeout: int | None = None,
    error_threshold: int | None = None,
    job_name: str | None = None,
    compute: DaskCompute | None = None,
    resume: bool = False,
) -> State:
    """Score every file of ``input`` with a batch deployment and merge the predictions.

    Name the endpoint (its default deployment runs unless ``deployment_name`` says
    otherwise), or pass a ``deployment`` spec directly from Python. The other arguments are
    the per-job overrides the platform allows. ``resume`` continues job ``job_name`` from
    its staging folder (a Prefect retry of the flow run does so by itself).
    """
    logger = get_run_logger()
    phases = PhaseClock()  # time per phase, for the summary artifact
    job_name = job_name or flow_run.get_name() or "batch-job"
    resolved = _resolve(endpoint, deployment_name, deployment, compute)
    _tag_run(resolved)
    # the per-job overrides are this flow's parameters of the same names
    settings = job_settings(resolved.spec, JobOverrides.from_mapping(locals()))
    append_rows = settings.output_action == "append_row"
    datastores = SavedDatastores()
    source_uri, input_type = resolve_input(input, input_type)
    if source_uri != input:
        logger.info("Input %s is data asset %s (%s).", input, mask(source_uri), input_type)
    source = Location(*datastores.resolve(source_uri))
    output = Location(*datastores.resolve(output_path or default_output_path(job_name)))
    target = output.join(settings.output_file_name) if append_rows else None
    previous = job_to_resume(
        output, job_name, resume=resume, retried=(flow_run.get_run_count() or 1) > 1
    )
    check_output(
        output,
        settings.output_file_name if append_rows else None,
        own_claim=job_name if previous is not None else None,
    )

    files = list_input(source, input_type)
    plan = plan_mini_batches(files, settings.mini_batch_size)
    logger.info(
        "Job %s: deployment %s, %d files in %d mini-batches of up to %d, %d scoring processes.",
        job_name,
        resolved.label,
        len(files),
        len(plan),
        settings.mini_batch_size,
        settings.process_count,
    )

    output.makedirs()
    script_output = output.uri if not output.remote else tempfile.mkdtemp(prefix="pbe-out-")
    staging = JobStaging(output.join(f".pbe-staging-{job_name}"))
    stamps = fingerprint(source, files)
    committed = frozenset()
    if previous is not None:  # refused here, before it takes anything over
        committed = check_resumable(previous, staging, stamps, settings)
    releases = contextlib.ExitStack()  # what the job holds until it ends, however it ends
    if target is not None:  # of two jobs with one output file, exactly one gets past here
        releases.enter_context(claim_output(target, job_name, own=previous is not None))
    with contextlib.ExitStack() as on_error:
        on_error.push(releases)  # released now if the record cannot be written
        journal = JobJournal.begin(
            previous=previous,
            committed=committed,
            job_name=job_name,
            output=output,
            staging=staging,
            input_display=mask(input),
            input_type=input_type,
            stamps=stamps,
            settings=settings,
            plan=plan,
            output_file=target.display if target else None,
            flow_run_id=flow_run.get_id(),
        )
        on_error.pop_all()
    todo = journal.remaining(plan)
    if journal.resumed:
        logger.info(
            "Job %s resumed: %d mini-batches already committed, %d to score.",
            job_name,
            len(plan) - len(todo),
            len(todo),
        )
    job = ScoringJob(
        name=job_name,
        process=_process_spec(resolved, settings, job_name, os.path.abspath(script_output)),
        timeout=float(settings.timeout),
        append_rows=append_rows,
        staging=staging,
        input_storage_options=source.storage_options,
        logs=output.join("logs"),
    )
    summary = JobSummary(
        job_name,
        resolved.endpoint,
        resolved.name,
        output,
        str(target) if target is not None else None,
        settings.error_threshold,
        phases,
    )
    progress = JobProgress(job_name, summary.key("progress"), len(plan), len(files))
    skipped = len(plan) - len(todo)

    def report_progress(results: ResultLog) -> None:
        progress(results.counts)
        journal.progress(results.recorded - skipped)

    runner = make_task_runner(  # PBE_TASK_RUNNER=stock: prefect-dask's own DaskTaskRunner
        resolved.compute.task_runner_kwargs(
            settings.instance_count, settings.max_concurrency_per_instance, max(len(todo), 1)
        )
    )
    status, counts, message, scored = "Failed", None, "", None
    cluster_seconds = scoring_seconds = 0.0
    phases.lap("prepare")
    results = releases.enter_context(ResultLog(len(plan)))  # on disk, read in index order
    try:
        results.record_all(journal.committed_results(plan, staging.failures()))
        budget = ErrorBudget(settings.error_threshold, results.counts.items_failed)
        if todo:
            with fork_server_for(runner, job, len(todo), logger) as job, runner:
                clock = time.monotonic()
                runner.client  # noqa: B018 - starts the cluster, or connects to it
                cluster_seconds = time.monotonic() - clock
                phases.lap("cluster start")
                clock = time.monotonic()
                score_all(
                    runner,
                    job,
                    todo,
                    results,
                    max_retries=settings.max_retries,
                    budget=budget,
                    logger=logger,
                    on_progress=report_progress,
                )
                scoring_seconds = time.monotonic() - clock
                phases.lap("scoring")
        scored = results.recorded - skipped
        failures = staging.failures()
        counts = results.counts
        summary.scored(counts, results, failures)
        write_report(output.join("logs"), results, failures)
        progress(counts)  # the final counts in the progress artifact, early stops included
        _publish_counts(counts, logger)
        check_outcome(
            counts,
            results,
            failures,
            error_threshold=settings.error_threshold,
            append_rows=append_rows,
            report=output.join("logs", "errors.txt").display,
        )
        if target is not None:
            merge_output(staging, results, target)
        if output.remote:  # what the script wrote into AZUREML_BI_OUTPUT_PATH
            publish_folder(script_output, output)
        status = "Completed"
        message = f"Job {job_name}: {counts.summary()}."
    except BaseException as exc:  # the record says how it ended; Prefect reports the error
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        status = "Failed" if isinstance(exc, Exception) else "Canceled"
        if isinstance(exc, Exception):
            summary.publish("Failed", str(exc), logger)
        raise
    finally:
        if status == "Completed":  # a failed or cancelled job keeps its staging: resume
            staging.remove()
        journal.end(status, counts, message, scored=scored)
        if output.remote:
            if status != "Completed":  # what the script wrote is kept, as on a local output
                try:
                    publish_folder(script_output, output)
                except Exception as exc:  # noqa: BLE001 - the job's own error matters more
                    logger.warning("Could not upload what the script wrote: %s", exc)
            shutil.rmtree(script_output, ignore_errors=True)
        releases.close()

    result = JobResult(
        job_name=job_name,
        status="Completed",
        output_path=output.uri,
        output_file=str(target) if target is not None else None,
        mini_batches=counts.mini_batches,
        mini_batches_succeeded=counts.mini_batches_succeeded,
        mini_batches_failed=counts.mini_batches_failed,
        items=counts.items,
        items_succeeded=counts.items_succeeded,
        items_failed=counts.items_failed,
        cluster_seconds=round(cluster_seconds, 3),
        scoring_seconds=round(scoring_seconds, 3),
        mini_batches_skipped=skipped,
        record=record_location(output).display,
        message=message,
    )
    logger.info("%s Output: %s", message, result.output_file or result.output_path)
    summary.publish("Completed", message, logger)
    return Completed(message=message, data=result)


batch_score = _SecretSafeFlow(
    batch_score, name="batch-score", log_prints=True, persist_result=False
)
