"""Helpers for tests: real scoring scripts, real input files, real MNIST digits."""

from __future__ import annotations

import contextlib
import csv
import functools
import importlib.util
import io
import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from blocks.spec import ModelDeploymentSpec
from blocks.spec_loading import parse_deployment
from flows.script_output import file_name
from flows.storage import Location

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "mnist"


def process_ended(pid: int, within: float = 10.0) -> bool:
    """Whether process ``pid`` has ended (gone, or a zombie) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def free_port() -> int:
    """A TCP port on loopback that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answering(url: str, process: subprocess.Popen, timeout: float) -> bool:
    """Whether the server ``process`` answers ``url`` (with any HTTP status) within
    ``timeout`` seconds; False as soon as the process has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:  # an answer (403 without credentials): it is up
            return True
        except OSError:
            time.sleep(0.1)
    return False


def write_script(folder: Path, body: str, name: str = "score.py") -> Path:
    """Write a scoring script (dedented) into ``folder`` and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(body))
    return folder


def write_inputs(folder: Path, count: int, *, prefix: str = "item") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        path = folder / f"{prefix}{number:04d}.txt"
        path.write_text(f"{number}\n")
        paths.append(path)
    return paths


def make_model(folder: Path) -> Path:
    """A registered-model folder with one file in it."""
    (folder / "model").mkdir(parents=True, exist_ok=True)
    (folder / "model" / "weights.txt").write_text("42\n")
    return folder / "model"


def make_spec(
    code: Path,
    model: Path,
    *,
    name: str = "test-dpl",
    script: str = "score.py",
    **settings: Any,
) -> ModelDeploymentSpec:
    """A ``type: model`` deployment spec for a script in ``code``."""
    retry = {k: settings.pop(k) for k in ("max_retries", "timeout") if k in settings}
    if retry:
        settings["retry_settings"] = retry
    settings.setdefault("max_concurrency_per_instance", 1)
    return parse_deployment(
        {
            "name": name,
            "endpoint_name": "test-endpoint",
            "type": "model",
            "model": {"name": "test-model", "path": str(model)},
            "code_configuration": {"code": str(code), "scoring_script": script},
            "compute": "azureml:cpu-cluster",
            "settings": settings,
        },
        source=f"{name}.yml",
    )


@functools.cache
def mnist_data() -> ModuleType:
    """The example's ``data.py`` (the MNIST loader that checks the bundled files' sums)."""
    spec = importlib.util.spec_from_file_location("mnist_example_data", EXAMPLE / "data.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _mnist_test_set() -> tuple[np.ndarray, np.ndarray]:
    images, labels, _ = mnist_data().load_mnist()  # $MNIST_DIR, else examples/mnist/data
    return images, labels


def load_mnist(count: int, *, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` real MNIST test digits (uint8 28×28) and their labels."""
    images, labels = _mnist_test_set()
    return images[start : start + count], labels[start : start + count]


def write_pngs(folder: Path, images: np.ndarray) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, image in enumerate(images):
        path = folder / f"{number:05d}.png"
        Image.fromarray(image, mode="L").save(path)
        paths.append(path)
    return paths


@contextlib.contextmanager
def dask_cluster(logs: Path, *, workers: int = 1, threads: int = 1) -> Iterator[str]:
    """A real ``dask scheduler`` and ``dask worker`` processes on loopback; yields the address.

    The workers import this repository's code (``PYTHONPATH``), not an installed copy.
    """
    import os
    import subprocess
    import sys

    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    dask = str(bin_dir / "dask") if (bin_dir / "dask").exists() else "dask"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    processes = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=open(logs / "scheduler.log", "w"),
            stderr=subprocess.STDOUT,
            env=env,
        )
    ]
    processes.append(
        subprocess.Popen(
            [
                dask,
                "worker",
                address,
                "--nthreads",
                str(threads),
                "--nworkers",
                str(workers),
                "--no-dashboard",
                "--host",
                "127.0.0.1",
            ],
            stdout=open(logs / "worker.log", "w"),
            stderr=subprocess.STDOUT,
            env=env,
        )
    )
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=60)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=30)


# --- a job over remote storage: a script that writes sizes, one that writes files ---------

SIZES_SCRIPT = """
import os

import pandas as pd


def init():
    pass


def run(mini_batch):
    rows = [[os.path.basename(path), os.path.getsize(path)] for path in mini_batch]
    return pd.DataFrame(rows, columns=["file", "size"])
"""

SUMMARY_SCRIPT = """
import os


def init():
    pass


def run(mini_batch):
    folder = os.environ["AZUREML_BI_OUTPUT_PATH"]
    for path in mini_batch:
        with open(os.path.join(folder, "seen-" + os.path.basename(path) + ".txt"), "w") as out:
            out.write(str(os.path.getsize(path)))
    return [os.path.basename(path) for path in mini_batch]
"""

STORAGE_INPUT = {f"in/f{n}.bin": b"x" * (n + 1) for n in range(5)} | {"empty/": b""}
STORAGE_ROWS = [f"f{n}.bin {n + 1}" for n in range(5)]


# --- a job whose script writes to stdout, stderr and logging: its user logs ----------------

USER_LOGS_SCRIPT = """
import logging
import os
import sys

FAIL_ON = None
log = logging.getLogger("userlogs")


def init():
    print(f"init pid {os.getpid()}")
    print(f"init to stderr {os.getpid()}", file=sys.stderr)
    log.warning("init record %d", os.getpid())
    if FAIL_ON == "init":
        raise RuntimeError("cannot load the model")


def run(mini_batch):
    names = [os.path.basename(path) for path in mini_batch]
    for name, path in zip(names, mini_batch):
        print(f"run {name}")
        print(f"input {name} at {path}")
        print(f"run to stderr {name}", file=sys.stderr)
        log.error("run record %s", name)
    for name in names:  # the script's own output files (AZUREML_BI_OUTPUT_PATH)
        with open(os.path.join(os.environ["AZUREML_BI_OUTPUT_PATH"], f"seen-{name}"), "w") as f:
            f.write(name)
    if FAIL_ON in names:
        raise ValueError(f"cannot score {FAIL_ON}")
    return names


def shutdown():
    print(f"shutdown pid {os.getpid()}")
"""


def user_logs_script(fail_on: str | None = None) -> str:
    """:data:`USER_LOGS_SCRIPT`, whose ``run()`` raises for the file named ``fail_on``
    (``"init"``: whose ``init()`` raises, after its lines)."""
    return USER_LOGS_SCRIPT.replace("FAIL_ON = None", f"FAIL_ON = {fail_on!r}")


@contextlib.contextmanager
def private_tempdir() -> Iterator[Path]:
    """A fresh temporary folder for this process (``tempfile``) and for the Dask workers and
    fork servers its jobs start (``TMPDIR`` in ``distributed.nanny.environ``); removed after.

    ``multiprocessing`` keeps the folder it makes on first use (the socket of the fork
    server local workers are forked from) for the life of the process: it is made first,
    in the usual place, so that removing this folder cannot break later clusters.
    """
    import multiprocessing.util

    import dask

    multiprocessing.util.get_temp_dir()
    folder = Path(tempfile.mkdtemp(prefix="pbe-test-tmp-"))  # short: sockets live in it
    environ = {**(dask.config.get("distributed.nanny.environ", {}) or {}), "TMPDIR": str(folder)}
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tempfile, "tempdir", str(folder))
            with dask.config.set({"distributed.nanny.environ": environ}):
                yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def left_behind(folder: Path) -> list[str]:
    """What a job left in the temporary folder ``folder``: its ``pbe-`` files and folders,
    but ``pbe-models`` (the model links every job of a model shares, by design)."""
    return sorted(
        path.name
        for path in folder.iterdir()
        if path.name.lstrip(".").startswith("pbe-") and path.name != "pbe-models"
    )


def read_user_logs(logs: Location) -> dict[str, dict[str, list[str]]]:
    """``{stream: {file name: lines}}`` of ``<logs>/user``, read back from its store."""
    user = logs.join("user")
    return {
        stream: {
            name: user.join(stream, name).read_bytes().decode().splitlines()
            for name in user.join(stream).list_names()
        }
        for stream in ("stdout", "stderr")
    }


def assert_user_logs_whole(
    logs: Location, *, every_mini_batch: bool, tmp: Path
) -> tuple[list[dict[str, str]], dict[str, dict[str, list[str]]]]:
    """Check the user logs of a job of :data:`USER_LOGS_SCRIPT` (one file per mini-batch,
    ``f<n>.bin`` in mini-batch ``n``) against its report; return the report and the logs.

    One stdout and one stderr file per scoring process, named ``<host>-<pid>``; each holds
    its process's ``init()`` lines once, the lines of every mini-batch the report says it
    ran, and, last, what ``shutdown()`` printed; stdout holds no stderr line.
    ``every_mini_batch``: the job ran each mini-batch once (no cancelled one), so each
    ``run`` line is in the files exactly once. ``tmp``: the job's :func:`private_tempdir`,
    where its workers downloaded the input.
    """
    report = list(
        csv.DictReader(io.StringIO(logs.join("processed_mini-batches.csv").read_bytes().decode()))
    )
    user = read_user_logs(logs)
    stdout, stderr = user["stdout"], user["stderr"]
    assert stdout, "no user logs were uploaded"
    assert sorted(stdout) == sorted(stderr)  # a stdout and a stderr file per process
    host = socket.gethostname()
    for name, lines in stdout.items():
        named_host, pid = name.removesuffix(".txt").rsplit("-", 1)
        assert named_host == host and lines[0] == f"init pid {pid}", (name, lines)
        assert [line for line in lines if line.startswith("init")] == [lines[0]]  # init once
        assert not [line for line in lines if "stderr" in line or "record" in line], lines
        assert f"init to stderr {pid}" in stderr[name]
        assert f"WARNING userlogs: init record {pid}" in stderr[name]
    ran = [row for row in report if row["process"] and row["error_category"] != "init_error"]
    if every_mini_batch:
        assert len(ran) == len(report)
    for row in ran:
        name, number = file_name(row["process"]), row["mini_batch_id"]
        assert name in stdout, (row, sorted(stdout))
        pid = row["process"].rsplit(":", 1)[1]
        assert stdout[name][-1] == f"shutdown pid {pid}"  # uploaded after shutdown()
        assert f"run f{number}.bin" in stdout[name]
        assert f"run to stderr f{number}.bin" in stderr[name]
        assert f"ERROR userlogs: run record f{number}.bin" in stderr[name]
    downloads = [line for lines in stdout.values() for line in lines if line.startswith("input")]
    assert (downloads or not ran) and all(
        line.split(" at ")[1].startswith(os.path.join(tmp, "pbe-minibatch-")) for line in downloads
    ), downloads  # the workers' temporary folder is this process's (private_tempdir)
    runs = sorted(line for lines in stdout.values() for line in lines if line.startswith("run "))
    assert len(runs) == len(set(runs))  # no mini-batch ran twice
    if every_mini_batch:
        assert runs == [f"run f{row['mini_batch_id']}.bin" for row in report]
    return report, user


def check_remote_user_logs(
    *,
    fail_on: str | None,
    input: str,
    output: str,
    logs: str,
    deployment: ModelDeploymentSpec,
    names: Callable[[str], list[str]],
) -> None:
    """Run :data:`USER_LOGS_SCRIPT` (failing as ``fail_on`` says) from ``input`` to the remote
    ``output``, then check what reached it: ``logs`` is the output's logs folder as a
    datastore URI, ``names(prefix)`` lists the store's names under ``out/<job>/<prefix>``.

    The user logs whole, one pair per process, for completed and failed jobs; what the
    script wrote into ``AZUREML_BI_OUTPUT_PATH`` kept, failed or not; no local copy left.
    """
    from blocks.datastore import SavedDatastores
    from flows.batch_score import batch_score

    with private_tempdir() as tmp:
        state = batch_score(
            input=input,
            output_path=output,
            deployment=deployment,
            job_name=output.rstrip("/").rsplit("/", 1)[1],
            max_retries=1,
            error_threshold=0,
            return_state=True,
        )
        assert left_behind(tmp) == []  # the output folder, the logs' copies, the downloads
    report, user = assert_user_logs_whole(
        Location(*SavedDatastores().resolve(logs)), every_mini_batch=not fail_on, tmp=tmp
    )
    seen = [name.rsplit("/", 1)[1] for name in names("seen-")]
    if fail_on:
        assert state.is_failed() and "exceeds error threshold 0" in (state.message or "")
        if fail_on == "init":  # every process said what it did before init() raised
            failed = [row for row in report if row["status"] == "failed"]
            assert failed and {row["error_category"] for row in failed} == {"init_error"}
            assert all(file_name(row["process"]) in user["stdout"] for row in failed)
            assert not [line for lines in user["stdout"].values() for line in lines[1:]]
        else:
            assert report[2]["status"] == "failed" and report[2]["process"]
            # what the script wrote into AZUREML_BI_OUTPUT_PATH is kept, as on a local output
            assert "seen-f2.bin" in seen
        return
    assert state.is_completed(), state.message
    ours = [name.split("/", 2)[2] for name in names("") if "/logs/user/" not in name]
    assert [name for name in ours if not name.startswith("seen-")] == [
        "logs/errors.txt",
        "logs/job.json",
        "logs/processed_mini-batches.csv",
        "predictions.csv",
    ]
    assert len(user["stdout"]) == len(names("logs/user/stdout/"))
    assert len(seen) == 5
