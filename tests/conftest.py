"""Shared fixtures for the management-plane tests: one workspace with its embedded Prefect.

``pbe_workspace`` is a fresh workspace whose embedded Prefect server and process worker
(started by the first ``pbe`` command, as a user's would be) live for the whole session and
are stopped at its end. ``pbe`` runs the CLI against it, in-process (fast) or as a real
``pbe`` process (``pbe.run``).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclass
class PbeResult:
    """What one ``pbe`` command did: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class PbeWorkspace:
    """A workspace folder, the environment that points ``pbe`` at it, and its Prefect API."""

    root: Path
    env: dict[str, str]
    api_url: str


def _subprocess_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_KEY")}
    env["PBE_HOME"] = str(root)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    )
    # the interpreter's own bin folder first: its `pbe`/`prefect`, not a pyenv shim
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    return env


def run_pbe(env: dict[str, str], *args: str, timeout: float = 180) -> PbeResult:
    """``pbe ARGS`` as a separate process (``python -m deployments.cli``)."""
    done = subprocess.run(
        [sys.executable, "-m", "deployments.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO),
    )
    return PbeResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="session")
def pbe_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PbeWorkspace]:
    """A workspace whose embedded Prefect server and worker run for the whole session."""
    root = tmp_path_factory.mktemp("pbe-home")
    env = _subprocess_env(root)
    first = run_pbe(env, "compute", "create", "-n", "tiny-cluster", "--type", "local", timeout=240)
    assert first.code == 0, first.err
    assert "started a local Prefect server" in first.err  # first use starts it, and says so
    state = json.loads((root / "prefect" / "embedded.json").read_text())
    try:
        yield PbeWorkspace(root=root, env=env, api_url=state["server"]["url"])
    finally:
        run_pbe(env, "server", "stop", timeout=120)


class OwnWorkspace:
    """A workspace of a test's own (``root``), with its own embedded server and worker, driven
    by real ``pbe`` processes; ``extra_env`` reaches them (and so the worker's jobs)."""

    def __init__(self, root: Path, **extra_env: str) -> None:
        self.root = root
        self.env = {**_subprocess_env(root), **extra_env}
        self.state_dir = root / "prefect"

    def pbe(self, *args: str) -> PbeResult:
        return run_pbe(self.env, *args, timeout=300)

    def ok(self, *args: str) -> PbeResult:
        result = self.pbe(*args)
        assert result.code == 0, f"pbe {' '.join(args)} failed:\n{result.err}"
        return result

    def state(self) -> dict:
        return json.loads((self.state_dir / "embedded.json").read_text())


class Pbe:
    """Run ``pbe`` against a workspace: ``pbe(...)`` in-process, ``pbe.run(...)`` as a process."""

    def __init__(self, workspace: PbeWorkspace) -> None:
        self.workspace = workspace

    def __call__(self, *args: str) -> PbeResult:
        from deployments.cli import main

        out, err = io.StringIO(), io.StringIO()
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PBE_HOME", str(self.workspace.root))
            patch.delenv("PREFECT_API_URL", raising=False)
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    code = main(list(args))
                except SystemExit as exc:  # main() returns its code; a stray sys.exit() too
                    code = int(exc.code or 0)
        return PbeResult(code, out.getvalue(), err.getvalue())

    def ok(self, *args: str) -> Any:
        """Run in-process, require success, return the parsed JSON output (or None)."""
        result = self(*args)
        assert result.code == 0, f"pbe {' '.join(args)} failed:\n{result.err}"
        return result.json() if result.out.strip() else None

    def run(self, *args: str, timeout: float = 180) -> PbeResult:
        return run_pbe(self.workspace.env, *args, timeout=timeout)


@pytest.fixture(scope="session")
def pbe(pbe_workspace: PbeWorkspace) -> Pbe:
    return Pbe(pbe_workspace)


_TINY_SCRIPT = """
import os

def init():
    global weight
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model", "weights.txt")) as f:
        weight = f.read().strip()

def run(mini_batch):
    return [f"{os.path.basename(path)} {weight}" for path in mini_batch]
"""

_SLEEPY_SCRIPT = """
import time

def init():
    pass

def run(mini_batch):
    time.sleep(60)
    return list(mini_batch)
"""

_FAILING_SCRIPT = """
def init():
    pass

def run(mini_batch):
    raise ValueError("this model cannot score " + mini_batch[0])
"""

_TINY_DEPLOYMENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json
name: tiny-dpl
endpoint_name: tiny-endpoint
type: model
model: azureml:tiny-model@latest
code_configuration:
  code: code
  scoring_script: score.py
compute: azureml:tiny-cluster
resources:
  instance_count: 1
settings:
  max_concurrency_per_instance: 1
  mini_batch_size: 2
  output_file_name: predictions.csv
"""


@dataclass
class TinyProject:
    """A deployment folder with a trivial scoring script, its model, and an input folder."""

    folder: Path
    deployment_yml: Path
    endpoint_yml: Path
    model: Path
    inputs: Path
    count: int


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory: pytest.TempPathFactory, pbe: Pbe) -> TinyProject:
    """A scoring script that echoes file names, registered as model ``tiny-model``.

    The code folder also holds ``sleepy.py`` (run() sleeps a minute) and ``failing.py``
    (run() raises), for deployments made with ``--set code_configuration.scoring_script=``.
    """
    from support import make_model, write_inputs, write_script

    folder = tmp_path_factory.mktemp("tiny-project")
    write_script(folder / "code", _TINY_SCRIPT)
    write_script(folder / "code", _SLEEPY_SCRIPT, name="sleepy.py")
    write_script(folder / "code", _FAILING_SCRIPT, name="failing.py")
    model = make_model(folder / "model-files")
    (folder / "deployment.yml").write_text(_TINY_DEPLOYMENT)
    (folder / "endpoint.yml").write_text("name: tiny-endpoint\nauth_mode: aad_token\n")
    write_inputs(folder / "inputs", 3)
    pbe.ok(
        "model", "create", "--name", "tiny-model", "--type", "custom_model", "--path", str(model)
    )
    return TinyProject(
        folder, folder / "deployment.yml", folder / "endpoint.yml", model, folder / "inputs", 3
    )


@pytest.fixture(scope="session")
def azurite() -> Iterator[Any]:
    """Azurite's blob service on loopback for the session (see tests/azurite_server.py)."""
    from azurite_server import running_azurite

    with running_azurite() as server:
        yield server
