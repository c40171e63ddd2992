"""Helpers for tests: real scoring scripts, real input files, real MNIST digits."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import socket
import subprocess
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from blocks.spec import ModelDeploymentSpec
from blocks.spec_loading import parse_deployment

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
