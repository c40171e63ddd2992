"""A job's fork server: what it preloads, what its forked processes inherit, how they end.

The scoring contract itself is checked for forked processes in test_scoring_process.py.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, make_model, process_ended, write_script

from scoring.fork_server import ForkServer, available, preload_candidates
from scoring.process import ScoringFailure, ScoringProcess
from scoring.spec import ScoringProcessSpec

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not available(), reason="no fork server on this platform"),
]


def spec_for(tmp_path: Path, code: Path, **overrides) -> ScoringProcessSpec:
    values = dict(
        code_dir=str(code),
        scoring_script="score.py",
        model_dir=str(make_model(tmp_path / "registered").parent),
        output_dir=str(tmp_path / "out"),
        job="job-1",
    )
    return ScoringProcessSpec(**{**values, **overrides})


@pytest.fixture
def servers():
    started: list[ForkServer] = []

    def start(spec: ScoringProcessSpec, environment: dict[str, str] | None = None) -> ForkServer:
        server = ForkServer(spec, environment or spec.environment())
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def queued_request(tmp_path: Path, servers, start_seconds: int):
    """A request launched while the server still starts (a ``sitecustomize`` that sleeps
    ``start_seconds``), so it waits in the socket's queue; the spec, server and process."""
    slow = tmp_path / "slow-start"
    write_script(slow, f"import time\ntime.sleep({start_seconds})\n", name="sitecustomize.py")
    spec = spec_for(tmp_path, write_script(tmp_path / "code", PROBE))
    server = servers(spec, {**spec.environment(), "PYTHONPATH": str(slow)})
    process = ScoringProcess(spec, server.address)
    process.launch()
    return spec, server, process


def probe(process: ScoringProcess) -> list[str]:
    """Run PROBE's one-row mini-batch in ``process``, then kill it; the row's fields."""
    try:
        return process.run(["x"], timeout=30, want_rows=True).rows.decode().split()
    finally:
        process.kill()


def test_only_fork_safe_libraries_the_script_imports_are_preloaded(tmp_path):
    script = tmp_path / "score.py"
    script.write_text(
        "import os, json\n"
        "import numpy as np\n"
        "from PIL import Image, ImageOps\n"
        "from torchvision.io import read_image\n"
        "import tensorflow as tf\n"
        "from . import sibling\n"
        "from helpers import model\n"
        "try:\n    import torch.nn as nn\nexcept ImportError:\n    nn = None\n"
        "def init():\n    import pandas\n"
    )
    assert preload_candidates(script) == [
        "numpy",
        "PIL",
        "PIL.Image",
        "PIL.ImageOps",
        "torchvision.io",
        "torchvision.io.read_image",
        "torch.nn",
    ]  # not TensorFlow (not fork-safe), local modules, or what init() imports
    script.write_text("import numpy\ndef init(:\n")
    assert preload_candidates(script) == []  # the scoring process reports the syntax error


PROBE = """
    import os, sys
    PRELOADED = "numpy" in sys.modules
    import numpy as np

    def init():
        global draw
        draw = int(np.random.randint(0, 2**31))

    def run(mini_batch):
        return [f"{os.getpid()} {os.getppid()} {os.getpgid(0)} {PRELOADED} {draw}"]
"""


def test_forked_processes_are_the_servers_children_with_their_own_random_state(tmp_path, servers):
    spec = spec_for(tmp_path, write_script(tmp_path / "code", PROBE))
    server = servers(spec)
    processes = [ScoringProcess(spec, server.address) for _ in range(2)]
    try:
        for process in processes:
            process.launch()
        rows = []
        for process in processes:
            process.wait_ready()
            rows.append(process.run(["x"], timeout=30, want_rows=True).rows.decode().split())
    finally:
        for process in processes:
            process.kill()
    for (pid, parent, group, preloaded, _), process in zip(rows, processes, strict=True):
        assert (int(pid), int(parent), int(group)) == (process.pid, server.pid, process.pid)
        assert preloaded == "True"
    assert rows[0][4] != rows[1][4]  # numpy re-seeded after the fork, as in a fresh process


WORKER = """
import sys, time
sys.path.insert(0, {repo!r})
from scoring.process import ScoringProcess
from scoring.spec import ScoringProcessSpec
process = ScoringProcess(ScoringProcessSpec(**{spec!r}), {address!r})
process.start()
print(process.pid, flush=True)
time.sleep(600)
"""


def test_the_scoring_process_of_a_worker_that_dies_is_killed(tmp_path, servers):
    body = "import time\ndef init(): pass\ndef run(mb):\n    time.sleep(600)\n"
    spec = spec_for(tmp_path, write_script(tmp_path / "code", body))
    server = servers(spec)
    fields = {name: getattr(spec, name) for name in spec.__dataclass_fields__}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER.format(repo=str(REPO), spec=fields, address=server.address)],
        stdout=subprocess.PIPE,
    )
    try:
        scoring_pid = int(worker.stdout.readline())
        assert not process_ended(scoring_pid, within=0.5)
    finally:
        worker.kill()
        worker.wait()
    assert process_ended(scoring_pid)


def test_stopping_the_server_ends_its_processes(tmp_path, servers):
    spec = spec_for(tmp_path, write_script(tmp_path / "code", PROBE))
    server = servers(spec)
    process = ScoringProcess(spec, server.address)
    process.start()
    server.stop()
    assert process_ended(process.pid)
    with pytest.raises(ScoringFailure) as info:
        process.run(["x"], timeout=30, want_rows=True)
    assert info.value.category == "process_died"
    assert not os.path.exists(server.address)


def test_without_its_server_a_process_is_spawned(tmp_path, servers, caplog):
    spec = spec_for(tmp_path, write_script(tmp_path / "code", PROBE))
    server = servers(spec)
    server.stop()
    process = ScoringProcess(spec, server.address)
    with caplog.at_level(logging.WARNING, logger="scoring.process"):
        process.start()
    _, parent, *_ = probe(process)
    assert int(parent) == os.getpid()
    assert f"fork server {server.address} unavailable" in caplog.text


def test_a_server_that_ends_before_forking_leaves_the_worker_to_spawn(tmp_path, servers, caplog):
    """A request waits in the socket's queue while the server imports; if the server ends
    first, the request is not lost: the worker spawns the process itself."""
    _, server, process = queued_request(tmp_path, servers, start_seconds=60)
    os.kill(server.pid, signal.SIGKILL)
    with caplog.at_level(logging.WARNING, logger="scoring.process"):
        process.wait_ready()
    _, parent, *_ = probe(process)
    assert int(parent) == os.getpid()
    assert "ended before forking" in caplog.text


def test_a_worker_that_gives_up_on_a_queued_request_leaves_no_process(tmp_path, servers):
    spec, server, process = queued_request(tmp_path, servers, start_seconds=2)
    process.kill()  # queued, not yet forked: the server forks, sees the hang-up, kills it
    settled = ScoringProcess(spec, server.address)  # served after the first request
    settled.start()
    settled.kill()
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    assert children == []


def test_the_servers_environment_is_what_dasks_nanny_gives_a_local_worker(monkeypatch):
    from flows.processes import _local_worker_environment

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    environment = _local_worker_environment()
    assert environment["OMP_NUM_THREADS"] == "1"  # Dask's pre-spawn default
    assert environment["MKL_NUM_THREADS"] == "3"  # a variable already set wins, as in Dask
    assert environment["PYTHONHASHSEED"] == "6640"  # Dask's fixed hash seed for workers
