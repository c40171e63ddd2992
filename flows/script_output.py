"""Where a scoring script's own output goes: its mini-batch's task run, and files.

Every line a scoring process writes (stdout, stderr, ``logging``; see
:mod:`scoring.capture`) is kept whole in ``<output>/logs/user/stdout/<host>-<pid>.txt`` or
``.../stderr/<host>-<pid>.txt`` (``logging`` records go to the stderr file, with their
level), and is sent to the Prefect task run of the mini-batch it belongs to: stdout at
INFO, stderr at WARNING, records at their own level, through the logger
``prefect.task_runs.script``. A task run gets at most :data:`DEFAULT_LINE_BUDGET` lines
(``PBE_SCRIPT_LOG_LINES``) of at most :data:`MAX_LINE_CHARS` characters each; past that
the lines are counted, and one warning at the end of the attempt says how many were left
out and which files have them.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import IO

from flows.storage import Location
from scoring.capture import LOGGING, OMITTED, STDERR, STDOUT, OutputLine

DEFAULT_LINE_BUDGET = 100
MAX_LINE_CHARS = 2000
SCRIPT_LOGGER = "prefect.task_runs.script"


def line_budget() -> int:
    """Lines of script output sent to a task run: ``$PBE_SCRIPT_LOG_LINES``, else 100."""
    try:
        return max(int(os.environ.get("PBE_SCRIPT_LOG_LINES", DEFAULT_LINE_BUDGET)), 0)
    except ValueError:
        return DEFAULT_LINE_BUDGET


def file_name(process: str) -> str:
    """``host:pid`` (the report's ``process`` column) as the name of its files."""
    return f"{process.replace(':', '-')}.txt"


class ScriptLog:
    """Sends one attempt's script lines to its task run, within the line budget."""

    def __init__(self, run_logger: logging.LoggerAdapter, budget: int) -> None:
        script_logger = logging.getLogger(SCRIPT_LOGGER)
        if script_logger.level != logging.DEBUG:  # setLevel clears every logger's cache
            script_logger.setLevel(logging.DEBUG)  # the deployment's logging_level decides
        self.logger = logging.LoggerAdapter(script_logger, dict(run_logger.extra or {}))
        self.budget = budget
        self.sent = 0
        self.left_out: Counter[str] = Counter()

    def __call__(self, lines: list[OutputLine]) -> None:
        for line in lines:
            if line.stream == OMITTED:
                self.left_out["more"] += int(line.text)
            elif self.sent < self.budget:
                text = line.text
                if len(text) > MAX_LINE_CHARS:
                    text = f"{text[:MAX_LINE_CHARS]} … (+{len(text) - MAX_LINE_CHARS} chars)"
                self.logger.log(line.level, text)
                self.sent += 1
            else:
                self.left_out[STDOUT if line.stream == STDOUT else STDERR] += 1

    def finish(self, process: str, logs: Location | None) -> None:
        """Say how many lines were left out, and where they all are."""
        total = sum(self.left_out.values())
        if not total:
            return
        name = file_name(process)
        where = logs.join("user").display if logs is not None else "logs/user"
        streams = ", ".join(f"{n} {s}" for s, n in sorted(self.left_out.items()))
        self.logger.warning(
            "The script wrote %d more lines (%s) than the %d sent here per mini-batch; "
            "all of them are in %s/stdout/%s and %s/stderr/%s.",
            total,
            streams,
            self.budget,
            where,
            name,
            where,
            name,
        )


@dataclass(frozen=True)
class UserLogFiles:
    """Makes the files of a scoring process under ``<logs>/user/`` (its sink)."""

    logs: Location

    def __call__(self, process: str) -> ProcessFiles:
        return ProcessFiles(self.logs.join("user"), file_name(process))


class ProcessFiles:
    """The stdout and stderr files of one process, appended line by line.

    Local outputs are written in place; a remote output gets them written to a temporary
    folder and uploaded whole when the process ends.
    """

    def __init__(self, root: Location, name: str) -> None:
        self.root = root
        self.name = name
        self._local = None if not root.remote else tempfile.mkdtemp(prefix="pbe-user-logs-")
        self._files: dict[str, IO[bytes]] = {}

    def _path(self, stream: str) -> str:
        base = self._local if self._local is not None else self.root.uri
        return os.path.join(base, stream, self.name)

    def _file(self, stream: str) -> IO[bytes]:
        handle = self._files.get(stream)
        if handle is None:
            path = self._path(stream)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            handle = self._files[stream] = open(path, "ab")  # noqa: SIM115 - kept open
        return handle

    def write(self, line: OutputLine) -> None:
        if line.stream == LOGGING:
            self._file(STDERR).write(
                f"{logging.getLevelName(line.level)} {line.text}\n".encode("utf-8", "replace")
            )
        else:
            self._file(line.stream).write(f"{line.text}\n".encode("utf-8", "replace"))

    def flush(self) -> None:
        for handle in self._files.values():
            handle.flush()

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        streams, self._files = list(self._files), {}
        if self._local is None:
            return
        try:
            for stream in streams:
                target = self.root.join(stream, self.name)
                fs, path = target.filesystem()
                with target.errors():
                    fs.put_file(self._path(stream), path)
        finally:
            shutil.rmtree(self._local, ignore_errors=True)
