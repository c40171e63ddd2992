"""The parent's handle on one scoring process, with a hard timeout.

A ``run()`` that overruns its timeout is stopped by killing the scoring process (its whole
process group), exactly as the platform does; the next attempt starts a fresh process,
which calls ``init()`` again. This works for Python loops and for native code alike.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from blocks.errors import ErrorCategory
from scoring.capture import OutputCapture, OutputLine, SinkFactory
from scoring.children import Child, ForkedChild, start_child
from scoring.spec import ScoringProcessSpec

#: Called with the script's lines while a ``run()`` is under way (about once a second).
OutputCallback = Callable[[list[OutputLine]], None]

logger = logging.getLogger(__name__)


@dataclass
class ScoringFailure(Exception):
    """One failed call into the scoring process, and why (its :class:`ErrorCategory`)."""

    category: ErrorCategory
    detail: str
    traceback: str = ""
    missing_module: str | None = None
    logs: list[OutputLine] = field(default_factory=list)
    #: no retry can change it (a syntax error, a missing module, no run())
    permanent: bool = False
    #: ``host:pid`` of the process, for a failure before it was lent (its ``init()``)
    process: str = ""

    def __str__(self) -> str:
        return f"{self.category}: {self.detail}"


@dataclass(frozen=True)
class RunOutcome:
    """What one successful run() produced; ``failed_items`` (path, reason) if it named any."""

    returned: int
    rows: bytes | None
    started: float
    elapsed: float
    logs: list[OutputLine]
    failed_items: list[tuple[str, str]] | None = None


def _exit_description(code: int | None) -> str:
    if code is None:
        return "is not responding"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


class ScoringProcess:
    """A child process that hosts one deployment's scoring script.

    With ``fork_server`` (the address of the job's fork server) the process is forked
    from it; without one, or when it is gone, the process is spawned. Its stdout, stderr
    and ``logging`` records are captured (:mod:`scoring.capture`); ``sinks`` makes the
    place each process's lines are kept whole, from its name (``<host>-<pid>``).
    """

    def __init__(
        self,
        spec: ScoringProcessSpec,
        fork_server: str | None = None,
        sinks: SinkFactory | None = None,
    ) -> None:
        self.spec = spec
        self.fork_server = fork_server
        self.sinks = sinks
        self._child: Child | None = None
        self._output: OutputCapture | None = None
        self._to_child: Connection | None = None
        self._from_child: Connection | None = None
        self._init_logs: list[OutputLine] = []
        self._launched_at = 0.0
        self._ready = False

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    @property
    def name(self) -> str:
        """``<host>-<pid>``: the name of its files under ``logs/user/``."""
        return f"{socket.gethostname()}-{self.pid or 'unstarted'}"

    @property
    def label(self) -> str:
        """``<host>:<pid>``: the process as the job's report names it (``process``)."""
        return f"{socket.gethostname()}:{self.pid}"

    @property
    def alive(self) -> bool:
        return self._child is not None and self._child.poll() is None

    @property
    def ready(self) -> bool:
        """Whether its ``init()`` has been waited for and succeeded."""
        return self._ready

    def start(self) -> None:
        """Start the process and wait for ``init()``; raises ScoringFailure if it fails."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process and ask it to ``init()``, without waiting for the answer."""
        parent_read, child_write = os.pipe()
        child_read, parent_write = os.pipe()
        output = self._output = OutputCapture(self.sinks)
        try:
            try:
                self._child = start_child(
                    self.spec, child_read, child_write, self.fork_server, output.child_fds
                )
            except OSError as exc:  # the fork server is gone: spawn, as without one
                logger.warning(
                    "fork server %s unavailable (%s); spawning the scoring process instead",
                    self.fork_server,
                    exc,
                )
                self.fork_server = None
                self._child = start_child(
                    self.spec, child_read, child_write, None, output.child_fds
                )
        except BaseException:
            output.close()
            raise
        finally:
            os.close(child_read)
            os.close(child_write)
        output.child_started()
        self._from_child = Connection(parent_read, writable=False)
        self._to_child = Connection(parent_write, readable=False)
        self._to_child.send(("init", self.spec))
        self._launched_at = time.monotonic()
        self._ready = False

    def wait_ready(self) -> None:
        """Wait for the ``init()`` of a launched process (once); ScoringFailure if it fails.

        ``init_timeout`` counts from the launch, so a process started ahead of its first
        mini-batch has had part of its time already.
        """
        if self._ready:
            return
        remaining = self.spec.init_timeout - (time.monotonic() - self._launched_at)
        try:
            kind, payload = self._receive(max(remaining, 0.001), during="init()")
        except ScoringFailure as failure:
            if failure.category != ErrorCategory.PROCESS_DIED or not self._never_forked():
                failure.logs = self._take_output()
                failure.process = self.label
                raise
            logger.warning(
                "fork server %s ended before forking; spawning the scoring process instead",
                self.fork_server,
            )
            self.fork_server = None
            self.launch()
            return self.wait_ready()
        if kind != "ready":
            self.kill()
            failure = self._failure(payload, self._take_output())
            failure.process = self.label
            raise failure
        if self._output is not None:
            self._output.attach(self.name)
        self._init_logs = self._take_output()
        self._ready = True

    def take_init_logs(self) -> list[OutputLine]:
        """What ``init()`` logged, handed out once: to the first mini-batch the process runs."""
        logs, self._init_logs = self._init_logs, []
        return logs

    def run(
        self,
        paths: list[str],
        *,
        timeout: float,
        want_rows: bool,
        on_output: OutputCallback | None = None,
    ) -> RunOutcome:
        """Call ``run(paths)``; on timeout the process is killed and ScoringFailure raised.

        The script's lines go to ``on_output`` as they come, when given; those not handed
        out yet come back with the outcome or the failure (``logs``).
        """
        assert self._to_child is not None, "start() the scoring process first"
        try:
            self._to_child.send(("run", list(paths), want_rows))
        except (BrokenPipeError, OSError):
            raise self._died("before run()", self._take_output()) from None
        try:
            kind, payload = self._receive(timeout, during="run()", on_output=on_output)
        except ScoringFailure as failure:
            failure.logs = self._take_output()
            raise
        if kind != "ok":
            raise self._failure(payload, self._take_output())
        return RunOutcome(
            returned=payload["returned"],
            rows=payload["rows"],
            started=payload["started"],
            elapsed=payload["elapsed"],
            logs=self._take_output(),
            failed_items=payload.get("failed_items"),
        )

    def _take_output(self) -> list[OutputLine]:
        return self._output.take() if self._output is not None else []

    def stop(self, *, grace: float = 30.0) -> ScoringFailure | None:
        """Ask the script to ``shutdown()`` and exit; kill it if it does not in ``grace`` s.

        A process nobody waited for (launched ahead, never lent) is killed at once.
        """
        failure = None
        if not self._ready:
            self.kill()
            return None
        if self.alive and self._to_child is not None:
            try:
                self._to_child.send(("shutdown",))
                kind, payload = self._receive(grace, during="shutdown()")
                if payload:
                    failure = self._failure(payload, self._take_output())
            except ScoringFailure as exc:
                failure = exc
            except (BrokenPipeError, OSError):
                pass
        self.kill()
        return failure

    def kill(self) -> None:
        """End the process group at once (SIGKILL), read the rest of its output (its lines
        not taken stay available), and release the pipes."""
        if self._child is not None:
            self._child.kill()
        if self._output is not None:
            self._output.close(self.name)
        for conn in (self._to_child, self._from_child):
            if conn is not None:
                conn.close()
        self._to_child = self._from_child = None

    def _receive(
        self, timeout: float, *, during: str, on_output: OutputCallback | None = None
    ) -> tuple[str, Any]:
        assert self._from_child is not None
        deadline = time.monotonic() + timeout
        while True:
            if on_output is not None and (lines := self._take_output()):
                on_output(lines)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise ScoringFailure(
                    ErrorCategory.TIMEOUT,
                    f"{during} did not finish within {timeout:g} s; "
                    "the scoring process was stopped and will be replaced",
                )
            if self._from_child.poll(min(remaining, 1.0)):
                try:
                    return self._from_child.recv()
                except (EOFError, OSError):
                    raise self._died(f"during {during}") from None
            if not self.alive:
                raise self._died(f"during {during}")

    def _died(self, when: str, logs: list[OutputLine] | None = None) -> ScoringFailure:
        code = self._child.wait(timeout=5) if self._child is not None else None
        self.kill()
        return ScoringFailure(
            ErrorCategory.PROCESS_DIED,
            f"the scoring process (pid {self.pid}) {_exit_description(code)} {when}",
            logs=logs or [],
        )

    def _never_forked(self) -> bool:
        return isinstance(self._child, ForkedChild) and not self._child.forked

    @staticmethod
    def _failure(payload: dict[str, Any], logs: list[OutputLine]) -> ScoringFailure:
        return ScoringFailure(
            category=ErrorCategory(payload["category"]),
            detail=payload["detail"],
            traceback=payload.get("traceback", ""),
            missing_module=payload.get("missing_module"),
            logs=logs,
            permanent=payload.get("permanent", False),
        )
