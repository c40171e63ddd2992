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

Both outlive the command. Their pids and the URL are kept in ``server.json`` and
``worker.json`` under ``<workspace>/prefect``; later commands reuse them while the pid is
alive and ``/api/health`` answers, and start them again otherwise. A file lock makes
concurrent first commands start one server. The start is announced once on stderr.
``pbe server status`` shows them, ``pbe server stop`` stops them.

Stdlib only: this runs before Prefect is imported.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from blocks.errors import BatchEndpointError

__all__ = [
    "DEFAULT_WORK_POOL",
    "EmbeddedPrefect",
    "configured_api_url",
    "project_root",
    "work_pool_name",
]

DEFAULT_WORK_POOL = "pbe-process"
_SERVER_START_TIMEOUT = float(os.environ.get("PBE_SERVER_START_TIMEOUT", "120"))

#: How much the embedded Prefect server yields the CPU to scoring (``nice`` increment).
#: Its work (recording task-run states, events and logs) is off the critical path of a job:
#: on a small machine it would otherwise take a third of a core from the scoring processes
#: while it ingests a job's events; at a lower priority it catches up when they are idle.
SERVER_NICENESS = int(os.environ.get("PBE_SERVER_NICENESS", "10"))


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


def _alive(pid: int, marker: str) -> bool:
    """True when ``pid`` runs and (where /proc exists) its command line names ``marker``."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        with contextlib.suppress(OSError):
            return marker in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return True


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

    # --- public -----------------------------------------------------------------------

    def ensure(self, *, announce: bool = True) -> str:
        """Start the server and worker unless they run; return the API URL."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            url = self._running_server()
            started = url is None
            if url is None:
                url = self._start_server()
            if self._running("worker") is None:
                self._start_worker(url)
        if started and announce:
            print(
                f"pbe: started a local Prefect server at {url.removesuffix('/api')} and a "
                f"worker for pool '{work_pool_name()}' (state in {self.state_dir}; "
                "stop them with 'pbe server stop', or set PREFECT_API_URL to use your own).",
                file=sys.stderr,
            )
        return url

    def status(self) -> dict:
        """What runs now: URL, pids, state folder."""
        server = self._running("server")
        worker = self._running("worker")
        url = server["url"] if server and _healthy(server["url"]) else None
        return {
            "mode": "embedded",
            "api_url": url,
            "ui_url": url.removesuffix("/api") if url else None,
            "server_pid": server["pid"] if server else None,
            "worker_pid": worker["pid"] if worker else None,
            "work_pool": work_pool_name(),
            "state_dir": str(self.state_dir),
            "running": bool(url),
        }

    def stop(self, timeout: float = 20.0) -> dict:
        """Stop the worker (and the runs it started), then the server."""
        stopped = {}
        with self._lock():
            for role in ("worker", "server"):
                info = self._running(role)
                if info is not None:
                    _terminate_group(info["pid"], timeout)
                    stopped[f"{role}_pid"] = info["pid"]
                self._pidfile(role).unlink(missing_ok=True)
        return {"stopped": stopped, "state_dir": str(self.state_dir)}

    # --- processes --------------------------------------------------------------------

    def _start_server(self) -> str:
        env = self._base_env()
        env.pop("PREFECT_API_URL", None)
        env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        last_log = ""
        for _ in range(3):  # a port taken between picking and binding: pick another
            port = _free_port()
            url = f"http://127.0.0.1:{port}/api"
            log = self.state_dir / "server.log"
            cmd = [sys.executable, "-m", "prefect", "server", "start",
                   "--host", "127.0.0.1", "--port", str(port)]
            process = self._spawn(cmd, env, log)
            lower_priority(process.pid)
            deadline = time.monotonic() + _SERVER_START_TIMEOUT
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    break
                if _healthy(url, timeout=1.0):
                    self._write_pidfile("server", {"pid": process.pid, "url": url, "port": port})
                    return url
                time.sleep(0.25)
            last_log = _tail(log)
            if process.poll() is None:
                _terminate_group(process.pid, 10.0)
                break
        raise BatchEndpointError(
            f"The local Prefect server did not start within {_SERVER_START_TIMEOUT:.0f} s. "
            f"Last lines of {self.state_dir / 'server.log'}:\n{last_log}",
            hint="Set PREFECT_API_URL to a running Prefect server, or raise "
            "PBE_SERVER_START_TIMEOUT.",
        )

    def _start_worker(self, url: str) -> None:
        env = self._base_env()
        env["PREFECT_API_URL"] = url
        env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "1")  # pick jobs up within a second
        cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", work_pool_name(),
               "--type", "process", "--name", f"pbe-{os.getpid()}"]
        process = self._spawn(cmd, env, self.state_dir / "worker.log")
        self._write_pidfile("worker", {"pid": process.pid, "url": url})

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
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=str(self.state_dir), start_new_session=True,
            )

    # --- state files ------------------------------------------------------------------

    def _pidfile(self, role: str) -> Path:
        return self.state_dir / f"{role}.json"

    def _write_pidfile(self, role: str, info: dict) -> None:
        tmp = self._pidfile(role).with_suffix(".tmp")
        tmp.write_text(json.dumps(info), encoding="utf-8")
        os.replace(tmp, self._pidfile(role))

    def _running(self, role: str) -> dict | None:
        try:
            info = json.loads(self._pidfile(role).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        marker = "server start" if role == "server" else "worker start"
        return info if _alive(int(info.get("pid", 0)), marker) else None

    def _running_server(self) -> str | None:
        info = self._running("server")
        if info is None:
            return None
        if _healthy(info["url"]):
            return info["url"]
        _terminate_group(info["pid"], 10.0)  # alive but not answering: replace it
        return None

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.state_dir / "embedded.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _terminate_group(pid: int, timeout: float) -> None:
    """SIGTERM the process group ``pid`` leads (we started it in its own session)."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                # reap our own child if it is one
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        return
            except ProcessLookupError:
                return
            time.sleep(0.2)
