"""The batch-score flow end to end: real Prefect, real Dask LocalCluster, real scripts."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from prefect.testing.utilities import prefect_test_harness
from support import (
    dask_cluster,
    load_mnist,
    make_model,
    make_spec,
    write_inputs,
    write_pngs,
    write_script,
)

from blocks.compute import DaskCompute
from flows.batch_score import batch_score
from flows.planning import plan_mini_batches
from scoring.fork_server import available as fork_server_available

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module", autouse=True)
def prefect_api():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def run_job(spec, input_dir: Path, output: Path, **overrides):
    """Run the flow and return its final state (never raises for a failed job)."""
    return batch_score(
        input=str(input_dir),
        deployment=spec,
        output_path=str(output),
        return_state=True,
        **overrides,
    )


def rows_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


def report_of(output: Path) -> list[dict[str, str]]:
    with open(output / "logs" / "processed_mini-batches.csv") as handle:
        return list(csv.DictReader(handle))


# --- the MNIST digits, compared with a plain loop over the same script -----------------------

TINY_NET = """
import torch


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer_1 = torch.nn.Linear(784, 32)
        self.layer_2 = torch.nn.Linear(32, 10)

    def forward(self, x):
        x = x.reshape(x.shape[0] if x.dim() == 4 else 1, -1) / 255.0
        return torch.log_softmax(self.layer_2(torch.relu(self.layer_1(x))), dim=1)
"""

MNIST_SCRIPT = """
import glob
import os

import pandas as pd
import torch
from torchvision.io import read_image

from tiny_net import TinyNet


def init():
    global model
    torch.set_num_threads(1)
    model_path = glob.glob(os.environ["AZUREML_MODEL_DIR"] + "/*/*.pt")[0]
    model = TinyNet()
    model.load_state_dict(torch.load(model_path, weights_only=True))
    model.eval()


def run(mini_batch):
    results = []
    with torch.no_grad():
        for image_path in mini_batch:
            data = read_image(image_path).float()
            probs = torch.exp(model(data))
            predicted = int(torch.argmax(probs, dim=1)[0])
            results.append([os.path.basename(image_path), predicted, float(probs[0, predicted])])
    return pd.DataFrame(results, columns=["file", "class", "probability"])
"""


@pytest.fixture(scope="module")
def mnist_deployment(tmp_path_factory):
    """A tiny torch classifier trained here on real digits, with a seed-style script."""
    import torch

    root = tmp_path_factory.mktemp("mnist")
    code = write_script(root / "code", TINY_NET, name="tiny_net.py")
    write_script(code, MNIST_SCRIPT, name="batch_driver.py")
    sys.path.insert(0, str(code))
    try:
        from tiny_net import TinyNet
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("tiny_net", None)
    torch.manual_seed(0)
    images, labels = load_mnist(2000, start=2000)
    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 28, 28)
    y = torch.tensor(labels, dtype=torch.long)
    model = TinyNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(3):
        for start in range(0, len(x), 100):
            optimiser.zero_grad()
            loss = torch.nn.functional.nll_loss(
                model(x[start : start + 100]), y[start : start + 100]
            )
            loss.backward()
            optimiser.step()
    (root / "registered" / "model").mkdir(parents=True)
    torch.save(model.state_dict(), root / "registered" / "model" / "model.pt")
    digits, digit_labels = load_mnist(60)
    inputs = root / "digits"
    write_pngs(inputs, digits)
    return root, code, inputs, digit_labels


def plain_loop(code: Path, model_dir: Path, files: list[str], mini_batch_size: int) -> bytes:
    """The same script called in a plain loop over the same mini-batches, in this process."""
    os.environ["AZUREML_MODEL_DIR"] = str(model_dir)
    sys.path.insert(0, str(code))
    try:
        spec = importlib.util.spec_from_file_location("plain_driver", code / "batch_driver.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.init()
        chunks = [
            module.run(list(mb.files)).to_csv(header=None, index=None, sep=" ")
            for mb in plan_mini_batches(files, mini_batch_size)
        ]
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("tiny_net", None)
        del os.environ["AZUREML_MODEL_DIR"]
    return "".join(chunks).encode()


def test_mnist_digits_match_a_plain_loop_row_for_row(mnist_deployment, tmp_path):
    root, code, inputs, labels = mnist_deployment
    spec = make_spec(
        code,
        root / "registered" / "model",
        script="batch_driver.py",
        mini_batch_size=10,
        max_concurrency_per_instance=2,
    )
    state = run_job(spec, inputs, tmp_path / "out")
    assert state.is_completed(), state.message
    result = state.result()
    assert (result.items, result.items_succeeded, result.mini_batches) == (60, 60, 6)
    merged = (tmp_path / "out" / "predictions.csv").read_bytes()
    files = sorted(str(p) for p in inputs.iterdir())
    assert merged == plain_loop(code, root / "registered", files, 10)
    predicted = [int(line.split(" ")[1]) for line in merged.decode().splitlines()]
    assert sum(p == t for p, t in zip(predicted, labels, strict=True)) >= 48  # a real classifier
    assert "60 items: 60 succeeded, 0 failed" in state.message


# --- retries, crashes and hangs --------------------------------------------------------------

ONCE = """
import ctypes, os, signal, time
import pandas as pd

MARKERS = {markers!r}


def init():
    pass


def run(mini_batch):
    with open(os.path.join(MARKERS, "calls.log"), "a") as log:
        log.write(" ".join(os.path.basename(p) for p in mini_batch) + "\\n")
    if any("{trigger}" in p for p in mini_batch):
        marker = os.path.join(MARKERS, "done")
        if {every_attempt} or not os.path.exists(marker):
            open(marker, "w").close()
            {action}
    return pd.DataFrame({{"file": [os.path.basename(p) for p in mini_batch], "pid": os.getpid()}})
"""

ACTIONS = {
    "raise": "raise RuntimeError('transient failure on first attempt')",
    "sigkill": "os.kill(os.getpid(), signal.SIGKILL)",
    "python-hang": "time.sleep(3600)",
    "native-hang": "ctypes.CDLL(None).sleep(3600)",
}


def once_script(tmp_path: Path, action: str, *, trigger: str = "item0003", every_attempt=False):
    markers = tmp_path / "markers"
    markers.mkdir()
    body = ONCE.format(
        markers=str(markers), trigger=trigger, action=ACTIONS[action], every_attempt=every_attempt
    )
    return write_script(tmp_path / "code", body), markers


@pytest.mark.parametrize("action", ["raise", "sigkill", "python-hang", "native-hang"])
def test_a_failed_first_attempt_is_retried_and_rows_appear_once(tmp_path, action):
    code, markers = once_script(tmp_path, action)
    write_inputs(tmp_path / "in", 12)
    spec = make_spec(
        code,
        make_model(tmp_path / "m"),
        mini_batch_size=2,
        timeout=3,
        max_concurrency_per_instance=2,
    )
    started = time.monotonic()
    state = run_job(spec, tmp_path / "in", tmp_path / "out")
    assert time.monotonic() - started < 120
    assert state.is_completed(), state.message
    files = [line.split(" ")[0] for line in rows_of(tmp_path / "out" / "predictions.csv")]
    assert files == [f"item{n:04d}.txt" for n in range(12)]  # every file once, in order
    report = {row["mini_batch_id"]: row for row in report_of(tmp_path / "out")}
    assert report["1"]["attempts"] == "2"
    assert report["0"]["attempts"] == "1"
    errors = (tmp_path / "out" / "logs" / "errors.txt").read_text()
    assert "mini-batch 1, attempt 1" in errors
    assert "item0003.txt" in errors
    if action == "raise":
        assert "RuntimeError: transient failure on first attempt" in errors
    if action == "sigkill":
        assert "SIGKILL" in errors
    if action.endswith("hang"):
        assert "(timeout)" in errors


def test_a_mini_batch_that_times_out_on_every_attempt_fails_the_job(tmp_path):
    code, markers = once_script(tmp_path, "native-hang", every_attempt=True)
    write_inputs(tmp_path / "in", 6)
    spec = make_spec(code, make_model(tmp_path / "m"), mini_batch_size=2, timeout=2, max_retries=2)
    started = time.monotonic()
    state = run_job(spec, tmp_path / "in", tmp_path / "out")
    assert time.monotonic() - started < 120
    assert state.is_failed()
    assert "Mini-batch(es) 1 timed out on every attempt" in state.message
    assert not (tmp_path / "out" / "predictions.csv").exists()
    calls = (markers / "calls.log").read_text().splitlines()
    assert calls.count("item0002.txt item0003.txt") == 2


# --- error threshold, counting and return values --------------------------------------------


def test_error_threshold_stops_the_job_and_skips_the_rest(tmp_path):
    calls = tmp_path / "calls.log"
    body = f"""
        import time
        def init(): pass
        def run(mini_batch):
            open({str(calls)!r}, "a").write(mini_batch[0] + "\\n")
            time.sleep(0.5)  # long enough for the flow to see the failures as they arrive
            raise ValueError("every item is bad")
    """
    code = write_script(tmp_path / "code", body)
    write_inputs(tmp_path / "in", 30)
    spec = make_spec(
        code, make_model(tmp_path / "m"), mini_batch_size=1, max_retries=1, error_threshold=2
    )
    state = run_job(spec, tmp_path / "in", tmp_path / "out")
    assert state.is_failed()
    called = sorted(int(line[-8:-4]) for line in calls.read_text().splitlines())
    assert 3 <= len(called) < 10
    assert (
        f"The number of failed items is {len(called)}, which exceeds error threshold 2."
        in state.message
    )
    assert not (tmp_path / "out" / "predictions.csv").exists()
    report = report_of(tmp_path / "out")
    # every mini-batch whose run() was called is reported failed, even one still running
    # when the threshold was crossed; none of the others ran
    assert sorted(int(r["mini_batch_id"]) for r in report if r["status"] == "failed") == called
    assert [r["status"] for r in report].count("canceled") == 30 - len(called)


def test_wrong_return_type_and_short_results_count_as_failed_items(tmp_path):
    body = """
        import os
        def init(): pass
        def run(mini_batch):
            names = [os.path.basename(p) for p in mini_batch]
            if "item0000.txt" in names:
                return {"not": "a list"}
            return tuple(names[:-1])
    """
    code = write_script(tmp_path / "code", body)
    write_inputs(tmp_path / "in", 9)
    spec = make_spec(code, make_model(tmp_path / "m"), mini_batch_size=3, max_retries=2)
    state = run_job(spec, tmp_path / "in", tmp_path / "out")
    assert state.is_completed(), state.message
    result = state.result()
    assert (result.items_succeeded, result.items_failed, result.mini_batches_failed) == (4, 5, 1)
    assert rows_of(tmp_path / "out" / "predictions.csv") == [
        "item0003.txt",
        "item0004.txt",
        "item0006.txt",
        "item0007.txt",
    ]
    report = report_of(tmp_path / "out")
    assert report[0]["status"] == "failed"
    assert report[0]["error_category"] == "bad_return"
    assert "builtins.dict" in report[0]["error_message"]
    assert (report[1]["succeeded"], report[1]["failed"]) == ("2", "1")


def test_no_succeeded_item_fails_an_append_row_job(tmp_path):
    code = write_script(tmp_path / "code", "def init(): pass\ndef run(mb): return []\n")
    write_inputs(tmp_path / "in", 4)
    state = run_job(make_spec(code, make_model(tmp_path / "m")), tmp_path / "in", tmp_path / "out")
    assert state.is_failed()
    assert "No item succeeded" in state.message


def test_summary_only_merges_nothing(tmp_path):
    body = """
        import os
        def init(): pass
        def run(mini_batch):
            out = os.environ["AZUREML_BI_OUTPUT_PATH"]
            for path in mini_batch:
                open(os.path.join(out, os.path.basename(path) + ".done"), "w").close()
            return mini_batch
    """
    code = write_script(tmp_path / "code", body)
    write_inputs(tmp_path / "in", 5)
    spec = make_spec(code, make_model(tmp_path / "m"), output_action="summary_only")
    state = run_job(spec, tmp_path / "in", tmp_path / "out")
    assert state.is_completed(), state.message
    assert state.result().output_file is None
    assert not (tmp_path / "out" / "predictions.csv").exists()
    assert len(list((tmp_path / "out").glob("*.done"))) == 5


@pytest.mark.skipif(not fork_server_available(), reason="no fork server on this platform")
def test_on_a_local_cluster_scoring_processes_are_forked_by_the_jobs_fork_server(
    tmp_path, monkeypatch
):
    """The job's fork server is their parent and is gone after the job; switched off, the
    workers spawn them. Either way they see the same environment."""
    body = """
        import json, os
        def init(): pass
        def run(mini_batch):
            parent = open(f"/proc/{os.getppid()}/cmdline").read()
            out = os.environ["AZUREML_BI_OUTPUT_PATH"]
            with open(os.path.join(out, f"env-{os.getpid()}.json"), "w") as file:
                json.dump(dict(os.environ), file)
            return [f"{os.getppid()} {'scoring.fork_server' in parent}"] * len(mini_batch)
    """
    code = write_script(tmp_path / "code", body)
    write_inputs(tmp_path / "in", 4)
    spec = make_spec(
        code, make_model(tmp_path / "m"), mini_batch_size=1, max_concurrency_per_instance=2
    )
    parents, environments = {}, {}
    for setting in ("1", "0"):
        monkeypatch.setenv("PBE_FORK_SERVER", setting)
        output = tmp_path / f"out-{setting}"
        state = run_job(spec, tmp_path / "in", output)
        assert state.is_completed(), state.message
        parents[setting] = {tuple(row.split()) for row in rows_of(output / "predictions.csv")}
        environments[setting] = [json.loads(f.read_text()) for f in output.glob("env-*.json")]
    [(server_pid, forked)] = parents["1"]  # both processes forked by one server
    assert forked == "True"
    assert not Path(f"/proc/{server_pid}").exists()  # stopped with the job
    assert len(parents["0"]) == 2 and {row[1] for row in parents["0"]} == {"False"}
    # Not compared: the job's own output folder and Dask's internal parent pid; and what
    # this test process changes after its local workers' fork server (which spawned workers
    # copy their environment from) started: pytest's and prefect.testing's variables, ours.
    ignored = {
        "AZUREML_BI_OUTPUT_PATH",
        "__DASK_PARENT_PID",
        "PYTEST_CURRENT_TEST",
        "COLUMNS",
        "LINES",
        "PBE_FORK_SERVER",
    }
    seen = [
        {k: v for k, v in env.items() if k not in ignored}
        for env in environments["1"] + environments["0"]
    ]
    assert len(seen) == 4 and all(env == seen[0] for env in seen)


def test_an_existing_output_file_is_refused_before_scoring(tmp_path):
    marker = tmp_path / "scored"
    code = write_script(
        tmp_path / "code", f"def init(): open({str(marker)!r}, 'w')\ndef run(mb): return mb\n"
    )
    write_inputs(tmp_path / "in", 3)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "answers.csv").write_text("keep me\n")
    spec = make_spec(code, make_model(tmp_path / "m"))
    state = run_job(spec, tmp_path / "in", tmp_path / "out", output_file_name="answers.csv")
    assert state.is_failed()
    assert "answers.csv' already exists" in state.message
    assert (tmp_path / "out" / "answers.csv").read_text() == "keep me\n"
    assert not marker.exists()


# --- an existing Dask cluster ----------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_scheduler(tmp_path_factory):
    """A real `dask scheduler` and one single-threaded `dask worker`, on loopback."""
    with dask_cluster(tmp_path_factory.mktemp("dask")) as address:
        yield address


def test_two_deployments_with_one_script_name_share_an_existing_cluster(dask_scheduler, tmp_path):
    compute = DaskCompute(type="address", address=dask_scheduler)
    write_inputs(tmp_path / "in", 4)
    pids = {}
    for label in ("first", "second", "first"):
        body = f"""
            import os
            def init(): pass
            def run(mini_batch):
                return [f"{label} {{os.path.basename(p)}} {{os.getppid()}}" for p in mini_batch]
        """
        code = write_script(tmp_path / f"code-{label}", body, name="batch_driver.py")
        spec = make_spec(
            code, make_model(tmp_path / "m"), name=f"dpl-{label}", script="batch_driver.py"
        )
        output = tmp_path / f"out-{label}-{len(pids)}"
        state = batch_score(
            input=str(tmp_path / "in"),
            deployment=spec,
            output_path=str(output),
            compute=compute,
            return_state=True,
        )
        assert state.is_completed(), state.message
        rows = rows_of(output / "predictions.csv")
        assert [row.split(" ")[:2] for row in rows] == [
            [label, f"item{n:04d}.txt"] for n in range(4)
        ]
        pids[len(pids)] = {row.split(" ")[2] for row in rows}
    # Every scoring process was started by the one worker the test started.
    assert len(set().union(*pids.values())) == 1


def test_the_flow_reads_its_deployment_spec_from_yaml(tmp_path):
    code = write_script(
        tmp_path / "code", "def init(): pass\ndef run(mb): return [len(mb)] * len(mb)\n"
    )
    make_model(tmp_path)
    (tmp_path / "deployment.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json\n"
        "name: yaml-dpl\nendpoint_name: yaml-ep\ntype: model\n"
        "model: {name: m, path: model}\n"
        "code_configuration: {code: code, scoring_script: score.py}\n"
        "compute: azureml:cpu\n"
        "settings: {mini_batch_size: 3, output_file_name: out.csv}\n"
    )
    from blocks.spec_loading import load_deployment_yaml

    spec = load_deployment_yaml(tmp_path / "deployment.yml")
    write_inputs(tmp_path / "in", 7)
    state = run_job(spec, tmp_path / "in", tmp_path / "out", mini_batch_size=5)
    assert state.is_completed(), state.message
    assert rows_of(tmp_path / "out" / "out.csv") == ["5"] * 5 + ["2"] * 2
    assert code.exists()
    assert pd.read_csv(tmp_path / "out" / "logs" / "processed_mini-batches.csv").shape[0] == 2


def _run_log_messages(flow_run_id, expected: list[str], wait: float = 30.0) -> list[str]:
    """The flow run's log messages (its tasks' included) once ``expected`` have all arrived."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + wait
    while True:  # workers send their logs in batches
        with get_client(sync_client=True) as client:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        messages = [log.message for log in logs]
        if all(any(e in m for m in messages) for e in expected) or time.monotonic() > deadline:
            return messages
        time.sleep(0.5)


def test_what_init_and_run_log_reaches_the_prefect_run(tmp_path):
    code = write_script(
        tmp_path / "code",
        "import logging\n"
        "def init():\n    logging.getLogger('score').info('init: model ready')\n"
        "def run(mb):\n    logging.info('scoring %d files', len(mb))\n    return mb\n",
    )
    write_inputs(tmp_path / "in", 4)
    spec = make_spec(code, make_model(tmp_path / "m"), mini_batch_size=2)
    state = run_job(spec, tmp_path / "in", tmp_path / "out")
    assert state.is_completed()
    messages = _run_log_messages(
        state.state_details.flow_run_id, ["init: model ready", "scoring 2 files"]
    )
    assert sum("init: model ready" in m for m in messages) == 1  # one process, one init()
    assert sum("scoring 2 files" in m for m in messages) == 2


def test_a_missing_module_at_init_says_what_to_install(tmp_path):
    code = write_script(
        tmp_path / "code", "import sklearn_is_not_here\ndef init(): pass\ndef run(mb): return mb\n"
    )
    write_inputs(tmp_path / "in", 2)
    spec = make_spec(code, make_model(tmp_path / "m"), max_retries=1)
    state = run_job(spec, tmp_path / "in", tmp_path / "out")
    assert state.is_failed()
    errors = (tmp_path / "out" / "logs" / "errors.txt").read_text()
    assert "(init_error)" in errors
    assert "ModuleNotFoundError: No module named 'sklearn_is_not_here'" in errors
    assert "pip install sklearn-is-not-here" in errors
