"""The scoring-script contract in a real scoring process: no Prefect, no Dask.

Every test runs twice: with the process spawned by its worker, and forked by a job's fork
server (:mod:`scoring.fork_server`); the contract is the same.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from support import make_model, process_ended, write_script

from blocks.errors import ErrorCategory
from scoring.fork_server import ForkServer, available
from scoring.pool import ScoringProcessPool
from scoring.process import ScoringFailure, ScoringProcess
from scoring.spec import ScoringProcessSpec

pytestmark = pytest.mark.timeout(120)

PROBE = """
    import glob, json, os, sys
    import pandas as pd

    def init():
        global state
        state = {
            "pid": os.getpid(),
            "model_dir": os.environ["AZUREML_MODEL_DIR"],
            "found": sorted(glob.glob(os.environ["AZUREML_MODEL_DIR"] + "/*/*.txt")),
            "joined": os.path.isdir(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model")),
            "output": os.environ["AZUREML_BI_OUTPUT_PATH"],
            "custom": os.environ.get("MY_SETTING"),
            "argv": sys.argv,
        }
        with open(os.environ["PROBE_LOG"], "a") as log:
            log.write(json.dumps(state) + "\\n")

    def run(mini_batch):
        names = [os.path.basename(p) for p in mini_batch]
        return pd.DataFrame({"file": names, "pid": state["pid"]})
"""


class Origin:
    """Where a test's scoring processes come from: spawned, or a fork server per spec."""

    def __init__(self, forked: bool) -> None:
        self.forked = forked
        self.servers: dict[str, ForkServer] = {}

    def server(self, spec: ScoringProcessSpec) -> str | None:
        if not self.forked:
            return None
        if spec.key not in self.servers:
            self.servers[spec.key] = ForkServer(spec, spec.environment())
        return self.servers[spec.key].address

    def process(self, spec: ScoringProcessSpec) -> ScoringProcess:
        return ScoringProcess(spec, self.server(spec))


NO_FORK_SERVER = pytest.mark.skipif(not available(), reason="no fork server on this platform")


@pytest.fixture(params=["spawned", pytest.param("forked", marks=NO_FORK_SERVER)])
def origin(request):
    origin = Origin(forked=request.param == "forked")
    yield origin
    for server in origin.servers.values():
        server.stop()


def spec_for(tmp_path: Path, code: Path, **overrides) -> ScoringProcessSpec:
    model = make_model(tmp_path / "registered")
    values = dict(
        code_dir=str(code),
        scoring_script="score.py",
        model_dir=str(model.parent),
        output_dir=str(tmp_path / "out"),
        job="job-1",
        environment_variables={"MY_SETTING": "on", "PROBE_LOG": str(tmp_path / "init.log")},
        logging_level="debug",
    )
    values.update(overrides)
    return ScoringProcessSpec(**values)


def init_log(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "init.log").read_text().splitlines()]


def test_environment_and_argv_are_set_before_init(tmp_path, origin):
    spec = spec_for(tmp_path, write_script(tmp_path / "code", PROBE))
    process = origin.process(spec)
    process.start()
    try:
        outcome = process.run(["/data/a.png", "/data/b.png"], timeout=30, want_rows=True)
    finally:
        process.kill()
    [state] = init_log(tmp_path)
    assert state["model_dir"] == str(tmp_path / "registered")
    assert state["found"] == [str(tmp_path / "registered" / "model" / "weights.txt")]
    assert state["joined"] is True
    assert state["output"] == str(tmp_path / "out")
    assert state["custom"] == "on"
    assert state["argv"][1:] == ["--logging_level", "debug"]
    assert outcome.returned == 2
    assert outcome.rows == f"a.png {state['pid']}\nb.png {state['pid']}\n".encode()


def score_mini_batches(
    pool: ScoringProcessPool, spec: ScoringProcessSpec, count: int, fork_server: str | None
) -> None:
    """Borrow a process for each of ``count`` one-file mini-batches, then close the pool."""
    for number in range(count):
        with pool.borrow(spec, fork_server) as process:
            process.run([f"/data/{number}.png"], timeout=30, want_rows=False)
    pool.close_all()


def test_init_runs_once_per_process_not_per_mini_batch(tmp_path, origin):
    spec = spec_for(tmp_path, write_script(tmp_path / "code", PROBE))
    score_mini_batches(ScoringProcessPool(), spec, 5, origin.server(spec))
    assert len(init_log(tmp_path)) == 1


def test_two_deployments_with_the_same_script_name_do_not_clash(tmp_path, origin):
    first = write_script(
        tmp_path / "a",
        "def init(): pass\ndef run(mb): return ['A'] * len(mb)\n",
        name="batch_driver.py",
    )
    second = write_script(
        tmp_path / "b",
        "def init(): pass\ndef run(mb): return ['B'] * len(mb)\n",
        name="batch_driver.py",
    )
    pool = ScoringProcessPool()
    specs = [
        spec_for(tmp_path, code, scoring_script="batch_driver.py", deployment=code.name)
        for code in (first, second, first)
    ]
    rows = []
    for spec in specs:
        with pool.borrow(spec, origin.server(spec)) as process:
            rows.append(process.run(["x"], timeout=30, want_rows=True).rows)
    pool.close_all()
    assert rows == [b"A\n", b"B\n", b"A\n"]


def test_script_folder_is_importable(tmp_path, origin):
    code = tmp_path / "code"
    write_script(code, "class MnistClassifier:\n    label = 'helper'\n", name="mnist_classifier.py")
    write_script(
        code,
        """
        from mnist_classifier import MnistClassifier
        def init(): pass
        def run(mini_batch): return [MnistClassifier.label for _ in mini_batch]
    """,
    )
    process = origin.process(spec_for(tmp_path, code))
    process.start()
    try:
        assert process.run(["x"], timeout=30, want_rows=True).rows == b"helper\n"
    finally:
        process.kill()


@pytest.mark.parametrize(
    "body",
    [
        "import time\ndef init(): pass\ndef run(mb):\n    while True: time.sleep(0.01)\n",
        "import ctypes\ndef init(): pass\ndef run(mb):\n    ctypes.CDLL(None).sleep(3600)\n",
    ],
    ids=["python-hang", "native-hang"],
)
def test_a_hung_run_is_stopped_by_killing_its_process(tmp_path, body, origin):
    process = origin.process(spec_for(tmp_path, write_script(tmp_path / "code", body)))
    process.start()
    pid = process.pid
    started = time.monotonic()
    with pytest.raises(ScoringFailure) as info:
        process.run(["x"], timeout=1.5, want_rows=True)
    assert time.monotonic() - started < 10
    assert info.value.category == "timeout"
    assert not process.alive
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_killed_process_takes_its_children_and_shares_the_workers_session(tmp_path, origin):
    """It leads its own process group, so a kill ends what the script started too; it stays
    in the worker's session, so Linux schedules it with the job (autogroup), not beside it."""
    body = (
        "import subprocess\ndef init(): pass\n"
        "def run(mb):\n    return [str(subprocess.Popen(['sleep', '600']).pid)]\n"
    )
    process = origin.process(spec_for(tmp_path, write_script(tmp_path / "code", body)))
    process.start()
    try:
        assert os.getpgid(process.pid) == process.pid
        if sys.version_info >= (3, 11):  # 3.10's Popen cannot make a group without a session
            assert os.getsid(process.pid) == os.getsid(0)
        child = int(process.run(["x"], timeout=30, want_rows=True).rows)
    finally:
        process.kill()
    assert process_ended(child)


def test_a_killed_process_is_reported_with_its_signal(tmp_path, origin):
    body = (
        "import os, signal\ndef init(): pass\ndef run(mb): os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    process = origin.process(spec_for(tmp_path, write_script(tmp_path / "code", body)))
    process.start()
    with pytest.raises(ScoringFailure) as info:
        process.run(["x"], timeout=30, want_rows=True)
    assert info.value.category == "process_died"
    assert signal.Signals.SIGKILL.name in info.value.detail


def test_a_raising_run_reports_the_traceback_and_keeps_the_process(tmp_path, origin):
    body = "def init(): pass\ndef run(mb):\n    raise ValueError(f'cannot read {mb[0]}')\n"
    pool = ScoringProcessPool()
    spec = spec_for(tmp_path, write_script(tmp_path / "code", body))
    with pytest.raises(ScoringFailure) as info:
        with pool.borrow(spec, origin.server(spec)) as process:
            pid = process.pid
            process.run(["bad.png"], timeout=30, want_rows=True)
    assert info.value.category == "user_error"
    assert "ValueError: cannot read bad.png" in info.value.traceback
    with pool.borrow(spec, origin.server(spec)) as process:
        assert process.pid == pid
    pool.close_all()


def test_a_wrong_return_type_names_the_type(tmp_path, origin):
    body = "def init(): pass\ndef run(mb): return {'rows': mb}\n"
    process = origin.process(spec_for(tmp_path, write_script(tmp_path / "code", body)))
    process.start()
    try:
        with pytest.raises(ScoringFailure) as info:
            process.run(["x"], timeout=30, want_rows=True)
    finally:
        process.kill()
    assert info.value.category == "bad_return"
    assert "builtins.dict" in info.value.detail


def test_missing_module_at_init_is_named(tmp_path, origin):
    body = "import not_installed_anywhere\ndef init(): pass\ndef run(mb): return mb\n"
    process = origin.process(spec_for(tmp_path, write_script(tmp_path / "code", body)))
    with pytest.raises(ScoringFailure) as info:
        process.start()
    assert info.value.category == "init_error"
    assert info.value.missing_module == "not_installed_anywhere"
    assert info.value.process == process.label  # host:pid, as the report names it


def test_script_without_run_is_refused(tmp_path, origin):
    code = write_script(tmp_path / "code", "def init(): pass\n")
    process = origin.process(spec_for(tmp_path, code))
    with pytest.raises(ScoringFailure, match=r"does not define run\(\)"):
        process.start()


def test_shutdown_is_called_when_the_job_closes(tmp_path, origin):
    marker = tmp_path / "shutdown.txt"
    body = f"""
        def init(): pass
        def run(mb): return mb
        def shutdown():
            open({str(marker)!r}, "w").write("done")
    """
    pool = ScoringProcessPool()
    spec = spec_for(tmp_path, write_script(tmp_path / "code", body))
    with pool.borrow(spec, origin.server(spec)) as process:
        process.run(["x"], timeout=30, want_rows=False)
    assert pool.close_job("job-1") == []
    assert marker.read_text() == "done"


def test_a_prepared_process_is_the_one_lent_and_init_runs_once(tmp_path, origin):
    spec = spec_for(tmp_path, write_script(tmp_path / "code", PROBE))
    pool = ScoringProcessPool()
    assert pool.prepare(spec, 1, origin.server(spec)) == 1
    assert pool.prepare(spec, 1, origin.server(spec)) == 0  # already starting: none to launch
    score_mini_batches(pool, spec, 3, origin.server(spec))
    assert len(init_log(tmp_path)) == 1


def test_a_prepared_process_that_fails_init_fails_its_first_mini_batch(tmp_path, origin):
    body = "import not_installed_anywhere\ndef init(): pass\ndef run(mb): return mb\n"
    pool = ScoringProcessPool()
    spec = spec_for(tmp_path, write_script(tmp_path / "code", body))
    pool.prepare(spec, 1, origin.server(spec))
    with pytest.raises(ScoringFailure) as info, pool.borrow(spec, origin.server(spec)):
        pass
    assert info.value.missing_module == "not_installed_anywhere"


def test_a_prepared_process_whose_init_failed_before_it_was_borrowed_reports_that_failure(
    tmp_path, origin
):
    """Its failure is the one reported; no second process runs init() again behind it."""
    marker = tmp_path / "inits.txt"
    body = f"""
def init():
    open({str(marker)!r}, "a").write("init\\n")
    raise RuntimeError("cannot load the model")
def run(mb): return mb
"""
    pool = ScoringProcessPool()
    spec = spec_for(tmp_path, write_script(tmp_path / "code", body))
    pool.prepare(spec, 1, origin.server(spec))
    [prepared] = [p for procs in pool._idle.values() for p in procs]
    deadline = time.monotonic() + 60
    while prepared.alive and time.monotonic() < deadline:  # its init() fails, it ends
        time.sleep(0.05)
    with pytest.raises(ScoringFailure) as info, pool.borrow(spec, origin.server(spec)):
        pass
    assert info.value.category == ErrorCategory.INIT_ERROR
    assert "cannot load the model" in info.value.detail
    assert info.value.process == prepared.label
    assert marker.read_text().splitlines() == ["init"]


def test_closing_a_job_ends_prepared_processes_nobody_used(tmp_path, origin):
    pool = ScoringProcessPool()
    spec = spec_for(tmp_path, write_script(tmp_path / "code", PROBE))
    pool.prepare(spec, 2, origin.server(spec))
    processes = [p for procs in pool._idle.values() for p in procs]
    assert pool.close_job("job-1") == []
    assert not any(p.alive for p in processes)
