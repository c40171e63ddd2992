"""PostgreSQL and Redis on loopback, and a Prefect server that uses them (docs/production.md).

The production setup for users who outgrow the embedded server (SQLite and an in-memory
event broker): PostgreSQL holds Prefect's database, Redis carries its events (the
``prefect-redis`` package). :class:`LocalServices` starts both from the Debian packages
(``scripts/install_services.sh``) in a throw-away folder, for the tests and benchmarks that
exercise this setup; :func:`prefect_server_env` is what a real installation sets, whoever
runs the services. Prefect is not imported here.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from blocks.errors import BatchEndpointError


def prefect_server_env(database_url: str, redis_host: str, redis_port: int) -> dict[str, str]:
    """The Prefect server settings for a PostgreSQL database and Redis messaging."""
    redis_url = f"redis://{redis_host}:{redis_port}/0"
    return {
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_HOST": redis_host,
        "PREFECT_REDIS_MESSAGING_PORT": str(redis_port),
        "PREFECT_SERVER_DOCKET_URL": redis_url,
        # a busy server (a large job's events, on a shared machine) needs more connections
        # and more patience than the defaults (pool 5 + 10, connect within 5 s, query 10 s):
        # with them its API answered 500 (connection timeouts) during a 100,000-task job
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "20",
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": "20",
        "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "30",
        "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise BatchEndpointError(
            f"PostgreSQL's {name} is not installed",
            hint="run scripts/install_services.sh (apt-get install postgresql redis-server)",
        )
    return found


def _wait_for_port(port: int, process: subprocess.Popen | None, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.2)
    raise BatchEndpointError(f"{what} did not start on 127.0.0.1:{port} within {timeout:.0f} s")


class LocalServices:
    """A PostgreSQL cluster and a Redis server on loopback, in a temporary folder.

    As root, PostgreSQL runs as the ``postgres`` user (it refuses root). Nothing is
    persisted: :meth:`stop` ends both and removes the folder.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pbe-services-"))
        self.pg_port = _free_port()
        self.redis_port = _free_port()
        self._redis: subprocess.Popen | None = None
        self._pg_started = False

    @property
    def database_url(self) -> str:
        return f"postgresql+asyncpg://prefect@127.0.0.1:{self.pg_port}/prefect"

    def prefect_env(self) -> dict[str, str]:
        return prefect_server_env(self.database_url, "127.0.0.1", self.redis_port)

    def _as_postgres(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def start(self) -> LocalServices:
        data = self.root / "pg"
        data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(data, "postgres")
        run = {"check": True, "capture_output": True, "cwd": "/"}
        subprocess.run(
            self._as_postgres(
                [
                    _postgres_bin("initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "prefect",
                    "-A",
                    "trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ]
            ),
            **run,
        )
        subprocess.run(
            self._as_postgres(
                [
                    _postgres_bin("pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(self.root / "pg.log"),
                    "-w",
                    "-o",
                    f"-p {self.pg_port} -k {self.root} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off -c max_connections=200",
                    "start",
                ]
            ),
            **run,
        )
        self._pg_started = True
        subprocess.run(
            self._as_postgres(
                [
                    _postgres_bin("createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.pg_port),
                    "-U",
                    "prefect",
                    "prefect",
                ]
            ),
            **run,
        )
        redis = shutil.which("redis-server")
        if redis is None:
            raise BatchEndpointError(
                "redis-server is not installed", hint="run scripts/install_services.sh"
            )
        self._redis = subprocess.Popen(
            [
                redis,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        _wait_for_port(self.redis_port, self._redis, 30, "redis-server")
        return self

    def stop(self) -> None:
        if self._redis is not None:
            self._redis.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._redis.wait(10)
            if self._redis.poll() is None:
                self._redis.kill()
            self._redis = None
        if self._pg_started:
            subprocess.run(
                self._as_postgres(
                    [
                        _postgres_bin("pg_ctl"),
                        "-D",
                        str(self.root / "pg"),
                        "-m",
                        "fast",
                        "-w",
                        "stop",
                    ]
                ),
                capture_output=True,
                cwd="/",
            )
            self._pg_started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalServices:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_prefect_server(env: dict[str, str], home: Path, timeout: float = 180.0):
    """``prefect server start`` on a free loopback port with ``env`` added; (process, API URL).

    The caller ends the process (``terminate()``); its output goes to ``home/server.log``.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    full = {
        **os.environ,
        **env,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    full.pop("PREFECT_API_URL", None)
    with open(home / "server.log", "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(urllib.error.URLError, OSError):
            with urllib.request.urlopen(f"{url}/health", timeout=1.0) as response:
                if response.status == 200:
                    return process, url
        time.sleep(0.5)
    process.terminate()
    raise BatchEndpointError(
        f"the Prefect server did not start within {timeout:.0f} s; see {home / 'server.log'}"
    )
