"""How a worker starts a scoring process, and watches it: spawned, or forked by the job's server.

Both kinds of child look alike to :class:`scoring.process.ScoringProcess`: a ``pid``,
``poll()``/``wait()`` with ``Popen``'s return codes, and ``kill()``, which ends the
process's whole group. A spawned child is a fresh interpreter the worker starts; a forked
child comes from the job's fork server (:mod:`scoring.fork_server`), which is its parent
and reports its exit over the connection that asked for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Protocol

from scoring.spec import ScoringProcessSpec

#: A scoring process leads its own process group, so a kill ends whatever the script started,
#: but stays in its worker's session: Linux (autogroup) schedules each session as one group,
#: and a session of its own would take an equal share of the CPU beside the whole job's.
#: Python 3.10 has no ``process_group``; there it gets a session of its own.
OWN_PROCESS_GROUP: dict[str, Any] = (
    {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
)

#: What a worker sends the fork server, with the child's pipes and its output pipes.
FORK_REQUEST = b"fork"

#: The write ends of a scoring process's stdout, stderr and logging pipes.
Output = tuple[int, ...]


class Child(Protocol):
    """A started scoring process, as its worker sees it."""

    @property
    def pid(self) -> int | None: ...

    def poll(self) -> int | None:
        """The return code if the process has ended (negative: killed by that signal)."""

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` s for the end; the return code, or None if still running."""

    def kill(self) -> None:
        """SIGKILL the process's group and let go of it."""


class SpawnedChild:
    """A scoring process the worker started itself (a fresh interpreter)."""

    def __init__(
        self, spec: ScoringProcessSpec, child_read: int, child_write: int, output: Output
    ) -> None:
        stdout, stderr, logs = output
        self._proc = subprocess.Popen(
            spec.command(child_read, child_write, logs),
            pass_fds=(child_read, child_write, logs),
            stdout=stdout,
            stderr=stderr,
            env=spec.environment(),
            cwd=spec.code_dir,
            **OWN_PROCESS_GROUP,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def poll(self) -> int | None:
        return self._proc.poll()

    def wait(self, timeout: float) -> int | None:
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self._proc.kill()
            self._proc.wait()


class ForkedChild:
    """A scoring process forked by the job's fork server on this worker's request.

    Asking does not wait: the server may still be importing, and the request waits in its
    socket's queue. The server answers ``pid N`` once forked and ``exit C`` when the process
    ends; the ended process stays unreaped, so its pid (and process group) cannot be
    reused, until :meth:`kill` closes the connection.
    """

    def __init__(self, address: str, child_read: int, child_write: int, output: Output) -> None:
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._conn.settimeout(10.0)  # only a full queue makes a local connect wait
            self._conn.connect(address)
            # its stdout, stderr and logging pipes, as a spawned process gets them
            socket.send_fds(self._conn, [FORK_REQUEST], [child_read, child_write, *output])
        except BaseException:
            self._conn.close()
            raise
        self._pid: int | None = None
        self._returncode: int | None = None
        self._unread = b""

    @property
    def pid(self) -> int | None:
        """The process's pid; waits (a few seconds at most) for the server's word of it."""
        deadline = time.monotonic() + 5.0
        while self._pid is None and self._conn is not None and time.monotonic() < deadline:
            self._receive(0.05)
            if self._returncode is not None:
                break
        return self._pid

    @property
    def forked(self) -> bool:
        """False if the server ended before forking (it failed, or the job is over)."""
        self._receive(0)
        return self._pid is not None

    def poll(self) -> int | None:
        self._receive(0)
        return self._returncode

    def wait(self, timeout: float) -> int | None:
        self._receive(timeout)
        return self._returncode

    def kill(self) -> None:
        """Kill the group, then hang up and wait for the server to reap the process."""
        self._receive(0)
        if self._returncode is None and self._pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, signal.SIGKILL)
        if self._conn is not None:  # the server kills what still runs, reaps, hangs up
            with contextlib.suppress(OSError):
                self._conn.shutdown(socket.SHUT_WR)
            self._receive(5.0, until_closed=True)
            self._conn.close()
            self._conn = None
        if self._returncode is None:
            self._returncode = -signal.SIGKILL

    def _receive(self, timeout: float, *, until_closed: bool = False) -> None:
        """Read the server's news for up to ``timeout`` s: until the process has ended or,
        with ``until_closed``, until the server hangs up."""
        deadline = time.monotonic() + timeout
        while self._conn is not None and (until_closed or self._returncode is None):
            self._conn.settimeout(max(deadline - time.monotonic(), 0.0))
            try:
                data = self._conn.recv(256)
            except (BlockingIOError, TimeoutError):
                return
            except OSError:
                data = b""
            if not data:  # the server hung up: it ended, or reaped the process
                if self._returncode is None:  # a server's processes die with it
                    self._returncode = -signal.SIGKILL
                return
            *lines, self._unread = (self._unread + data).split(b"\n")
            for line in lines:
                word, _, number = line.partition(b" ")
                if word == b"pid":
                    self._pid = int(number)
                elif word == b"exit":
                    self._returncode = int(number)


def start_child(
    spec: ScoringProcessSpec,
    child_read: int,
    child_write: int,
    fork_server: str | None,
    output: Output,
) -> Child:
    """Ask the fork server at ``fork_server`` for the process; spawn it when there is none.

    ``output`` are the write ends of its stdout, stderr and logging pipes
    (:class:`scoring.capture.OutputCapture`). Raises OSError when the fork server is gone
    (the caller spawns instead).
    """
    if fork_server:
        return ForkedChild(fork_server, child_read, child_write, output)
    return SpawnedChild(spec, child_read, child_write, output)
