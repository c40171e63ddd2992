"""One real-flow scale measurement (run by ``scale.py --flow`` in a fresh process).

Starts a Prefect server (pbe's embedded one, or one on PostgreSQL + Redis), then, in a child
process whose ``PREFECT_API_URL`` is that server (Prefect reads it when imported), runs
``batch_score`` on N no-op mini-batches (one file each, 2 single-threaded workers), samples
the peak RSS of that flow process and of each Dask worker, waits for the server to record
every task run and counts the events it dropped (its log says so for each).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

#: What Prefect's server logs for each event it loses (broker queue, persister, recorder).
DROP_MARKERS = ("Subscription queue is full", "Event queue full", "Dropping event")
FINAL = ["COMPLETED", "FAILED", "CANCELLED", "CRASHED"]


def _start_embedded(workspace: Path) -> tuple[str, Path, object]:
    """pbe's embedded server, with its own settings and priority."""
    from deployments.server import EmbeddedPrefect

    embedded = EmbeddedPrefect(workspace)
    url = embedded.ensure(announce=False)
    return url, workspace / "prefect" / "server.log", embedded.stop


def _start_pg_redis(home: Path) -> tuple[str, Path, object]:
    from deployments.production import LocalServices, start_prefect_server
    from deployments.server import lower_priority

    services = LocalServices().start()
    try:
        process, url = start_prefect_server(services.prefect_env(), home)
    except BaseException:
        services.stop()
        raise
    lower_priority(process.pid)  # as pbe's embedded server: scoring first

    def stop() -> None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(30)
        if process.poll() is None:
            process.kill()
        services.stop()

    return url, home / "server.log", stop


class PeakSampler:
    """Peak RSS (MiB) of this process and of each Dask worker, sampled twice a second."""

    def __init__(self) -> None:
        import psutil

        self.me = psutil.Process()
        self.flow_idle = self.me.memory_info().rss / 2**20
        self.flow_peak = self.flow_idle
        self.workers: dict[int, list[float]] = {}  # pid -> [first seen, peak]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _is_worker(self, process) -> bool:  # forked by multiprocessing's fork server
        parent = process.parent()
        return parent is not None and "multiprocessing.forkserver" in " ".join(parent.cmdline())

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.5):
            self.flow_peak = max(self.flow_peak, self.me.memory_info().rss / 2**20)
            for child in self.me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if child.pid not in self.workers and not self._is_worker(child):
                        continue
                    rss = child.memory_info().rss / 2**20
                    seen = self.workers.setdefault(child.pid, [rss, rss])
                    seen[1] = max(seen[1], rss)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _count(final: bool) -> int:
    from prefect import get_client

    body = {"task_runs": {"name": {"like_": "mini-batch-"}}}
    if final:
        body["task_runs"]["state"] = {"type": {"any_": FINAL}}
    with get_client(sync_client=True) as client:
        return int(client.request("POST", "/task_runs/count", json=body).json())


def measure(count: int, server: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="pbe-flow-scale-") as tmp:
        root = Path(tmp)
        start = _start_embedded if server == "embedded" else _start_pg_redis
        url, log, stop = start(root / "server")
        try:
            env = {**os.environ, "PREFECT_API_URL": url}  # PBE_EVENT_LAG as the caller set it
            output = subprocess.run(
                [sys.executable, __file__, "--job", str(count), str(log), str(root)],
                env=env,
                check=True,
                stdout=subprocess.PIPE,
                text=True,
            ).stdout
            return json.loads(output.strip().splitlines()[-1]) | {"server": server}
        finally:
            stop()


def _measure(root: Path, count: int, log: Path) -> dict:
    from _common import noop_deployment, write_files

    from flows.batch_score import batch_score

    spec = noop_deployment(root, mini_batch_size=1, max_concurrency_per_instance=2)
    inputs = write_files(root / "inputs", count)
    clock = time.monotonic()
    with PeakSampler() as sampler:
        result = batch_score(input=str(inputs), deployment=spec, output_path=str(root / "out"))
    job_seconds = time.monotonic() - clock
    deadline = time.monotonic() + 1800
    final = _count(final=True)
    while final < count and time.monotonic() < deadline:
        time.sleep(5)
        final = _count(final=True)
    recorded_seconds = time.monotonic() - clock
    text = log.read_text(errors="replace")
    return {
        "mini_batches": count,
        "succeeded": result.mini_batches_succeeded,
        "ms_per_minibatch": result.scoring_seconds * 1000 / count,
        "job_seconds": job_seconds,
        "recorded_seconds": recorded_seconds,
        "recorded_per_second": count / recorded_seconds,
        "flow_idle_mib": sampler.flow_idle,
        "flow_peak_mib": sampler.flow_peak,
        "workers": [
            {"first_mib": first, "peak_mib": peak} for first, peak in sampler.workers.values()
        ],
        "dropped_events": sum(text.count(marker) for marker in DROP_MARKERS),
        "task_runs": _count(final=False),
        "task_runs_final": final,
    }


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on kill too
    if sys.argv[1] == "--job":  # the flow process: PREFECT_API_URL is set
        print(json.dumps(_measure(Path(sys.argv[4]), int(sys.argv[2]), Path(sys.argv[3]))))
    else:
        print(json.dumps(measure(int(sys.argv[1]), sys.argv[2])))
