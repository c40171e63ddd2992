"""The management plane's plain parts, without a Prefect server: fast."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest

from blocks.endpoint import compute_document_name, deployment_document_name, endpoint_document_name
from blocks.errors import AlreadyExistsError, NotFoundError, SpecError
from blocks.overrides import JobOverrides
from deployments.cli.app import app as pbe_app
from deployments.jobs import status_of
from deployments.output import apply_query, render
from deployments.registry import ModelRegistry
from deployments.server import EmbeddedPrefect, lower_priority
from flows.resolve import model_dir_for
from flows.results import JobCounts

# --- output --------------------------------------------------------------------------------

JOB = {
    "name": "batchjob-1",
    "status": "Completed",
    "defaults": {"deployment_name": "d"},
    "outputs": {"score": {"path": "/out"}},
}


def test_query_and_tsv_give_bare_values_for_shell_scripts():
    assert render(apply_query(JOB, "name"), "tsv") == "batchjob-1"
    assert render(apply_query([JOB, JOB], "[].name"), "tsv") == "batchjob-1\nbatchjob-1"
    assert render(apply_query(JOB, "{Name:name, Defaults:defaults}"), "json") == json.dumps(
        {"Name": "batchjob-1", "Defaults": {"deployment_name": "d"}}, indent=2
    )
    assert render(apply_query(JOB, "outputs.score.path"), "tsv") == "/out"
    assert render(apply_query(JOB, "missing"), "tsv") == ""
    assert render({"a": 1, "b": None, "c": True, "d": {"x": 1}}, "tsv") == "1\t\tTrue"


def test_table_yaml_and_errors():
    table = render([JOB], "table", {"Name": "name", "Default": "defaults.deployment_name"})
    header, rule, row = table.splitlines()
    assert header.split() == ["Name", "Default"] and set(rule) <= {"-", " "}
    assert row.split() == ["batchjob-1", "d"]
    assert "Status" in render(JOB, "table")  # default columns: the top-level scalars
    assert render(JOB, "yaml").splitlines()[0] == "name: batchjob-1"
    assert render(None, "json") == "" and render(JOB, "none") == ""
    with pytest.raises(Exception, match="invalid --query"):
        apply_query(JOB, "[[[")


# --- per-job overrides and job status --------------------------------------------------------


def test_job_overrides_accept_az_ml_keys_and_refuse_the_rest():
    assert JobOverrides.from_sets(
        [
            "output_file_name=out.csv",
            "retry_settings.max_retries=2",
            "settings.error_threshold=-1",
            "timeout=9",
        ],
        mini_batch_size=20,
    ).given() == {
        "output_file_name": "out.csv",
        "max_retries": 2,
        "error_threshold": -1,
        "timeout": 9,
        "mini_batch_size": 20,
    }
    with pytest.raises(SpecError, match="cannot be changed per job"):
        JobOverrides.from_sets(["settings.max_concurrency_per_instance=4"])
    with pytest.raises(SpecError, match="Did you mean 'timeout'"):
        JobOverrides.from_sets(["timeuot=3"])


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("SCHEDULED", "Queued"),
        ("PENDING", "Preparing"),
        ("RUNNING", "Running"),
        ("COMPLETED", "Completed"),
        ("FAILED", "Failed"),
        ("CRASHED", "Failed"),
        ("CANCELLING", "CancelRequested"),
        ("CANCELLED", "Canceled"),
        (None, "NotStarted"),
    ],
)
def test_prefect_states_map_to_az_ml_statuses(state, status):
    assert status_of(state) == status


def test_counts_travel_as_flow_run_labels():
    counts = JobCounts(
        mini_batches=4,
        mini_batches_succeeded=3,
        mini_batches_failed=1,
        items=40,
        items_succeeded=35,
        items_failed=5,
    )
    labels = counts.to_labels()
    assert labels["pbe.items_failed"] == 5 and all(k.startswith("pbe.") for k in labels)
    assert JobCounts.from_labels({**labels, "other": "x"}) == counts
    assert JobCounts.from_labels({"prefect.flow.id": "x"}) is None


# --- names -----------------------------------------------------------------------------------


def test_block_document_names_are_lowercase_and_dashes():
    assert endpoint_document_name("MNIST-Batch") == "mnist-batch"
    assert deployment_document_name("MNIST-Batch", "Torch-Dpl") == "mnist-batch--torch-dpl"
    assert compute_document_name("azureml:Batch_Cluster") == "batch-cluster"


# --- the model registry ----------------------------------------------------------------------


def test_registry_versions_copies_and_latest(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    source = tmp_path / "src" / "model"
    source.mkdir(parents=True)
    (source / "model.pt").write_text("v1")
    first = registry.create("m", source)
    (source / "model.pt").write_text("v2")
    second = registry.create("m", source, description="retrained")
    assert (first["version"], second["version"]) == ("1", "2")
    model_dir = registry.model_dir("m", "1")
    assert os.listdir(model_dir) == ["model"]  # AZUREML_MODEL_DIR holds only the model
    assert (tmp_path / "models" / "m" / "1" / "model" / "model.pt").read_text() == "v1"
    assert registry.show("m", label="latest")["version"] == "2"
    assert [m["version"] for m in registry.list_models("m")] == ["2", "1"]
    with pytest.raises(NotFoundError, match="'m:7' not found. Known model versions: m:1, m:2"):
        registry.show("m", "7")
    with pytest.raises(AlreadyExistsError):
        registry.create("m", source, version="2")
    with pytest.raises(SpecError, match="does not exist"):
        registry.create("m", tmp_path / "nope")


def test_concurrent_registrations_get_distinct_versions(tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    (tmp_path / "weights.bin").write_bytes(b"x" * 1000)
    versions: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: versions.append(
                registry.create("m", tmp_path / "weights.bin")["version"]
            )
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions, key=int) == [str(n) for n in range(1, 9)]
    assert registry.versions("m") == [str(n) for n in range(1, 9)]


# --- AZUREML_MODEL_DIR for a model given from Python ----------------------------------------


def test_a_models_folder_is_shared_by_its_jobs_not_made_per_job(tmp_path):
    model = tmp_path / "a" / "model"
    model.mkdir(parents=True)
    (model / "weights.pt").write_bytes(b"w")
    first = model_dir_for(str(model), workdir=str(tmp_path / "tmp"))
    assert model_dir_for(str(model), workdir=str(tmp_path / "tmp")) == first
    assert os.listdir(first) == ["model"]
    assert (Path(first) / "model" / "weights.pt").read_bytes() == b"w"
    other = tmp_path / "b" / "model"
    other.mkdir(parents=True)
    assert model_dir_for(str(other), workdir=str(tmp_path / "tmp")) != first


def test_a_stale_link_in_a_models_folder_is_replaced(tmp_path):
    model = tmp_path / "model.pkl"
    model.write_bytes(b"m")
    holder = Path(model_dir_for(str(model), workdir=str(tmp_path / "tmp")))
    (holder / "model.pkl").unlink()
    (holder / "model.pkl").symlink_to(tmp_path / "elsewhere.pkl")
    assert model_dir_for(str(model), workdir=str(tmp_path / "tmp")) == str(holder)
    assert sorted(os.listdir(holder)) == ["model.pkl"]
    assert (holder / "model.pkl").read_bytes() == b"m"


# --- the embedded server's bookkeeping and the parser ---------------------------------------


def test_a_stale_state_file_is_not_a_running_server(tmp_path):
    embedded = EmbeddedPrefect(tmp_path)
    (tmp_path / "prefect").mkdir()
    dead = {"pid": 2**22 + 12345, "started": 0.0, "url": "http://127.0.0.1:9/api"}
    (tmp_path / "prefect" / "embedded.json").write_text(
        json.dumps({"server": dead, "worker": dead})
    )
    status = embedded.status()
    assert status["running"] is False and status["server_pid"] is None
    assert "the server is not running" in status["problems"]


def _autogroup_nice(pid: int | str) -> int | None:
    """The autogroup nice of ``pid`` ("/autogroup-N nice K"), None where there is none."""
    try:
        text = Path(f"/proc/{pid}/autogroup").read_text()
    except OSError:
        return None  # not Linux, or autogroup scheduling compiled out
    found = re.search(r"\bnice\s+(-?\d+)", text)
    return int(found.group(1)) if found else None  # some kernels/sandboxes read empty


@pytest.fixture
def sleeper():
    started = []

    def start(**popen):
        process = subprocess.Popen(["sleep", "120"], **popen)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_the_server_yields_the_cpu_even_from_a_session_of_its_own(sleeper):
    base = os.getpriority(os.PRIO_PROCESS, 0)
    server = sleeper(start_new_session=True)
    lower_priority(server.pid, 5)
    assert os.getpriority(os.PRIO_PROCESS, server.pid) == min(base + 5, 19)
    if _autogroup_nice(server.pid) is not None:  # its session is scheduled below the job's
        assert _autogroup_nice(server.pid) == 5


def test_lowering_a_process_in_our_session_leaves_the_session_alone(sleeper):
    base, ours = os.getpriority(os.PRIO_PROCESS, 0), _autogroup_nice("self")
    child = sleeper()
    lower_priority(child.pid, 5)
    assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(base + 5, 19)
    assert _autogroup_nice("self") == ours


def test_every_command_takes_query_and_output():
    for group_name in (name for name in pbe_app if not name.startswith("-")):
        group = pbe_app[group_name]
        for verb_name in (name for name in group if not name.startswith("-")):
            verb = group[verb_name]
            with pbe_app.app_stack([pbe_app, group, verb]):
                arguments = verb.assemble_argument_collection()
            options = {name for argument in arguments for name in argument.names}
            assert {"--query", "-o", "--debug", "--workspace"} <= options, (group_name, verb_name)
    _, bound, _ = pbe_app.parse_args(
        [
            "batch-endpoint",
            "invoke",
            "-n",
            "e",
            "--input",
            "x",
            "-g",
            "rg",
            "-w",
            "ws",
            "--query",
            "name",
            "-o",
            "tsv",
        ],
        exit_on_error=False,
        print_error=False,
    )
    assert bound.arguments["options"].query == "name"


def test_the_prefect_collections_entry_point_defines_every_block_type():
    from importlib.metadata import entry_points

    from prefect.blocks.core import Block
    from prefect.utilities.dispatch import get_registry_for_type

    points = [p for p in entry_points(group="prefect.collections") if p.value == "blocks"]
    if not points:
        pytest.skip("the package is not installed (pip install -e .)")
    points[0].load()
    assert {"batch-endpoint", "batch-deployment", "batch-compute", "batch-datastore"} <= set(
        get_registry_for_type(Block)
    )
