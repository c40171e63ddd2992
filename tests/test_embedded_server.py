"""The embedded server and worker as one supervised unit, under faults, with real processes.

After each fault — the server suspended past the health timeout, the server killed, the
worker killed, a corrupt state file, two commands racing to start the server — the next
``pbe`` command repairs what it finds, never leaves a second server on the database, and a
job invoked next completes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import psutil
import pytest
from conftest import _TINY_DEPLOYMENT, _TINY_SCRIPT, OwnWorkspace
from support import make_model, write_inputs, write_script

from deployments.embedded_state import find_processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


class FaultWorkspace(OwnWorkspace):
    """A workspace with the tiny endpoint ``faults`` deployed, and its server processes."""

    def servers(self) -> list[psutil.Process]:
        return find_processes("server", self.state_dir)

    def job_completes(self) -> None:
        done = self.ok("batch-endpoint", "invoke", "--name", "faults", "--input",
                       str(self.root.parent / "inputs"), "--wait")  # fmt: skip
        assert json.loads(done.out)["status"] == "Completed"
        status = json.loads(self.ok("server", "status").out)
        assert status["running"] is True, status["problems"]
        assert len(self.servers()) == 1  # never a second server on the database


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("faults")
    write_script(root / "project" / "code", _TINY_SCRIPT)
    (root / "project" / "deployment.yml").write_text(_TINY_DEPLOYMENT)
    write_inputs(root / "inputs", 2)
    space = FaultWorkspace(root / "home")
    space.ok("model", "create", "--name", "tiny-model", "--type", "custom_model",
             "--path", str(make_model(root / "model-files")))  # fmt: skip
    space.ok("compute", "create", "-n", "tiny-cluster", "--type", "local")
    space.ok("batch-endpoint", "create", "--name", "faults")
    space.ok("batch-deployment", "create", "--file", str(root / "project" / "deployment.yml"),
             "--endpoint-name", "faults", "--set-default")  # fmt: skip
    yield space
    space.pbe("server", "stop")
    assert space.servers() == [] and find_processes("worker", space.state_dir) == []


def test_a_suspended_server_is_waited_for_not_replaced(workspace):
    before = workspace.state()
    os.kill(before["server"]["pid"], signal.SIGSTOP)
    resume = threading.Timer(6.0, os.kill, (before["server"]["pid"], signal.SIGCONT))
    resume.start()  # longer than the 2 s health check
    try:
        result = workspace.ok("compute", "list")
    finally:
        resume.join()
    assert "is suspended (SIGSTOP); waiting" in result.err
    assert workspace.state() == before  # the same server and worker
    workspace.job_completes()


def test_a_killed_server_is_replaced_with_its_worker(workspace):
    before = workspace.state()
    os.kill(before["server"]["pid"], signal.SIGKILL)
    result = workspace.ok("compute", "list")
    assert "started a local Prefect server" in result.err
    after = workspace.state()
    assert after["server"]["pid"] != before["server"]["pid"]
    assert after["worker"]["pid"] != before["worker"]["pid"]  # the old one polled a dead URL
    assert after["worker"]["url"] == after["server"]["url"]
    assert not psutil.pid_exists(before["worker"]["pid"])
    workspace.job_completes()


def test_a_killed_worker_is_replaced(workspace):
    before = workspace.state()
    os.kill(before["worker"]["pid"], signal.SIGKILL)
    status = json.loads(workspace.ok("server", "status").out)
    assert status["running"] is False and "the worker is not running" in status["problems"]
    workspace.ok("compute", "list")
    after = workspace.state()
    assert after["server"] == before["server"] and after["worker"]["pid"] != before["worker"]["pid"]
    workspace.job_completes()


def test_a_corrupt_state_file_is_repaired_without_a_second_server(workspace):
    before = workspace.state()
    (workspace.state_dir / "embedded.json").write_text('{"server": {"pid": ')
    result = workspace.ok("compute", "list")
    assert "is not a state file" in result.err and "recovering" in result.err
    after = workspace.state()
    assert after["server"]["pid"] == before["server"]["pid"]  # adopted, not replaced
    assert [p.pid for p in find_processes("worker", workspace.state_dir)] == [
        after["worker"]["pid"]
    ]
    workspace.job_completes()


def test_two_commands_racing_start_one_server(workspace):
    workspace.ok("server", "stop")
    assert workspace.servers() == []
    racers = [
        subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", "compute", "list"],
            env=workspace.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [racer.communicate(timeout=300) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], results
    assert sum("started a local Prefect server" in err for _, err in results) == 1
    assert len(workspace.servers()) == 1
    workspace.job_completes()
