"""A scoring script's own output: captured per process, line by line, kept whole in files,
and sent to its mini-batch's run within a budget. Real scoring processes, no Prefect."""

from __future__ import annotations

import logging

import pytest
from support import make_model, write_script

from flows.script_output import ScriptLog, UserLogFiles
from flows.storage import Location
from scoring.capture import LOGGING, OMITTED, STDERR, STDOUT
from scoring.fork_server import ForkServer
from scoring.fork_server import available as fork_server_available
from scoring.process import ScoringFailure, ScoringProcess
from scoring.spec import ScoringProcessSpec

SCRIPT = """
import logging, os, sys, time

def init():
    print("init: ready")
    logging.getLogger("model").warning("init: a warning")

def run(mini_batch):
    print("scoring", len(mini_batch))
    print("to stderr", file=sys.stderr)
    os.write(1, b"from native code\\n")
    logging.getLogger("model").info("two\\nlines")
    if mini_batch[0].endswith("hang"):
        print("before the hang")
        print("partial line", end="")
        time.sleep(60)
    if mini_batch[0].endswith("chatty"):
        for number in range(250):
            print("line", number)
    return list(mini_batch)

def shutdown():
    print("shutdown: bye")
"""


@pytest.fixture
def spec(tmp_path):
    code = write_script(tmp_path / "code", SCRIPT)
    return ScoringProcessSpec(
        code_dir=str(code),
        scoring_script="score.py",
        model_dir=str(make_model(tmp_path / "model").parent),
        output_dir=str(tmp_path / "out"),
        logging_level="info",
    )


def texts(lines, stream=None):
    return [line.text for line in lines if stream is None or line.stream == stream]


def test_stdout_stderr_native_writes_and_records_are_captured_in_order(spec, tmp_path):
    logs = Location(str(tmp_path / "logs"))
    process = ScoringProcess(spec, sinks=UserLogFiles(logs))
    process.start()
    try:
        init = process.take_init_logs()
        assert texts(init, STDOUT) == ["init: ready"]
        [record] = [line for line in init if line.stream == LOGGING]
        assert (record.level, record.text) == (logging.WARNING, "model: init: a warning")
        outcome = process.run(["a", "b"], timeout=30, want_rows=False)
        assert texts(outcome.logs, STDOUT) == ["scoring 2", "from native code"]
        assert [(x.level, x.text) for x in outcome.logs if x.stream == STDERR] == [
            (logging.WARNING, "to stderr")
        ]
        assert [(x.level, x.text) for x in outcome.logs if x.stream == LOGGING] == [
            (logging.INFO, "model: two\nlines")
        ]  # one record, however many lines
        name = process.name
    finally:
        process.stop()
    stdout = (tmp_path / "logs" / "user" / "stdout" / f"{name}.txt").read_text()
    stderr = (tmp_path / "logs" / "user" / "stderr" / f"{name}.txt").read_text()
    assert stdout.splitlines() == ["init: ready", "scoring 2", "from native code", "shutdown: bye"]
    assert "WARNING model: init: a warning" in stderr and "to stderr" in stderr
    assert "INFO model: two\nlines" in stderr


def test_a_process_killed_by_a_timeout_loses_nothing_it_wrote(spec, tmp_path):
    process = ScoringProcess(spec, sinks=UserLogFiles(Location(str(tmp_path / "logs"))))
    process.start()
    name = process.name
    with pytest.raises(ScoringFailure) as failed:
        process.run(["x.hang"], timeout=3, want_rows=False)
    assert failed.value.category == "timeout"
    assert texts(failed.value.logs, STDOUT)[-2:] == ["before the hang", "partial line"]
    stdout = (tmp_path / "logs" / "user" / "stdout" / f"{name}.txt").read_text()
    assert stdout.endswith("before the hang\npartial line\n")


def test_lines_arrive_while_run_is_under_way(spec):
    process = ScoringProcess(spec)
    process.start()
    seen = []
    try:
        with pytest.raises(ScoringFailure):
            process.run(["x.hang"], timeout=3, want_rows=False, on_output=seen.extend)
    finally:
        process.kill()
    assert "before the hang" in texts(seen)  # handed out before the timeout ended the call


@pytest.mark.skipif(not fork_server_available(), reason="no fork server on this platform")
def test_a_forked_process_is_captured_like_a_spawned_one(spec, tmp_path):
    server = ForkServer(spec, spec.environment())
    try:
        process = ScoringProcess(
            spec, server.address, sinks=UserLogFiles(Location(str(tmp_path / "logs")))
        )
        process.start()
        assert texts(process.take_init_logs(), STDOUT) == ["init: ready"]
        outcome = process.run(["a"], timeout=30, want_rows=False)
        assert texts(outcome.logs, STDOUT) == ["scoring 1", "from native code"]
        process.stop()
    finally:
        server.stop()


class Kept(logging.Handler):
    """A real handler that keeps the records it gets."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_past_the_budget_lines_are_counted_and_summarised(spec, tmp_path):
    kept = Kept()
    script_logger = logging.getLogger("prefect.task_runs.script")
    script_logger.addHandler(kept)
    logs = Location(str(tmp_path / "logs"))
    process = ScoringProcess(spec, sinks=UserLogFiles(logs))
    try:
        process.start()
        script = ScriptLog(
            logging.LoggerAdapter(logging.getLogger("x"), {"task_run_id": "t"}), budget=20
        )
        script(process.take_init_logs())
        script(process.run(["x.chatty"], timeout=30, want_rows=False).logs)
        script.finish(f"{process.name.rsplit('-', 1)[0]}:{process.pid}", logs)
        name = process.name
    finally:
        script_logger.removeHandler(kept)
        process.stop()
    sent = [r.getMessage() for r in kept.records]
    assert len(sent) == 21  # the budget, and the summary
    assert all(getattr(r, "task_run_id", None) == "t" for r in kept.records)
    assert sent[-1].startswith("The script wrote 236 more lines (")  # stdout, stderr or both
    assert f"/user/stdout/{name}.txt" in sent[-1]
    stdout = (tmp_path / "logs" / "user" / "stdout" / f"{name}.txt").read_text().splitlines()
    assert stdout[-2:] == ["line 249", "shutdown: bye"] and len(stdout) == 1 + 2 + 250 + 1


def test_lines_beyond_what_memory_keeps_are_counted():
    script = ScriptLog(logging.LoggerAdapter(logging.getLogger("x"), {}), budget=0)
    from scoring.capture import OutputLine

    script([OutputLine(OMITTED, logging.WARNING, "7"), OutputLine(STDOUT, 20, "x")])
    assert sum(script.left_out.values()) == 8
