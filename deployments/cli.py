"""``pbe``: the entry point. Parses, connects to Prefect when needed, runs, renders, exits.

Errors print as ``ERROR: <what went wrong>`` and ``Hint: <what to do>`` on stderr with exit
code 1 (2 for usage errors); ``--debug`` adds the traceback. Prefect is imported only after
the server is chosen (see :mod:`deployments.server`).
"""

from __future__ import annotations

import os
import sys
import traceback
import webbrowser
from collections.abc import Callable
from typing import Any

from deployments.cli_parser import build_parser

__all__ = ["main"]


def _model(a: Any) -> Any:
    from deployments.registry import ModelRegistry

    registry = ModelRegistry()
    if a.verb == "create":
        return registry.create(a.name, a.path, version=a.version, type=a.type,
                               description=a.description)
    if a.verb == "show":
        return registry.show(a.name, a.version, label=a.label)
    return registry.list_models(a.name)


def _data(a: Any) -> Any:
    from blocks.data_assets import DataRegistry, data_spec

    registry = DataRegistry()
    if a.verb == "create":
        return registry.create(data_spec(a.file, name=a.name, type=a.type, path=a.path,
                                         version=a.version, description=a.description))
    if a.verb == "show":
        return registry.show(a.name, a.version, label=a.label)
    return registry.list_all(a.name)


def _compute(a: Any) -> Any:
    from deployments import computes

    if a.verb == "create":
        return computes.create_compute(
            a.name, type=a.type, address=a.address, cluster_class=a.cluster_class,
            cluster_kwargs=a.cluster_kwargs, min_instances=a.min_instances,
            max_instances=a.max_instances)
    if a.verb == "show":
        return computes.show_compute(a.name)
    if a.verb == "delete":
        _confirm(a, f"compute '{a.name}'")
        return computes.delete_compute(a.name)
    return computes.list_computes()


def _datastore(a: Any) -> Any:
    from blocks.errors import SpecError
    from deployments import datastores

    if a.verb == "create" and a.file:
        flags = [f for f in ("type", "url", "endpoint_url", "key", "secret", "region")
                 if getattr(a, f) is not None]
        if flags:
            raise SpecError(f"--{flags[0].replace('_', '-')} does not go with --file",
                            hint="put every field in the YAML file")
        return datastores.create_datastore_from_file(a.file, name=a.name,
                                                     overwrite=a.overwrite)
    if a.verb == "create":
        missing = [f"--{f}" for f in ("name", "type", "url") if not getattr(a, f)]
        if missing:
            raise SpecError(f"datastore create needs {', '.join(missing)} (or --file)",
                            hint="e.g. --name lake --type s3 --url s3://bucket/prefix, "
                            "or -f datastore.yml")
        return datastores.create_datastore(
            a.name, type=a.type, url=a.url, endpoint_url=a.endpoint_url, key=a.key,
            secret=a.secret, region=a.region, overwrite=a.overwrite)
    if a.verb == "show":
        return datastores.show_datastore(a.name)
    if a.verb == "delete":
        _confirm(a, f"datastore '{a.name}'")
        return datastores.delete_datastore(a.name)
    return datastores.list_datastores()


def _endpoint(a: Any) -> Any:
    from deployments import endpoints, jobs

    if a.verb == "create":
        return endpoints.create_endpoint(
            a.file, name=a.name, sets=a.set, schedule=a.schedule,
            schedule_input=a.schedule_input, schedule_input_type=a.schedule_input_type)
    if a.verb == "update":
        return endpoints.update_endpoint(
            a.name, sets=a.set, file=a.file, schedule=a.schedule,
            schedule_input=a.schedule_input, schedule_input_type=a.schedule_input_type,
            remove_schedule=a.remove_schedule)
    if a.verb == "show":
        return endpoints.show_endpoint(a.name)
    if a.verb == "list":
        return endpoints.list_endpoints()
    if a.verb == "delete":
        _confirm(a, f"endpoint '{a.name}' and its deployments")
        return endpoints.delete_endpoint(a.name)
    if a.verb == "list-jobs":
        return jobs.list_jobs(endpoint=a.name, max_results=a.max_results)
    job = jobs.invoke(
        a.name, a.input, input_type=a.input_type, deployment_name=a.deployment_name,
        output_path=a.output_path, job_name=a.job_name, sets=a.set,
        mini_batch_size=a.mini_batch_size, instance_count=a.instance_count)
    if not a.wait:
        return job
    return _finished(jobs.wait_for(job["name"]))


def _deployment(a: Any) -> Any:
    from deployments import batch_deployments as bd
    from deployments import jobs

    if a.verb == "create":
        return bd.create_deployment(a.file, endpoint_name=a.endpoint_name, name=a.name,
                                    sets=a.set, set_default=a.set_default)
    if a.verb == "update":
        return bd.update_deployment(a.name, a.endpoint_name, file=a.file, sets=a.set)
    if a.verb == "show":
        return bd.show_deployment(a.name, a.endpoint_name)
    if a.verb == "list":
        return bd.list_deployments(a.endpoint_name)
    if a.verb == "delete":
        _confirm(a, f"deployment '{a.name}' of endpoint '{a.endpoint_name}'")
        return bd.delete_deployment(a.name, a.endpoint_name)
    bd.show_deployment(a.name, a.endpoint_name)  # a clear error for unknown names
    return jobs.list_jobs(endpoint=a.endpoint_name, deployment=a.name,
                          max_results=a.max_results)


def _job(a: Any) -> Any:
    from deployments import job_actions, jobs

    if a.verb == "show":
        record = jobs.job_record(jobs.find_job(a.name))
        if a.web:
            url = record["services"]["Studio"]["endpoint"]
            print(url, file=sys.stderr)
            if os.environ.get("DISPLAY") or sys.platform in ("darwin", "win32"):
                webbrowser.open(url)
        return record
    if a.verb == "stream":
        return _finished(job_actions.stream_job(a.name, sys.stderr if a.query else sys.stdout),
                         show=False)
    if a.verb == "list":
        return jobs.list_jobs(max_results=a.max_results)
    if a.verb == "download":
        return job_actions.download_job(a.name, download_path=a.download_path,
                                        output_name=a.output_name, all_outputs=a.all,
                                        overwrite=a.overwrite)
    return job_actions.cancel_job(a.name)


def _server(a: Any) -> Any:
    from blocks.workspace import workspace_root
    from deployments.api import external_api_url
    from deployments.server import EmbeddedPrefect

    if url := external_api_url():
        return {"mode": "external", "api_url": url, "running": True,
                "note": "PREFECT_API_URL is set: pbe uses that server and starts nothing"}
    embedded = EmbeddedPrefect(workspace_root())
    if a.verb == "start":
        embedded.ensure()
        return embedded.status()
    return embedded.status() if a.verb == "status" else embedded.stop()


_HANDLERS: dict[str, tuple[Callable[[Any], Any], bool]] = {
    "model": (_model, False),
    "data": (_data, False),
    "compute": (_compute, True),
    "datastore": (_datastore, True),
    "batch-endpoint": (_endpoint, True),
    "batch-deployment": (_deployment, True),
    "job": (_job, True),
    "server": (_server, False),
}


class _JobEnded(Exception):
    """A job waited for ended without completing: print it, then exit 1."""

    def __init__(self, record: dict) -> None:
        super().__init__(record.get("message") or record["status"])
        self.record = record


def _finished(record: dict, *, show: bool = True) -> dict | None:
    if record["status"] != "Completed":
        raise _JobEnded(record if show else {**record, "_quiet": True})
    return record if show else None


def _confirm(a: Any, what: str) -> None:
    from blocks.errors import BatchEndpointError

    if a.yes:
        return
    if sys.stdin.isatty():
        answer = input(f"Are you sure you want to delete {what}? (y/n): ")
        if answer.strip().lower() in ("y", "yes"):
            return
    raise BatchEndpointError(f"not deleting {what} without confirmation",
                             hint="Pass --yes to delete without asking.")


_TABLE_COLUMNS = {
    "model": {"Name": "name", "Version": "version", "Type": "type", "Path": "path"},
    "data": {"Name": "name", "Version": "version", "Type": "type", "Path": "path"},
    "compute": {"Name": "name", "Type": "type", "Min": "min_instances",
                "Max": "max_instances", "Address": "address"},
    "datastore": {"Name": "name", "Type": "type", "Url": "url", "Default": "is_default"},
    "batch-endpoint": {"Name": "name", "Default deployment": "defaults.deployment_name",
                       "State": "provisioning_state", "Schedule": "schedule.cron"},
    "batch-deployment": {"Name": "name", "Endpoint": "endpoint_name", "Model": "model",
                         "Compute": "compute", "State": "provisioning_state"},
    "job": {"Name": "name", "Status": "status", "Endpoint": "endpoint_name",
            "Deployment": "deployment_name", "Created": "creation_context.created_at"},
}
_JOB_LISTS = ("list-jobs", "invoke")


def _print(result: Any, a: Any) -> None:
    from deployments.output import apply_query, render

    kind = "job" if a.verb in _JOB_LISTS or a.group == "job" else a.group
    columns = None if a.query else _TABLE_COLUMNS.get(kind)
    text = render(apply_query(result, a.query), a.output, columns)
    if text:
        print(text)


def _error(exc: BaseException, debug: bool) -> int:
    from blocks.errors import BatchEndpointError

    if not isinstance(exc, BatchEndpointError):
        from deployments.api import translate_error

        exc = translate_error(exc) or exc
    if debug:
        traceback.print_exception(exc)
    if isinstance(exc, BatchEndpointError):
        print(f"ERROR: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"Hint: {exc.hint}", file=sys.stderr)
    else:
        print(f"ERROR: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        print("Hint: run again with --debug for the traceback.", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if getattr(a, "show_version", False):
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(version("prefect-batch-endpoints"))
        except PackageNotFoundError:
            print("prefect-batch-endpoints (not installed)")
        return 0
    if not a.group:
        parser.print_help()
        return 2
    if a.workspace:
        os.environ["PBE_HOME"] = os.path.abspath(os.path.expanduser(a.workspace))
    handler, needs_prefect = _HANDLERS[a.group]
    try:
        if needs_prefect:
            from deployments.api import connect

            with connect():
                result = handler(a)
        else:
            result = handler(a)
        _print(result, a)
        return 0
    except _JobEnded as ended:
        if not ended.record.get("_quiet"):
            _print(ended.record, a)
        print(f"ERROR: job '{ended.record['name']}' ended {ended.record['status']}: "
              f"{ended.record.get('message') or ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line and a hint; the traceback only with --debug
        return _error(exc, a.debug)


if __name__ == "__main__":
    sys.exit(main())
