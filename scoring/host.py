"""The scoring process: imports the user's script, calls ``init()`` once, then ``run()``.

Started by :class:`scoring.process.ScoringProcess` (``main([_, R, W, L])``) with
two pipe descriptors and the pipe for ``logging`` records (:mod:`scoring.capture`); its
stdout and stderr are pipes the worker reads too. It lives in a process of its own so
that a ``run()`` stuck in native code can be stopped the only reliable way: by ending
the process.

Protocol (pickled tuples over the pipes):

- parent → ``("init", spec)``; child → ``("ready", info)`` or ``("error", failure)``
- parent → ``("run", paths, want_rows)``; child → ``("ok", outcome)`` or ``("error", failure)``
- parent → ``("shutdown",)``; child calls ``shutdown()`` if defined → ``("bye", failure|None)``
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection
from types import ModuleType
from typing import Any

from scoring.azureml_runtime import install_import_hook
from scoring.capture import PipeLogHandler
from scoring.results import (
    BadReturnType,
    MiniBatchOutput,
    count_items,
    format_rows,
    normalise,
)
from scoring.spec import ScoringProcessSpec

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def _capture_output(log_fd: int | None) -> logging.Handler | None:
    """Line-buffer stdout and stderr (pipes read by the worker, see :mod:`scoring.capture`)
    and send ``logging`` records down ``log_fd``."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):  # pragma: no cover - replaced streams
            pass
    return PipeLogHandler(log_fd) if log_fd is not None else None


def _flush_output() -> None:
    """Push out a partial line, so that it precedes the reply the worker waits for."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a script may have closed or replaced them
            pass


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the worker that started it dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class _ScriptIncomplete(AttributeError):
    """The scoring script does not define init() or run()."""


def _load_script(spec: ScoringProcessSpec) -> ModuleType:
    path = spec.script_path
    if not path.is_file():
        raise FileNotFoundError(f"scoring script {path} does not exist")
    code_dir = str(path.parent)
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    name = path.stem
    module_spec = importlib.util.spec_from_file_location(name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    missing = [fn for fn in ("init", "run") if not callable(getattr(module, fn, None))]
    if missing:
        raise _ScriptIncomplete(
            f"scoring script {path} does not define {' and '.join(f'{m}()' for m in missing)}"
        )
    return module


#: what no retry can change: the script does not compile, lacks a module or a function
_PERMANENT = (SyntaxError, ImportError, _ScriptIncomplete)


def _failure(category: str, exc: BaseException) -> dict[str, Any]:
    """A failure to report; ``category`` is a value of ``blocks.errors.ErrorCategory`` (this
    process imports nothing of the project's Prefect side, so it sends the value)."""
    detail = f"{type(exc).__name__}: {exc}"
    failure: dict[str, Any] = {
        "category": category,
        "permanent": isinstance(exc, _PERMANENT),
        "detail": detail,
        "traceback": "".join(traceback.format_exception(exc)),
    }
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        failure["missing_module"] = exc.name
    return failure


def _run_one(module: ModuleType, paths: list[str], want_rows: bool) -> dict[str, Any]:
    started = time.time()
    value = module.run(list(paths))
    result = normalise(value)
    counts = count_items(result, len(paths), paths)
    failed = result.failed if isinstance(result, MiniBatchOutput) else None
    return {
        "returned": counts.returned,
        "failed_items": None if failed is None else sorted(failed.items()),
        "rows": format_rows(result) if want_rows else None,
        "started": started,
        "elapsed": time.time() - started,
    }


def serve(conn_in: Connection, conn_out: Connection, log_fd: int | None = None) -> int:
    """Serve one scoring process until told to shut down or the parent goes away."""
    handler = _capture_output(log_fd)
    root = logging.getLogger()
    if handler is not None:
        root.addHandler(handler)

    try:
        message = conn_in.recv()
    except EOFError:
        return 0
    spec: ScoringProcessSpec = message[1]
    root.setLevel(_LEVELS.get(spec.logging_level, logging.INFO))
    sys.argv = spec.argv()
    install_import_hook()  # a missing azureml.* module: say this project does not provide it
    try:
        module = _load_script(spec)
        module.init()
    except BaseException as exc:  # noqa: BLE001 - everything the script raises is reported
        _flush_output()
        conn_out.send(("error", _failure("init_error", exc)))
        return 1
    _flush_output()
    conn_out.send(("ready", {"pid": os.getpid()}))

    while True:
        try:
            message = conn_in.recv()
        except EOFError:
            return 0
        if message[0] == "shutdown":
            failure = None
            shutdown = getattr(module, "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown()
                except BaseException as exc:  # noqa: BLE001
                    failure = _failure("user_error", exc)
            _flush_output()
            conn_out.send(("bye", failure))
            return 0
        _, paths, want_rows = message
        try:
            outcome = _run_one(module, paths, want_rows)
        except BadReturnType as exc:
            reply = ("error", {**_failure("bad_return", exc), "traceback": ""})
        except BaseException as exc:  # noqa: BLE001
            reply = ("error", _failure("user_error", exc))
        else:
            reply = ("ok", outcome)
        _flush_output()
        conn_out.send(reply)


def main(argv: list[str]) -> int:
    _die_with_parent()
    read_fd, write_fd = int(argv[1]), int(argv[2])
    log_fd = int(argv[3]) if len(argv) > 3 else None
    conn_in = Connection(read_fd, writable=False)
    conn_out = Connection(write_fd, readable=False)
    return serve(conn_in, conn_out, log_fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
