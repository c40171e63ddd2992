"""Shared set-up for the benchmarks: an isolated Prefect API, scripts and inputs on tmp."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

NOOP_SCRIPT = """
def init():
    pass


def run(mini_batch):
    return mini_batch
"""


@contextlib.contextmanager
def isolated_prefect() -> Iterator[None]:
    """A throw-away Prefect API (the test harness: a local server on SQLite).

    Its server runs at the priority and with the settings pbe gives its embedded server
    (``PBE_SERVER_NICENESS``, default 10; set it to 0 to measure it at normal priority).
    """
    with tempfile.TemporaryDirectory(prefix="pbe-bench-prefect-") as home:
        os.environ["PREFECT_HOME"] = home
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        from deployments.server import SERVER_TUNING  # what pbe's embedded server runs with

        for name, value in SERVER_TUNING.items():
            os.environ.setdefault(name, value)
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=180):
            _lower_server_priority()
            yield


def settle(max_wait: float = 300.0) -> float:
    """Wait until this process's children (the API server above all) are idle; seconds waited.

    A job leaves the server events to record after it ends (more so at low priority);
    each measurement starts from a quiet machine so it does not pay for the previous one.
    """
    import time

    import psutil

    started = time.monotonic()
    while time.monotonic() - started < max_wait:
        children = psutil.Process().children(recursive=True)
        busy = 0.0
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.cpu_percent(None)
        time.sleep(1.0)
        for child in children:
            with contextlib.suppress(psutil.Error):
                busy += child.cpu_percent(None)
        if busy < 10.0:
            break
    return time.monotonic() - started


def _lower_server_priority() -> None:
    import psutil

    from deployments.server import lower_priority

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "prefect.server" in " ".join(child.cmdline()):
                lower_priority(child.pid)


def write_files(folder: Path, count: int, content: bytes = b"x") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        (folder / f"f{number:07d}.txt").write_bytes(content)
    return folder


def deployment_spec(code: Path, script: str, model: Path, **settings):
    from blocks.spec_loading import parse_deployment

    return parse_deployment(
        {
            "name": "bench-dpl",
            "endpoint_name": "bench-endpoint",
            "type": "model",
            "model": {"name": "bench-model", "path": str(model)},
            "code_configuration": {"code": str(code), "scoring_script": script},
            "compute": "azureml:local",
            "settings": settings,
        },
        source="benchmark",
    )


def noop_deployment(root: Path, **settings):
    code = root / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "score.py").write_text(textwrap.dedent(NOOP_SCRIPT))
    model = root / "model"
    model.mkdir(exist_ok=True)
    (model / "weights.txt").write_text("0\n")
    return deployment_spec(code, "score.py", model, **settings)


def machine() -> str:
    return (
        f"{datetime.now(timezone.utc):%Y-%m-%d} · {platform.machine()} · "
        f"{os.cpu_count()} cores · Python {platform.python_version()}"
    )


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def result_line(**values: float | int | str) -> str:
    parts = []
    for key, value in values.items():
        parts.append(f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}")
    return "RESULT " + " ".join(parts)
