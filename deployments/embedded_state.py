"""What the embedded Prefect server and worker are: their processes and the state file.

``<workspace>/prefect/embedded.json`` holds both records (pid, start time, URL) and is
replaced atomically. A record only names a live process when the pid runs, started at the
recorded time (pids are reused) and still runs the recorded command. Processes of this state
folder that no record names (a corrupt or deleted state file, a crash between start and
write) are found by their command line and ``PREFECT_HOME`` (:func:`find_processes`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

__all__ = ["ROLES", "Proc", "State", "StateFileError", "find_processes", "terminate"]

#: the two processes, and what their command lines contain
ROLES = {"server": "prefect server start", "worker": "prefect worker start"}


class StateFileError(ValueError):
    """The state file exists but cannot be read as a state (the message says why)."""


@dataclass(frozen=True)
class Proc:
    """One process we started: its pid, its start time (psutil), the API URL it serves or uses."""

    pid: int
    started: float
    url: str

    @classmethod
    def of(cls, pid: int, url: str) -> Proc:
        return cls(pid, psutil.Process(pid).create_time(), url)

    def process(self) -> psutil.Process | None:
        """The live process this record names, or None (gone, a zombie, or a reused pid)."""
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.started) < 0.01 and (
                process.status() != psutil.STATUS_ZOMBIE
            ):
                return process
        return None

    def alive(self) -> bool:
        return self.process() is not None

    def stopped(self) -> bool:
        """Whether the process is suspended (SIGSTOP, a debugger): alive but cannot answer."""
        process = self.process()
        with contextlib.suppress(psutil.Error):
            return process is not None and process.status() == psutil.STATUS_STOPPED
        return False


@dataclass(frozen=True)
class State:
    """The server and worker of one workspace, as last written."""

    server: Proc | None = None
    worker: Proc | None = None

    @classmethod
    def read(cls, path: Path) -> State:
        """The state in ``path`` (empty when there is no file); StateFileError if unreadable."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise StateFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text)
            return cls(**{role: Proc(**data[role]) if data.get(role) else None for role in ROLES})
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StateFileError(f"{path} is not a state file ({type(exc).__name__})") from exc

    def write(self, path: Path) -> None:
        """Replace ``path`` atomically (written beside it, flushed, then renamed)."""
        data = {role: asdict(proc) if proc else None for role, proc in self.roles()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def roles(self) -> list[tuple[str, Proc | None]]:
        return [("server", self.server), ("worker", self.worker)]


def find_processes(role: str, state_dir: Path) -> list[psutil.Process]:
    """Running servers or workers (``role``) whose ``PREFECT_HOME`` is ``state_dir``."""
    marker, home = ROLES[role], str(state_dir)
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if marker in " ".join(process.info["cmdline"] or ()) and (
                process.environ().get("PREFECT_HOME") == home
            ):
                found.append(process)
    return found


def url_of(process: psutil.Process) -> str | None:
    """The API URL a server process serves (from ``--port``), or a worker uses (environment)."""
    with contextlib.suppress(psutil.Error, ValueError, IndexError):
        cmdline = process.cmdline()
        if "--port" in cmdline:
            return f"http://127.0.0.1:{int(cmdline[cmdline.index('--port') + 1])}/api"
        return process.environ().get("PREFECT_API_URL")
    return None


def terminate(process: psutil.Process, timeout: float) -> None:
    """Stop the process group ``process`` leads (started in its own session): TERM, then KILL.

    A suspended process is continued first, so that it can act on the TERM.
    """
    with contextlib.suppress(psutil.Error):
        members = [process, *process.children(recursive=True)]
        for sig in (signal.SIGCONT, signal.SIGTERM):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
        _, left = psutil.wait_procs(members, timeout=timeout)
        for member in left:
            with contextlib.suppress(psutil.Error):
                member.kill()
        psutil.wait_procs(left, timeout=5.0)
