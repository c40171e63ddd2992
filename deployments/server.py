"""The embedded Prefect server and worker that make ``pbe`` work with no set-up.

When ``PREFECT_API_URL`` is set (in the environment or the active Prefect profile),
``pbe`` talks to that server and starts nothing: run a worker for the work pool yourself
(``prefect worker start --pool pbe-process``; the pool is a ``process`` pool, created on
first use; ``PBE_WORK_POOL`` names another).

When it is not set, the first ``pbe`` command that needs Prefect starts, in the background:

- a Prefect server: ``prefect server start --host 127.0.0.1 --port <a free port>``, with
  ``PREFECT_HOME=<workspace>/prefect`` (its SQLite database, ``server.log``), and
- a process worker polling the work pool: ``prefect worker start --pool pbe-process
  --type process`` (``worker.log``); each job runs as a separate ``python -m
  prefect.engine`` process started by it, with the project on ``PYTHONPATH``.

Both outlive the command and are supervised as one unit (state in ``embedded.json``, see
:mod:`deployments.embedded_state`; every change under a file lock, so racing commands start
one server):

- a server that answers ``/api/health`` is reused; one that is alive but slow (or suspended)
  is waited for, with a message, and replaced only after ``PBE_SERVER_START_TIMEOUT``;
- when the server is replaced for any reason, the worker is replaced with it: a worker
  always polls the URL of the server that runs now;
- an unreadable state file is repaired from the processes themselves (found by command line
  and ``PREFECT_HOME``): a healthy server is adopted, anything else of this workspace is
  stopped, so no second server ever shares the database.

The start is announced once on stderr. ``pbe server status`` reports whether both answer and
point at each other; ``pbe server stop`` stops them. POSIX only (Linux, macOS): elsewhere the
commands say to set ``PREFECT_API_URL``. Prefect is not imported here.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from blocks.errors import BatchEndpointError
from deployments.embedded_state import (
    ROLES,
    Proc,
    State,
    StateFileError,
    find_processes,
    terminate,
    url_of,
)

__all__ = [
    "DEFAULT_WORK_POOL",
    "EmbeddedPrefect",
    "configured_api_url",
    "project_root",
    "work_pool_name",
]

DEFAULT_WORK_POOL = "pbe-process"
_SERVER_START_TIMEOUT = float(os.environ.get("PBE_SERVER_START_TIMEOUT", "120"))
#: how long a command waits for the state lock held by another command (it may be starting
#: the server, which takes up to the start timeout)
_LOCK_TIMEOUT = _SERVER_START_TIMEOUT + 60

#: How much the embedded Prefect server yields the CPU to scoring (``nice`` increment).
#: Its work (recording task-run states, events and logs) is off the critical path of a job:
#: on a small machine it would otherwise take a third of a core from the scoring processes
#: while it ingests a job's events; at a lower priority it catches up when they are idle.
SERVER_NICENESS = int(os.environ.get("PBE_SERVER_NICENESS", "10"))


#: Settings of the embedded server for large jobs (a variable already set wins). Prefect's
#: default task-run recorder writes each task-run event in its own SQLite transaction
#: (batch of 1): on this project's 2-core machine it records ~5–25 task runs a second, and
#: behind a big job its in-memory broker (10,000 events per consumer, not a setting) drops
#: events. Batches of 100 write several times faster. The event persister keeps Prefect's
#: defaults: it already writes whatever it has queued in one transaction, and larger
#: batches made its transactions (and SQLite's lock waits) longer. ``flows.event_pace``
#: paces a job to what both have written, so nothing is dropped.
SERVER_TUNING = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}


def tuned_server_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with :data:`SERVER_TUNING` added where it does not say otherwise."""
    return {**SERVER_TUNING, **env}


def lower_priority(pid: int, niceness: int = SERVER_NICENESS) -> None:
    """Make ``pid`` yield the CPU to normal-priority processes (best effort, POSIX).

    Linux schedules each session as one group (autogroup) against the others, and a
    process's ``nice`` only ranks it inside its group: for a process that leads its own
    session, like the embedded server, the group's nice is raised as well.
    """
    if niceness <= 0:
        return
    with contextlib.suppress(OSError, AttributeError):
        current = os.getpriority(os.PRIO_PROCESS, pid)
        os.setpriority(os.PRIO_PROCESS, pid, min(current + niceness, 19))
    with contextlib.suppress(OSError, AttributeError):
        if os.getsid(pid) == pid:
            Path(f"/proc/{pid}/autogroup").write_text(str(min(niceness, 19)))


def configured_api_url() -> str | None:
    """``PREFECT_API_URL`` when the user points ``pbe`` at their own server."""
    return os.environ.get("PREFECT_API_URL") or None


def work_pool_name() -> str:
    """The work pool endpoints are deployed to (``PBE_WORK_POOL``, default pbe-process)."""
    return os.environ.get("PBE_WORK_POOL") or DEFAULT_WORK_POOL


def project_root() -> str:
    """The folder that holds the ``blocks``/``flows``/``scoring`` packages."""
    return str(Path(__file__).resolve().parent.parent)


def _healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


class EmbeddedPrefect:
    """The background server and worker of one workspace (state in ``<workspace>/prefect``)."""

    def __init__(self, workspace: str | os.PathLike[str]) -> None:
        self.workspace = Path(workspace)
        self.state_dir = self.workspace / "prefect"
        self.state_file = self.state_dir / "embedded.json"

    # --- public -----------------------------------------------------------------------

    def ensure(self, *, announce: bool = True) -> str:
        """Start or repair the server and worker so that both run; return the API URL."""
        _require_posix()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            state = self._read_state()
            server = self._answering_server(state.server)
            started = server is None
            if server is None:
                self._stop_all(state)
                server = self._start_server()
            worker = state.worker if not started and _serves(state.worker, server) else None
            if worker is None:
                self._stop(state.worker)
                for orphan in find_processes("worker", self.state_dir):
                    if worker is None and url_of(orphan) == server.url:
                        worker = Proc.of(orphan.pid, server.url)  # adopted (state repaired)
                    else:
                        terminate(orphan, 10.0)
                worker = worker or self._start_worker(server.url)
            State(server, worker).write(self.state_file)
        if started and announce:
            _say(
                f"started a local Prefect server at {server.url.removesuffix('/api')} and a "
                f"worker for pool '{work_pool_name()}' (state in {self.state_dir}; stop them "
                "with 'pbe server stop', or set PREFECT_API_URL to use your own)."
            )
        return server.url

    def status(self) -> dict:
        """What runs now, and whether server and worker answer and point at each other."""
        try:
            state = State.read(self.state_file)
        except StateFileError as exc:
            state, problem = State(), str(exc)
        else:
            problem = None
        server = state.server if state.server and state.server.alive() else None
        worker = state.worker if state.worker and state.worker.alive() else None
        answering = server is not None and _healthy(server.url)
        problems = [
            p
            for p in (
                problem,
                "the server is not running" if server is None else None,
                "the server is suspended (SIGSTOP)" if server and server.stopped() else None,
                "the server does not answer" if server and not answering else None,
                "the worker is not running" if worker is None else None,
                "the worker polls another server"
                if server and worker and worker.url != server.url
                else None,
            )
            if p
        ]
        return {
            "mode": "embedded",
            "api_url": server.url if answering else None,
            "ui_url": server.url.removesuffix("/api") if answering else None,
            "server_pid": server.pid if server else None,
            "worker_pid": worker.pid if worker else None,
            "work_pool": work_pool_name(),
            "state_dir": str(self.state_dir),
            "running": not problems,
            "problems": problems,
        }

    def stop(self, timeout: float = 20.0) -> dict:
        """Stop the worker (and the runs it started), then the server, and any stray ones."""
        stopped: dict[str, int] = {}
        if not self.state_dir.is_dir():
            return {"stopped": stopped, "state_dir": str(self.state_dir)}
        with self._lock():
            try:
                state = State.read(self.state_file)
            except StateFileError:
                state = State()
            for role, proc in reversed(state.roles()):  # the worker first
                if proc is not None and (process := proc.process()) is not None:
                    terminate(process, timeout)
                    stopped[f"{role}_pid"] = proc.pid
            for role in reversed(ROLES):
                for orphan in find_processes(role, self.state_dir):
                    terminate(orphan, timeout)
                    stopped.setdefault(f"{role}_pid", orphan.pid)
            self.state_file.unlink(missing_ok=True)
        return {"stopped": stopped, "state_dir": str(self.state_dir)}

    # --- supervision ------------------------------------------------------------------

    def _read_state(self) -> State:
        """The state file, or (unreadable) the state recovered from the running processes."""
        try:
            return State.read(self.state_file)
        except StateFileError as exc:
            _say(f"{exc}; recovering the server and worker from the running processes.")
        servers = find_processes("server", self.state_dir)
        for process in servers:
            url = url_of(process)
            if url and _healthy(url):
                for other in servers:
                    if other.pid != process.pid:
                        terminate(other, 10.0)
                return State(server=Proc.of(process.pid, url))
        for process in servers:
            terminate(process, 10.0)
        return State()

    def _answering_server(self, server: Proc | None) -> Proc | None:
        """``server`` once it answers; None when it is gone or never answered in time."""
        if server is None or not server.alive():
            return None
        if _healthy(server.url):
            return server
        why = "is suspended (SIGSTOP)" if server.stopped() else "does not answer"
        _say(
            f"the local Prefect server (pid {server.pid}) {why}; waiting up to "
            f"{_SERVER_START_TIMEOUT:.0f} s for it (PBE_SERVER_START_TIMEOUT)."
        )
        deadline = time.monotonic() + _SERVER_START_TIMEOUT
        while time.monotonic() < deadline and server.alive():
            if _healthy(server.url):
                return server
            time.sleep(1.0)
        if server.alive():
            _say(
                f"the local Prefect server (pid {server.pid}) did not answer in time; "
                "replacing it and its worker."
            )
        return None

    def _stop_all(self, state: State) -> None:
        """Stop the recorded and any stray server and worker before a new server starts."""
        self._stop(state.worker)
        self._stop(state.server)
        for role in reversed(ROLES):
            for orphan in find_processes(role, self.state_dir):
                terminate(orphan, 10.0)

    @staticmethod
    def _stop(proc: Proc | None) -> None:
        if proc is not None and (process := proc.process()) is not None:
            terminate(process, 10.0)

    # --- processes --------------------------------------------------------------------

    def _start_server(self) -> Proc:
        env = tuned_server_env(self._base_env())
        env.pop("PREFECT_API_URL", None)
        env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        log = self.state_dir / "server.log"
        last_log = ""
        for _ in range(3):  # a port taken between picking and binding: pick another
            port = _free_port()
            url = f"http://127.0.0.1:{port}/api"
            env["PREFECT_UI_API_URL"] = url  # the UI's own calls (else :4200, another server)
            cmd = [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            process = self._spawn(cmd, env, log)
            lower_priority(process.pid)
            proc = Proc.of(process.pid, url)
            deadline = time.monotonic() + _SERVER_START_TIMEOUT
            while time.monotonic() < deadline and process.poll() is None:
                if _healthy(url, timeout=1.0):
                    return proc
                time.sleep(0.25)
            last_log = _tail(log)
            if process.poll() is None:
                self._stop(proc)
                break
        raise BatchEndpointError(
            f"The local Prefect server did not start within {_SERVER_START_TIMEOUT:.0f} s. "
            f"Last lines of {log}:\n{last_log}",
            hint="Set PREFECT_API_URL to a running Prefect server, or raise "
            "PBE_SERVER_START_TIMEOUT.",
        )

    def _start_worker(self, url: str) -> Proc:
        env = self._base_env()
        env["PREFECT_API_URL"] = url
        env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "1")  # pick jobs up within a second
        cmd = [
            sys.executable,
            "-m",
            "prefect",
            "worker",
            "start",
            "--pool",
            work_pool_name(),
            "--type",
            "process",
            "--name",
            f"pbe-{os.getpid()}",
        ]
        process = self._spawn(cmd, env, self.state_dir / "worker.log")
        return Proc.of(process.pid, url)

    def _base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PREFECT_HOME"] = str(self.state_dir)
        env["PBE_HOME"] = str(self.workspace)
        root = project_root()
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in paths if p != root]])
        return env

    def _spawn(self, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        with open(log, "ab") as out:
            return subprocess.Popen(
                cmd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(self.state_dir),
                start_new_session=True,
            )

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        lock = FileLock(self.state_dir / "embedded.lock", timeout=_LOCK_TIMEOUT)
        try:
            with lock:
                yield
        except Timeout:
            raise BatchEndpointError(
                f"another pbe command has held {lock.lock_file} for {_LOCK_TIMEOUT:.0f} s",
                hint="Wait for it to finish, or stop the server: pbe server stop.",
            ) from None


def _serves(worker: Proc | None, server: Proc) -> bool:
    """Whether ``worker`` runs and polls ``server``."""
    return worker is not None and worker.url == server.url and worker.alive()


def _say(message: str) -> None:
    print(f"pbe: {message}", file=sys.stderr)


def _require_posix() -> None:
    if os.name != "posix":
        raise BatchEndpointError(
            "pbe's embedded Prefect server runs on Linux and macOS only",
            hint="Set PREFECT_API_URL to a Prefect server and run "
            f"'prefect worker start --pool {work_pool_name()}' yourself.",
        )
