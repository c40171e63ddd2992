"""A Dask worker killed mid-job: the job completes, with every row exactly once.

Real Prefect (the test harness), real Dask clusters, a real scoring script, a real SIGKILL:
once about a third of the files are scored (the script leaves a marker per file it scores),
a thread kills a Dask worker that is running a mini-batch, and the job must still end
Completed with the output of an uninterrupted run, byte for byte.

- Local cluster (the default compute): the job's own ``LocalCluster``; the worker process
  is killed under its nanny, which starts a new one.
- External cluster: a real ``dask scheduler`` and two ``dask worker`` processes, each
  started the usual way, with its nanny. ``worker``: the worker process under the nanny is
  killed (what an OOM kill or a segfault does); the nanny starts a new worker, which joins
  the job. ``node``: the whole ``dask worker`` process, nanny and worker, is killed (a
  pre-empted node); nothing replaces it and the other node finishes the job.

A mini-batch that was running on the killed worker is scored again elsewhere, and so may a
finished one whose result lived only on that worker (Dask recomputes lost results): its
files may have two markers. What must hold is the output: each row exactly once, in
mini-batch order, and each mini-batch once in the report.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import distributed
import psutil
import pytest
from distributed.core import Status
from prefect.testing.utilities import prefect_test_harness
from support import free_port, make_model, make_spec, process_ended, write_inputs, write_script

from blocks.compute import DaskCompute
from flows.batch_score import batch_score
from flows.planning import plan_mini_batches

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[1]

FILES = 18  # 9 mini-batches of 2
MINI_BATCH = 2
PAUSE = 0.4  # seconds per file: 0.8 s per mini-batch, ~4 s of scoring on two workers
KILL_AFTER = FILES // 3  # files with a marker when the worker is killed

# Every file it scores leaves a line (the scoring process's pid) in <markers>/<file name>;
# the folder comes through the deployment's environment_variables.
SCRIPT = """
import os
import time


def init():
    global MARKERS, PAUSE
    MARKERS = os.environ["PBE_TEST_MARKERS"]
    PAUSE = float(os.environ.get("PBE_TEST_PAUSE", "0"))
    os.makedirs(MARKERS, exist_ok=True)


def run(mini_batch):
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        with open(os.path.join(MARKERS, name), "a") as marker:
            marker.write(f"{os.getpid()}\\n")
        time.sleep(PAUSE)
        with open(path) as file:
            rows.append(f"{name} {file.read().strip()} {len(name)}")
    return rows
"""


@pytest.fixture(scope="module", autouse=True)
def prefect_api():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def project(root: Path, processes: int = 2):
    """The script, its inputs and a deployment of ``processes`` scoring processes (as many
    workers on a local cluster)."""
    markers = root / "markers"
    code = write_script(root / "code", SCRIPT)
    write_inputs(root / "in", FILES)
    spec = make_spec(
        code,
        make_model(root / "model"),
        mini_batch_size=MINI_BATCH,
        max_concurrency_per_instance=processes,
        max_retries=3,
        environment_variables={"PBE_TEST_MARKERS": str(markers), "PBE_TEST_PAUSE": str(PAUSE)},
    )
    return spec, code, root / "in", markers


def plain_loop(code: Path, inputs: Path, markers: Path) -> bytes:
    """The same script called in a plain loop over the same mini-batches, in this process."""
    files = sorted(str(path) for path in inputs.iterdir())
    saved = {key: os.environ.get(key) for key in ("PBE_TEST_MARKERS", "PBE_TEST_PAUSE")}
    os.environ.update(PBE_TEST_MARKERS=str(markers), PBE_TEST_PAUSE="0")
    try:
        spec = importlib.util.spec_from_file_location("worker_loss_plain", code / "score.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.init()
        rows = [row for mb in plan_mini_batches(files, MINI_BATCH) for row in module.run(mb.files)]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return "".join(f"{row}\n" for row in rows).encode()


class WorkerKiller(threading.Thread):
    """Once ``after`` files have a marker, SIGKILL a Dask worker that is running a mini-batch.

    ``address`` finds the scheduler (called once it is time); ``victims`` turns the chosen
    worker's pid into the pids to kill (the worker alone, or its nanny too).
    """

    def __init__(
        self,
        markers: Path,
        after: int,
        address: Callable[[], str],
        victims: Callable[[int], list[int]] = lambda pid: [pid],
    ) -> None:
        super().__init__(daemon=True)
        self.markers, self.after = markers, after
        self.address, self.victims = address, victims
        self.killed: list[int] = []
        self.worker = ""
        self.running: list[str] = []  # the mini-batches (Dask keys) it was running
        self.scored_before = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 120
            while scored(self.markers) < self.after:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"fewer than {self.after} files scored in 120 s")
                time.sleep(0.05)
            with distributed.Client(self.address(), timeout=30, set_as_default=False) as client:
                pids = client.run(os.getpid)
                busy = {w: keys for w, keys in client.processing().items() if keys}
                self.worker = sorted(busy)[0] if busy else sorted(pids)[0]
                self.running = list(busy.get(self.worker, []))
                self.killed = self.victims(pids[self.worker])
                self.scored_before = scored(self.markers)
                for pid in self.killed:
                    os.kill(pid, signal.SIGKILL)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def check(self) -> None:
        """Fail the test if the kill did not happen as planned."""
        self.join(timeout=30)
        if self.error is not None:
            raise AssertionError(f"killing a worker failed: {self.error!r}") from self.error
        assert self.killed, "no worker was killed"
        assert self.running, f"worker {self.worker} was running no mini-batch when killed"
        for pid in self.killed:
            assert process_ended(pid), f"process {pid} survived SIGKILL"


def scored(markers: Path) -> int:
    """Files with at least one marker."""
    try:
        return len(os.listdir(markers))
    except FileNotFoundError:
        return 0


def marker_counts(markers: Path) -> dict[str, list[int]]:
    return {p.name: [int(pid) for pid in p.read_text().split()] for p in markers.iterdir()}


def local_scheduler_address() -> str:
    """The scheduler of the job's LocalCluster, which runs in this process."""
    running = [s for s in list(distributed.Scheduler._instances) if s.status == Status.running]
    assert len(running) == 1, f"expected the job's one LocalCluster, found {len(running)}"
    return running[0].address


def run_job(spec, inputs: Path, output: Path, **options):
    return batch_score(
        input=str(inputs),
        deployment=spec,
        output_path=str(output),
        job_name="worker-loss",
        return_state=True,
        **options,
    )


def check_job(state, output: Path, expected: bytes, killer: WorkerKiller, markers: Path):
    """The job completed as if no worker had been lost."""
    killer.check()
    assert state.is_completed(), state.message
    result = state.result()
    assert (result.items, result.items_succeeded, result.mini_batches) == (FILES, FILES, 9)
    merged = (output / "predictions.csv").read_bytes()
    names = [line.split(" ")[0] for line in merged.decode().splitlines()]
    assert names == [f"item{n:04d}.txt" for n in range(FILES)]  # each file once, in order
    assert merged == expected  # byte for byte the plain loop's rows
    with open(output / "logs" / "processed_mini-batches.csv") as handle:
        report = list(csv.DictReader(handle))
    assert [row["mini_batch_id"] for row in report] == [str(n) for n in range(9)]
    assert {row["status"] for row in report} == {"succeeded"}
    assert not list(output.glob(".pbe-staging-*")) and not list(output.glob(".*.claim"))
    counts = marker_counts(markers)
    assert sorted(counts) == [f"item{n:04d}.txt" for n in range(FILES)]
    assert killer.scored_before < FILES  # killed mid-job, not after it
    again = sorted(name for name, pids in counts.items() if len(pids) > 1)
    print(
        f"\nkilled {killer.killed} ({killer.worker}, running {killer.running}) after "
        f"{killer.scored_before} of {FILES} files; scored more than once: {again or 'none'}"
    )
    # every scoring process the job used is gone (the killed worker's too)
    for pid in {pid for pids in counts.values() for pid in pids}:
        assert process_ended(pid), f"scoring process {pid} outlived the job"


@pytest.mark.parametrize("workers", [2, 1])
def test_a_killed_local_worker_is_replaced_and_the_job_completes(tmp_path, workers):
    """The default compute: a LocalCluster of single-threaded workers under nannies (with 2,
    scoring processes forked by the job's fork server; with 1, the default deployment,
    spawned by the worker). The worker process is SIGKILLed; its nanny restarts it."""
    spec, code, inputs, markers = project(tmp_path, processes=workers)
    expected = plain_loop(code, inputs, tmp_path / "loop-markers")
    killer = WorkerKiller(markers, KILL_AFTER, local_scheduler_address)
    started = time.monotonic()
    killer.start()
    state = run_job(spec, inputs, tmp_path / "out")
    print(f"job: {time.monotonic() - started:.1f} s")
    check_job(state, tmp_path / "out", expected, killer, markers)


# --- an external cluster: a dask scheduler and two dask worker processes -------------------


@contextlib.contextmanager
def external_cluster(logs: Path, nodes: int = 2) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A ``dask scheduler`` and ``nodes`` ``dask worker`` processes (one single-threaded
    worker each, under its nanny, the default); yields the address and the worker commands.
    The workers import this checkout's code (``PYTHONPATH``)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    dask = str(bin_dir / "dask") if (bin_dir / "dask").exists() else "dask"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=open(logs / "scheduler.log", "w"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    workers = [
        subprocess.Popen(
            [dask, "worker", address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
            stdout=open(logs / f"worker-{number}.log", "w"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        for number in range(nodes)
    ]
    try:
        with distributed.Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(nodes, timeout=90)
        yield address, workers
    finally:
        for process in [*workers, scheduler]:
            if process.poll() is None:
                process.terminate()
        for process in [*workers, scheduler]:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.mark.parametrize("kill", ["worker", "node"])
def test_a_killed_external_worker_loses_no_row(tmp_path, kill):
    """``worker``: SIGKILL of the worker process under its nanny (restarted by it);
    ``node``: SIGKILL of a whole ``dask worker`` process, nanny and worker (not replaced)."""
    spec, code, inputs, markers = project(tmp_path)
    expected = plain_loop(code, inputs, tmp_path / "loop-markers")
    logs = tmp_path / "dask"
    logs.mkdir()
    with external_cluster(logs) as (address, nodes):
        node_pids = {process.pid for process in nodes}

        def victims(worker_pid: int) -> list[int]:
            nanny = psutil.Process(worker_pid).parent()
            assert nanny is not None and nanny.pid in node_pids  # a worker under its nanny
            return [worker_pid] if kill == "worker" else [nanny.pid, worker_pid]

        killer = WorkerKiller(markers, KILL_AFTER, lambda: address, victims)
        started = time.monotonic()
        killer.start()
        state = run_job(
            spec, inputs, tmp_path / "out", compute=DaskCompute(type="address", address=address)
        )
        print(f"job: {time.monotonic() - started:.1f} s")
        check_job(state, tmp_path / "out", expected, killer, markers)
        with distributed.Client(address, timeout=30, set_as_default=False) as client:
            if kill == "worker":  # the nanny started a new worker
                client.wait_for_workers(2, timeout=30)
            assert len(client.scheduler_info(n_workers=-1)["workers"]) == len(nodes) - (
                kill == "node"
            )
        assert [p.poll() is None for p in nodes].count(False) == (0 if kill == "worker" else 1)
    time.sleep(2)  # a recomputed mini-batch still on a worker would commit by now
    assert not list((tmp_path / "out").glob(".pbe-staging-*"))
