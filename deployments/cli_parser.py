"""The ``pbe`` command line: the verbs and flags of ``az ml`` for batch endpoints.

Every command takes ``--query``, ``-o/--output``, ``--debug`` and ``--workspace``; the
``az`` flags that select an Azure workspace (``-g``, ``-w``, ``--subscription``) and
``--no-wait`` are accepted and ignored, so existing scripts run unchanged.
"""

from __future__ import annotations

import argparse

from deployments.output import FORMATS

__all__ = ["build_parser"]


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    group = common.add_argument_group("global arguments")
    group.add_argument("--query", help="JMESPath query applied to the result, e.g. name")
    group.add_argument("-o", "--output", choices=FORMATS, default="json",
                       help="output format (default json)")
    group.add_argument("--debug", action="store_true", help="show tracebacks")
    group.add_argument("--workspace", help="workspace root (default $PBE_HOME or ~/.pbe)")
    group.add_argument("--only-show-errors", action="store_true", help=argparse.SUPPRESS)
    group.add_argument("--verbose", action="store_true", help=argparse.SUPPRESS)
    for flags in (("-g", "--resource-group"), ("-w", "--workspace-name"), ("--subscription",)):
        group.add_argument(*flags, help=argparse.SUPPRESS)
    return common


class _Builder:
    def __init__(self, root: argparse._SubParsersAction) -> None:
        self.root = root
        self.common = _common()

    def group(self, name: str, help: str) -> argparse._SubParsersAction:
        parser = self.root.add_parser(name, help=help, description=help, allow_abbrev=False)
        return parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(self, group: argparse._SubParsersAction, name: str, help: str,
             wait_flag: bool = False) -> argparse.ArgumentParser:
        parser = group.add_parser(name, help=help, description=help, parents=[self.common],
                                  allow_abbrev=False)
        if wait_flag:
            parser.add_argument("--no-wait", action="store_true", help=argparse.SUPPRESS)
        return parser


def _named(parser: argparse.ArgumentParser, what: str, required: bool = True) -> None:
    parser.add_argument("-n", "--name", required=required, help=f"{what} name")


def _yes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")


def _sets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key, e.g. --set settings.mini_batch_size=20")


def _model(b: _Builder) -> None:
    g = b.group("model", "Register model files and folders (versions 1, 2, …)")
    p = b.verb(g, "create", "Register a new version of a model")
    _named(p, "model")
    p.add_argument("-p", "--path", required=True, help="model file or folder")
    p.add_argument("-t", "--type", default="custom_model", help="custom_model (default)")
    p.add_argument("-v", "--version", help="version (default: next number)")
    p.add_argument("-d", "--description")
    p.add_argument("-f", "--file", help=argparse.SUPPRESS)
    p = b.verb(g, "show", "Show a model version")
    _named(p, "model")
    p.add_argument("-v", "--version")
    p.add_argument("-l", "--label", help="latest")
    p = b.verb(g, "list", "List models, or the versions of one")
    _named(p, "model", required=False)


def _data(b: _Builder) -> None:
    g = b.group("data", "Data assets that jobs take as --input azureml:<name>@latest")
    p = b.verb(g, "create", "Register a new version of a data asset (a local path is copied in)")
    p.add_argument("-f", "--file", help="data.yml (name, version, type, path, description, tags)")
    _named(p, "data asset (wins over the file)", required=False)
    p.add_argument("-t", "--type", choices=["uri_folder", "uri_file"],
                   help="uri_folder (default) or uri_file")
    p.add_argument("-p", "--path", help="local folder or file, or a URI (s3://, https://, "
                   "azureml://datastores/<name>/paths/...)")
    p.add_argument("-v", "--version", help="version (default: next number)")
    p.add_argument("-d", "--description")
    p = b.verb(g, "show", "Show a data asset version")
    _named(p, "data asset")
    p.add_argument("-v", "--version")
    p.add_argument("-l", "--label", help="latest")
    p = b.verb(g, "list", "List data assets, or the versions of one")
    _named(p, "data asset", required=False)


def _compute(b: _Builder) -> None:
    g = b.group("compute", "Dask clusters that deployments run on")
    p = b.verb(g, "create", "Register a compute", wait_flag=True)
    _named(p, "compute")
    p.add_argument("-t", "--type", default="local",
                   choices=["local", "amlcompute", "address", "cluster_class"])
    p.add_argument("--address", help="scheduler address, for --type address")
    p.add_argument("--cluster-class", help="import path, for --type cluster_class")
    p.add_argument("--cluster-kwargs", help="JSON object of keyword arguments")
    p.add_argument("--min-instances", type=int)
    p.add_argument("--max-instances", type=int)
    for ignored in ("--size", "--idle-time-before-scale-down", "--tier", "--location"):
        p.add_argument(ignored, help=argparse.SUPPRESS)
    for verb, text in (("show", "Show a compute"), ("delete", "Delete a compute")):
        p = b.verb(g, verb, text, wait_flag=verb == "delete")
        _named(p, "compute")
        if verb == "delete":
            _yes(p)
    b.verb(g, "list", "List computes")


def _schedule(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schedule", metavar="CRON", help='cron schedule, e.g. "0 2 * * *"')
    p.add_argument("--schedule-input", metavar="PATH_OR_URI", help="input of scheduled jobs")
    p.add_argument("--schedule-input-type", default="uri_folder",
                   choices=["uri_folder", "uri_file"])


def _endpoint(b: _Builder) -> None:
    g = b.group("batch-endpoint", "Batch endpoints (Prefect deployments of batch-score)")
    p = b.verb(g, "create", "Create an endpoint", wait_flag=True)
    p.add_argument("-f", "--file", help="endpoint.yml")
    _named(p, "endpoint (wins over the file)", required=False)
    _sets(p)
    _schedule(p)
    p = b.verb(g, "update", "Change an endpoint (default deployment, schedule, …)",
               wait_flag=True)
    _named(p, "endpoint")
    p.add_argument("-f", "--file")
    _sets(p)
    _schedule(p)
    p.add_argument("--remove-schedule", action="store_true")
    for verb, text in (("show", "Show an endpoint"), ("delete", "Delete an endpoint and its "
                       "deployments (job outputs stay)"), ("list-jobs", "List its jobs")):
        p = b.verb(g, verb, text, wait_flag=verb == "delete")
        _named(p, "endpoint")
        if verb == "delete":
            _yes(p)
        if verb == "list-jobs":
            p.add_argument("--max-results", type=int, default=100)
    b.verb(g, "list", "List endpoints")
    p = b.verb(g, "invoke", "Start a job; prints it at once unless --wait")
    _named(p, "endpoint")
    p.add_argument("--input", required=True, help="folder, file or URI to score")
    p.add_argument("--input-type", default="uri_folder", choices=["uri_folder", "uri_file"])
    p.add_argument("-d", "--deployment-name", help="deployment (default: the endpoint's)")
    p.add_argument("--output-path", help="output folder (default: named after the job)")
    p.add_argument("--job-name", help="job name (default: batchjob-<uuid>)")
    p.add_argument("--mini-batch-size", type=int)
    p.add_argument("--instance-count", type=int)
    p.add_argument("--experiment-name", help=argparse.SUPPRESS)
    p.add_argument("--wait", action="store_true", help="wait for the job and exit 1 if it fails")
    _sets(p)


def _deployment(b: _Builder) -> None:
    g = b.group("batch-deployment", "Deployments behind a batch endpoint")
    p = b.verb(g, "create", "Create a deployment", wait_flag=True)
    p.add_argument("-f", "--file", required=True, help="deployment.yml")
    p.add_argument("-e", "--endpoint-name", help="endpoint (wins over the file)")
    _named(p, "deployment (wins over the file)", required=False)
    p.add_argument("--set-default", action="store_true", help="make it the endpoint's default")
    p.add_argument("--all-traffic", action="store_true", help=argparse.SUPPRESS)
    _sets(p)
    p = b.verb(g, "update", "Change a deployment (new YAML or --set)", wait_flag=True)
    p.add_argument("-f", "--file")
    p.add_argument("-e", "--endpoint-name")
    _named(p, "deployment", required=False)
    _sets(p)
    for verb, text in (("show", "Show a deployment"), ("delete", "Delete a deployment"),
                       ("list-jobs", "List the jobs that ran it")):
        p = b.verb(g, verb, text, wait_flag=verb == "delete")
        _named(p, "deployment")
        p.add_argument("-e", "--endpoint-name", required=True)
        if verb == "delete":
            _yes(p)
        if verb == "list-jobs":
            p.add_argument("--max-results", type=int, default=100)
    p = b.verb(g, "list", "List an endpoint's deployments")
    p.add_argument("-e", "--endpoint-name", required=True)


def _job(b: _Builder) -> None:
    g = b.group("job", "Jobs (flow runs of an endpoint)")
    p = b.verb(g, "show", "Show a job")
    _named(p, "job")
    p.add_argument("--web", action="store_true", help="print (and open) its Prefect UI page")
    for verb, text in (("stream", "Follow a job's logs until it ends"),
                       ("cancel", "Cancel a job")):
        _named(b.verb(g, verb, text), "job")
    p = b.verb(g, "download", "Download a job's output")
    _named(p, "job")
    p.add_argument("--output-name", default="score")
    p.add_argument("-p", "--download-path", default=".")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files already in the download folder")
    p.add_argument("--all", action="store_true")
    p = b.verb(g, "list", "List jobs, newest first")
    p.add_argument("--max-results", type=int, default=100)


def _datastore(b: _Builder) -> None:
    g = b.group("datastore", "Datastores that azureml://datastores/<name>/paths/... names")
    p = b.verb(g, "create", "Register an S3 prefix, an Azure Blob container or a local folder")
    _named(p, "datastore", required=False)
    p.add_argument("-f", "--file", help="Azure ML datastore YAML (type: azure_blob, s3, local)")
    p.add_argument("-t", "--type", choices=["s3", "local"], help="without --file")
    p.add_argument("--url", help="s3://bucket/prefix, or a folder (with --type)")
    p.add_argument("--endpoint-url", help="S3-compatible server, e.g. http://127.0.0.1:9000")
    p.add_argument("--key", help="access key id (default: the AWS credential chain)")
    p.add_argument("--secret", help="secret access key, with --key")
    p.add_argument("--region")
    p.add_argument("--overwrite", action="store_true", help="replace one of the same name")
    for verb, text in (("show", "Show a datastore"), ("delete", "Delete a datastore")):
        p = b.verb(g, verb, text)
        _named(p, "datastore")
        if verb == "delete":
            _yes(p)
    b.verb(g, "list", "List datastores (workspaceblobstore is built in)")


def _server(b: _Builder) -> None:
    g = b.group("server", "The embedded Prefect server and worker (when PREFECT_API_URL is unset)")
    for verb in ("start", "status", "stop"):
        b.verb(g, verb, f"{verb.capitalize()} the embedded server and worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pbe", allow_abbrev=False,
        description="Azure ML batch endpoints on Prefect and Dask: write pbe where you wrote "
        "az ml.")
    parser.add_argument("--version", dest="show_version", action="store_true",
                        help="print the version")
    root = parser.add_subparsers(dest="group", metavar="GROUP")
    builder = _Builder(root)
    for add in (_model, _data, _compute, _datastore, _endpoint, _deployment, _job, _server):
        add(builder)
    return parser
