"""A scoring process's own output, captured line by line as it is written.

The process's stdout and stderr (descriptors 1 and 2, so native code is caught too) and
its ``logging`` records (a third pipe, one JSON line per record) are pipes that a reader
thread in the worker empties as they fill. Each line goes at once to the process's
:class:`OutputSink` (its files) and waits in memory for the mini-batch that takes it
(:meth:`OutputCapture.take`). What a process wrote before it was killed is still in the
pipes and is read when it is closed.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

STDOUT, STDERR, LOGGING = "stdout", "stderr", "logging"
#: A line that stands for lines not kept in memory; its ``text`` is how many.
OMITTED = "omitted"
#: Lines kept in memory for the next mini-batch; more are counted, not kept (files get all).
MAX_PENDING = 5000

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputLine:
    """One line the script wrote: its stream, its level (INFO for stdout, WARNING for
    stderr, the record's own for ``logging``) and its text without the newline."""

    stream: str
    level: int
    text: str


class OutputSink(Protocol):
    """Where a process's lines are kept whole (``logs/user/...``)."""

    def write(self, line: OutputLine) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


SinkFactory = Callable[[str], OutputSink]


def _decode(stream: str, raw: bytes) -> OutputLine:
    text = raw.decode("utf-8", errors="replace").rstrip("\r")
    if stream == STDOUT:
        return OutputLine(STDOUT, logging.INFO, text)
    if stream == STDERR:
        return OutputLine(STDERR, logging.WARNING, text)
    try:
        level, message = json.loads(text)
        return OutputLine(LOGGING, int(level), str(message))
    except (ValueError, TypeError):
        return OutputLine(LOGGING, logging.WARNING, text)


class OutputCapture:
    """The pipes of one scoring process and the thread that reads them.

    ``child_fds`` (stdout, stderr, logging) are the write ends the process gets; call
    :meth:`child_started` once it has them. :meth:`attach` names the process and opens its
    sink (lines read before are kept for it).
    """

    def __init__(self, sinks: SinkFactory | None = None) -> None:
        self._sinks = sinks
        self._sink: OutputSink | None = None
        self._unsent: list[OutputLine] = []  # read before attach(): written to the sink then
        self._pending: list[OutputLine] = []
        self._omitted = 0
        self._lock = threading.Lock()
        self._streams: dict[int, str] = {}
        self._partial: dict[int, bytes] = {}
        write_ends = []
        for stream in (STDOUT, STDERR, LOGGING):
            read, write = os.pipe()
            os.set_blocking(read, False)
            self._streams[read] = stream
            self._partial[read] = b""
            write_ends.append(write)
        self.child_fds: tuple[int, ...] = tuple(write_ends)
        self._wake_read, self._wake_write = os.pipe()
        self._selector = selectors.DefaultSelector()
        for fd in [*self._streams, self._wake_read]:
            self._selector.register(fd, selectors.EVENT_READ)
        self._closed = False
        self._thread = threading.Thread(target=self._pump, name="pbe-script-output", daemon=True)
        self._thread.start()

    def child_started(self) -> None:
        """Close our copies of the child's ends, so that its exit reads as end of file."""
        for fd in self.child_fds:
            os.close(fd)
        self.child_fds = ()

    def attach(self, process: str) -> None:
        """Open the sink of ``process`` (once) and give it the lines read so far."""
        with self._lock:
            if self._sink is not None or self._sinks is None:
                return
            self._sink = self._sinks(process)
            for line in self._unsent:
                self._sink.write(line)
            self._sink.flush()
            self._unsent = []

    def take(self) -> list[OutputLine]:
        """Every line read since the last call (reading what is in the pipes now first)."""
        with self._lock:
            for fd in list(self._streams):
                self._read(fd)
            self._flush_sink()
            lines, self._pending = self._pending, []
            if self._omitted:
                lines.append(OutputLine(OMITTED, logging.WARNING, str(self._omitted)))
                self._omitted = 0
        return lines

    def close(self, process: str | None = None, *, grace: float = 2.0) -> None:
        """Read what is left (the process has ended, or is left to end), close the pipes
        and the sink. Lines not taken stay available to :meth:`take`."""
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_write, b"x")
        self._thread.join(grace)
        if process is not None:
            self.attach(process)
        with self._lock:
            for fd in list(self._streams):
                self._read(fd)
                self._end(fd)
            self._flush_sink()
            for fd in self.child_fds:
                os.close(fd)
            self.child_fds = ()
            sink, self._sink = self._sink, None
        self._selector.close()
        os.close(self._wake_read)
        os.close(self._wake_write)
        if sink is not None:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - losing the files must not break a kill
                logger.warning("Keeping the scoring process's output failed: %s", exc)

    # --- the reader thread ---------------------------------------------------------------

    def _pump(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.fd == self._wake_read:
                    return
                with self._lock:
                    if key.fd in self._streams:
                        self._read(key.fd)
                        self._flush_sink()
            with self._lock:
                if not self._streams:
                    return

    def _read(self, fd: int) -> None:
        """Read what ``fd`` holds now (called with the lock held)."""
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._end(fd)
                return
            *lines, self._partial[fd] = (self._partial[fd] + data).split(b"\n")
            for raw in lines:
                self._dispatch(_decode(self._streams[fd], raw))

    def _end(self, fd: int) -> None:
        """End of ``fd``: its last line without a newline counts too."""
        if fd not in self._streams:
            return
        if self._partial[fd]:
            self._dispatch(_decode(self._streams[fd], self._partial[fd]))
        del self._streams[fd], self._partial[fd]
        try:
            self._selector.unregister(fd)
        except (KeyError, ValueError):
            pass
        os.close(fd)

    def _dispatch(self, line: OutputLine) -> None:
        if self._sink is not None:
            self._sink.write(line)
        elif self._sinks is not None and len(self._unsent) < 10 * MAX_PENDING:
            self._unsent.append(line)
        if len(self._pending) < MAX_PENDING:
            self._pending.append(line)
        else:
            self._omitted += 1

    def _flush_sink(self) -> None:
        if self._sink is not None:
            self._sink.flush()


class PipeLogHandler(logging.Handler):
    """In the scoring process: each ``logging`` record, formatted, as one JSON line on ``fd``.

    ``Handler.handle`` holds the handler's lock around ``emit``, so records from threads
    never interleave.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (json.dumps([record.levelno, self.format(record)]) + "\n").encode()
            while data:
                data = data[os.write(self.fd, data) :]
        except Exception:  # pragma: no cover - logging must never break scoring
            pass
