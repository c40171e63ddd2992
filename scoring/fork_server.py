"""A job's fork server: imports the scoring script's libraries once, forks scoring processes.

A fresh scoring process spends seconds importing torch, pandas and the like before its
``init()``; on a small machine two of them doing so at once, beside the job's own start,
delay the first mini-batch of every worker. For a cluster on the flow's own machine the flow
starts one fork server per job: it imports what the script imports from
:data:`FORK_SAFE_LIBRARIES` and forks a scoring process for each worker that asks (the
worker's pipes and the process's output pipes arrive over a Unix socket). The forked process runs
:mod:`scoring.host` exactly as a spawned one does; it leads a process group of its own.

Protocol on a worker's connection (one connection per scoring process):

- worker → ``b"fork"`` with five descriptors: the child's pipe ends (read, write), and
  the write ends of its stdout, stderr and logging pipes (:mod:`scoring.capture`);
- server → ``b"pid N\\n"`` once forked, and ``b"exit C\\n"`` when the process has ended
  (``C`` as ``Popen.returncode``: negative for a signal). The ended process stays
  unreaped (its pid cannot be reused) until the worker closes the connection;
- the connection closing while the process runs (the worker died, or gave up on it) kills
  the process's group. The server ends, killing what is left, when the flow closes its
  lifeline pipe or dies.

Linux only (``os.pidfd_open``, ``os.waitid`` with ``P_PIDFD``); elsewhere, and for
clusters on other machines, workers spawn scoring processes themselves.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import NoReturn

from scoring.children import FORK_REQUEST, OWN_PROCESS_GROUP
from scoring.spec import ScoringProcessSpec

#: Libraries that are safe to import before a fork: they start no threads at import, or
#: stop and restart them around ``fork()`` (OpenBLAS), or defer their device set-up to
#: first use (torch's CUDA); mlflow starts no thread at import (the built-in MLflow scorer
#: imports it at top level). TensorFlow is not among them: its scoring processes import it
#: themselves, after the fork.
FORK_SAFE_LIBRARIES = frozenset(
    {"numpy", "pandas", "PIL", "scipy", "sklearn", "torch", "torchvision", "mlflow"}
)


def available() -> bool:
    """Whether this platform can run a fork server (Linux 5.4+: process descriptors)."""
    if not sys.platform.startswith("linux") or not hasattr(os, "pidfd_open"):
        return False
    try:
        pidfd = os.pidfd_open(os.getpid())
    except OSError:  # an older kernel, or a sandbox without pidfd_open
        return False
    try:  # waiting through a pidfd: our own pid is not our child (ECHILD) where supported
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
    except ChildProcessError:
        return True
    except OSError:
        return False
    finally:
        os.close(pidfd)
    return True


def enabled() -> bool:
    """Whether jobs should use one: available, and ``PBE_FORK_SERVER`` is not ``0``."""
    switched_off = os.environ.get("PBE_FORK_SERVER", "1").lower() in ("0", "false", "no")
    return not switched_off and available()


def preload_candidates(script: Path) -> list[str]:
    """The modules the script imports at top level that are safe to import before a fork.

    ``from PIL import Image`` yields ``PIL`` and ``PIL.Image`` (a name that is not a
    module is skipped at import). A script that cannot be parsed preloads nothing: its
    error is the scoring process's to report.
    """
    try:
        tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
    except (OSError, SyntaxError, ValueError):
        return []
    names: list[str] = []
    for node in _top_level(tree.body):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*"]
    wanted = [name for name in names if name.split(".")[0] in FORK_SAFE_LIBRARIES]
    return list(dict.fromkeys(wanted))


def _top_level(body: list[ast.stmt]):
    """Statements run at import: the module body and its ``try``/``if`` blocks."""
    for node in body:
        yield node
        if isinstance(node, ast.Try):
            yield from _top_level(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                yield from _top_level(handler.body)
        elif isinstance(node, ast.If):
            yield from _top_level(node.body + node.orelse)


class ForkServer:
    """The flow's handle on one job's fork server."""

    def __init__(self, spec: ScoringProcessSpec, environment: dict[str, str]) -> None:
        """Start the server; it listens at once (workers' requests queue while it imports)."""
        self._directory = tempfile.mkdtemp(prefix="pbe-fork-")
        self.address = os.path.join(self._directory, "socket")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lifeline_read, self._lifeline = os.pipe()
        package_root = str(Path(__file__).resolve().parents[1])
        bootstrap = (
            f"import sys; sys.path.append({package_root!r}); "
            "from scoring.fork_server import main; sys.exit(main(sys.argv))"
        )
        try:
            listener.bind(self.address)
            listener.listen(128)
            argv = [sys.executable, "-c", bootstrap, str(listener.fileno()), str(lifeline_read)]
            self._proc = subprocess.Popen(
                argv + preload_candidates(spec.script_path),
                pass_fds=(listener.fileno(), lifeline_read),
                env=environment,
                cwd=spec.code_dir,
                stdin=subprocess.DEVNULL,
                **OWN_PROCESS_GROUP,  # a Ctrl-C reaches the flow, which stops the server
            )
        except BaseException:
            os.close(self._lifeline)
            self._remove_socket()
            raise
        finally:
            listener.close()
            os.close(lifeline_read)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def stop(self, *, grace: float = 10.0) -> None:
        """End the server; it kills any scoring process it forked that is still running."""
        with contextlib.suppress(OSError):
            os.close(self._lifeline)
        try:
            self._proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._remove_socket()

    def _remove_socket(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.address)
        with contextlib.suppress(OSError):
            os.rmdir(self._directory)


# --- the fork server process -------------------------------------------------------------


class _Server:
    """The server's loop: accept fork requests, fork, report exits, clean up."""

    def __init__(self, listener: int, lifeline: int) -> None:
        self.selector = selectors.DefaultSelector()
        self.listener = socket.socket(fileno=listener)
        self.lifeline = lifeline
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(lifeline, selectors.EVENT_READ, "lifeline")
        self.children: dict[socket.socket, tuple[int, int]] = {}  # conn -> (pid, pidfd)

    def serve(self) -> int:
        while True:
            for key, _ in self.selector.select():
                kind = key.data
                if self.selector.get_map().get(key.fd) is not key:
                    continue  # released earlier in this round (a hang-up and an exit at once)
                if kind == "lifeline":
                    self.close()
                    return 0
                if kind == "accept":
                    conn, _ = self.listener.accept()
                    self.selector.register(conn, selectors.EVENT_READ, "request")
                elif kind == "request":
                    self._on_request(key.fileobj)
                else:  # ("ended", conn): the process behind conn has exited
                    self._on_ended(kind[1])

    def _on_request(self, conn: socket.socket) -> None:
        try:
            message, fds, _, _ = socket.recv_fds(conn, 16, 5)
        except OSError:
            message, fds = b"", []
        if conn in self.children:  # the worker closed its connection, or said more
            for fd in fds:
                os.close(fd)
            self._release(conn)
            return
        if message != FORK_REQUEST or len(fds) != 5:
            for fd in fds:
                os.close(fd)
            self.selector.unregister(conn)
            conn.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._become_scoring_process(fds)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        self.children[conn] = (pid, pidfd)
        self.selector.register(pidfd, selectors.EVENT_READ, ("ended", conn))
        with contextlib.suppress(OSError):
            conn.sendall(b"pid %d\n" % pid)

    def _on_ended(self, conn: socket.socket) -> None:
        pid, pidfd = self.children[conn]
        self.selector.unregister(pidfd)
        status = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT)
        if status is None:
            return
        code = status.si_status if status.si_code == os.CLD_EXITED else -status.si_status
        with contextlib.suppress(OSError):
            conn.sendall(b"exit %d\n" % code)

    def _release(self, conn: socket.socket) -> None:
        """The worker let go of a process: kill its group if it still runs, and reap it."""
        pid, pidfd = self.children.pop(conn)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(pidfd)
        os.close(pidfd)
        self.selector.unregister(conn)
        conn.close()

    def close(self) -> None:
        for conn in list(self.children):
            self._release(conn)
        self.selector.close()
        self.listener.close()

    def _become_scoring_process(self, fds: list[int]) -> None:
        """In the forked child: drop the server's state, then run :mod:`scoring.host`."""
        code = 1
        try:
            os.setpgid(0, 0)
            for conn, (_, pidfd) in self.children.items():
                os.close(pidfd)
                conn.close()
            for key in list(self.selector.get_map().values()):
                if isinstance(key.fileobj, socket.socket):
                    key.fileobj.close()
            self.selector.close()
            self.listener.close()
            os.close(self.lifeline)
            child_read, child_write, stdout, stderr, logs = fds
            os.dup2(stdout, 1)
            os.dup2(stderr, 2)
            os.close(stdout)
            os.close(stderr)
            _reseed()
            from scoring.host import main

            code = main(["scoring-process", str(child_read), str(child_write), str(logs)])
        except BaseException:  # noqa: BLE001 - the child must never return into the server
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


def _reseed() -> None:
    """Give the forked process its own random state, as a fresh interpreter would have."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    # ``random`` reseeds itself after fork; torch seeds every process alike by design.


def _preload(modules: list[str]) -> None:
    import scoring.host  # noqa: F401 - what every scoring process runs

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - not a module, or broken: the child imports it
            continue


def main(argv: list[str]) -> NoReturn:
    """``main([_, listener_fd, lifeline_fd, *modules])``: preload, then serve until told.

    The flow bound the socket already, so requests that arrive while this imports wait.
    """
    server = _Server(int(argv[1]), int(argv[2]))
    _preload(argv[3:])
    code = server.serve()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter clean-up: with torch imported it takes about a second
