"""Bad inputs and faults against ``pbe``, as a new user would meet them; counts what happened.

Every case runs real ``pbe`` processes against a workspace of its own (its own embedded
Prefect server, stopped at the end) and is judged by what a user sees:

- **clear**: exit code 1 (2 for usage errors), ``ERROR:``/usage and a ``Hint:``, no traceback;
  a job that had to fail ended ``Failed`` with a message naming the cause and the report;
- **unclear**: refused, but without a hint or the expected words;
- **traceback**: a Python traceback reached the user;
- **wrong**: accepted (exit 0) where it must be refused, or refused where it must work;
- **stuck/lost**: a command or job that did not end in time, or rows that went missing.

Run: ``python scripts/fault_matrix.py`` (a few minutes; prints one line per case and the
counts, then ``RESULT clear=… unclear=… traceback=… wrong=… stuck=…``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPTS = {
    "good.py": """
        def init():
            pass

        def run(mini_batch):
            return [f"{p.rsplit('/', 1)[-1]} ok" for p in mini_batch]
        """,
    "raises.py": """
        def init():
            pass

        def run(mini_batch):
            raise ValueError("cannot score " + mini_batch[0])
        """,
    "syntax.py": "def init(:\n    pass\n",
    "no_run.py": "def init():\n    pass\n",
    "missing_module.py": "import not_installed_anywhere\ndef init(): pass\n"
    "def run(mb): return mb\n",
    "init_fails.py": "def init():\n    raise RuntimeError('no model here')\n"
    "def run(mb): return mb\n",
    "slow.py": "import time\ndef init(): pass\ndef run(mb):\n    time.sleep(30)\n    return mb\n",
}

DEPLOYMENT = """\
name: {name}
endpoint_name: matrix
type: model
model: azureml:matrix-model@latest
code_configuration:
  code: code
  scoring_script: {script}
compute: azureml:matrix-cluster
settings:
  mini_batch_size: 2
  max_concurrency_per_instance: 1
  retry_settings:
    max_retries: 2
    timeout: {timeout}
"""


@dataclass
class Outcome:
    case: str
    verdict: str
    note: str


class Matrix:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "PBE_HOME": str(root / "home"),
                    "PYTHONPATH": str(REPO)}  # fmt: skip
        self.env.pop("PREFECT_API_URL", None)
        self.outcomes: list[Outcome] = []

    def pbe(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(
                [sys.executable, "-m", "deployments.cli", *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self.root,
            )
        except subprocess.TimeoutExpired:
            return None

    def record(self, case: str, verdict: str, note: str = "") -> None:
        self.outcomes.append(Outcome(case, verdict, note))
        print(f"{verdict:<10} {case}{': ' + note if note else ''}", flush=True)

    def refused(self, case: str, *args: str, expect: str, usage: bool = False) -> None:
        """A command that must be refused with one clear line and a hint."""
        done = self.pbe(*args)
        if done is None:
            return self.record(case, "stuck", "no answer in 300 s")
        if "Traceback" in done.stderr:
            return self.record(case, "traceback", done.stderr.strip().splitlines()[-1])
        if done.returncode == 0:
            return self.record(case, "wrong", "accepted")
        code_ok = done.returncode == (2 if usage else 1)
        clear = code_ok and "Hint:" in done.stderr and expect.lower() in done.stderr.lower()
        first = done.stderr.strip().splitlines()[0] if done.stderr.strip() else "(nothing)"
        self.record(case, "clear" if clear else "unclear", first[:150])

    def job_fails(self, case: str, *args: str, expect: str) -> None:
        """A job that must end Failed, saying why (``expect``) and where the report is."""
        done = self.pbe(
            "batch-endpoint", "invoke", "--name", "matrix", *args, "--wait", timeout=600
        )
        if done is None:
            return self.record(case, "stuck", "the job did not end in 600 s")
        if done.returncode == 0:
            return self.record(case, "wrong", "the job completed")
        try:
            job = json.loads(done.stdout)
        except ValueError:
            return self.record(case, "unclear", done.stderr.strip()[:150])
        message = job.get("message") or ""
        clear = (job.get("status") == "Failed" and expect in message
                 and "Full report:" in message)  # fmt: skip
        stream = self.pbe("job", "stream", "-n", job["name"])
        framework = stream is not None and stream.stdout.count("Traceback (most recent") > 2
        note = message.splitlines()[0][:160]
        if framework:
            note += f" [stream: {stream.stdout.count('Traceback (most recent')} tracebacks]"
        self.record(case, "clear" if clear and not framework else "unclear", note)

    def works(self, case: str, *args: str) -> None:
        done = self.pbe(*args)
        verdict = "clear" if done is not None and done.returncode == 0 else "wrong"
        note = "" if verdict == "clear" else (done.stderr if done else "no answer")[:150]
        self.record(case, verdict, note)


def _project(root: Path) -> None:
    code = root / "project" / "code"
    code.mkdir(parents=True)
    for name, body in SCRIPTS.items():
        (code / name).write_text(textwrap.dedent(body))
    for script in SCRIPTS:
        name = script.removesuffix(".py").replace("_", "-") + "-dpl"
        timeout = 5 if script == "slow.py" else 30
        (root / "project" / f"{name}.yml").write_text(
            DEPLOYMENT.format(name=name, script=script, timeout=timeout)
        )
    (root / "model").mkdir()
    (root / "model" / "weights.txt").write_text("1\n")
    (root / "inputs").mkdir()
    for number in range(4):
        (root / "inputs" / f"item{number}.txt").write_text(str(number))
    (root / "empty").mkdir()
    for sub in ("a", "b"):
        (root / "nested" / sub).mkdir(parents=True)
    (root / "a-file").write_text("x")


def run_matrix(root: Path) -> Matrix:
    _project(root)
    m = Matrix(root)
    inputs = str(root / "inputs")
    m.works(
        "set-up: model", "model", "create", "--name", "matrix-model", "--path", str(root / "model")
    )
    m.works("set-up: compute", "compute", "create", "-n", "matrix-cluster", "--type", "local")
    m.works("set-up: endpoint", "batch-endpoint", "create", "--name", "matrix")
    for script in SCRIPTS:
        name = script.removesuffix(".py").replace("_", "-") + "-dpl"
        m.works(
            f"set-up: {name}",
            "batch-deployment",
            "create",
            "--file",
            str(root / "project" / f"{name}.yml"),
            "--endpoint-name",
            "matrix",
            *(["--set-default"] if script == "good.py" else []),
        )

    # the management plane (the cases of tests/test_cli_errors.py and more)
    m.refused("unknown endpoint", "batch-endpoint", "show", "--name", "nope", expect="not found")
    m.refused(
        "unknown deployment",
        "batch-endpoint",
        "invoke",
        "--name",
        "matrix",
        "--deployment-name",
        "nope-dpl",
        "--input",
        inputs,
        expect="not found",
    )
    m.refused(
        "unknown model version",
        "model",
        "show",
        "--name",
        "matrix-model",
        "-v",
        "9",
        expect="not found",
    )
    m.refused("unknown compute", "compute", "show", "-n", "gpu", expect="not found")
    m.refused("duplicate endpoint", "batch-endpoint", "create", "--name", "matrix", expect="exists")
    m.refused(
        "missing YAML",
        "batch-endpoint",
        "create",
        "--file",
        str(root / "nope.yml"),
        expect="cannot read",
    )
    m.refused("bad endpoint name", "batch-endpoint", "create", "--name", "9x", expect="name")
    m.refused(
        "bad --set key",
        "batch-endpoint",
        "invoke",
        "--name",
        "matrix",
        "--input",
        inputs,
        "--set",
        "mini_batch_sise=3",
        expect="mini_batch_size",
    )
    m.refused(
        "fixed setting per job",
        "batch-endpoint",
        "invoke",
        "--name",
        "matrix",
        "--input",
        inputs,
        "--set",
        "max_concurrency_per_instance=3",
        expect="cannot be changed per job",
    )
    m.refused(
        "bad mini-batch size",
        "batch-endpoint",
        "invoke",
        "--name",
        "matrix",
        "--input",
        inputs,
        "--mini-batch-size",
        "0",
        expect="mini_batch_size",
    )
    m.refused(
        "bad cron",
        "batch-endpoint",
        "update",
        "--name",
        "matrix",
        "--schedule",
        "every minute",
        "--schedule-input",
        inputs,
        expect="cron",
    )
    m.refused(
        "bad --query",
        "batch-endpoint",
        "show",
        "--name",
        "matrix",
        "--query",
        "[[[",
        expect="--query",
    )
    m.refused("unknown job", "job", "show", "-n", "batchjob-never", expect="not found")
    m.refused(
        "delete without --yes", "batch-endpoint", "delete", "--name", "matrix", expect="--yes"
    )
    m.refused("missing option", "batch-endpoint", "show", expect="--name", usage=True)
    m.refused("unknown verb", "batch-endpoint", "explode", expect="explode", usage=True)
    m.refused(
        "unknown data asset",
        "batch-endpoint",
        "invoke",
        "--name",
        "matrix",
        "--input",
        "azureml:nope@latest",
        expect="not found",
    )
    m.refused(
        "unknown datastore",
        "batch-endpoint",
        "invoke",
        "--name",
        "matrix",
        "--input",
        "azureml://datastores/nope/paths/x",
        expect="not found",
    )

    # class 7 and 5: what can be checked at invoke
    m.refused(
        "missing input",
        "batch-endpoint",
        "invoke",
        "--name",
        "matrix",
        "--input",
        str(root / "nope"),
        expect="does not exist",
    )
    m.refused(
        "empty input folder",
        "batch-endpoint",
        "invoke",
        "--name",
        "matrix",
        "--input",
        str(root / "empty"),
        expect="is empty",
    )
    m.refused(
        "file as uri_folder",
        "batch-endpoint",
        "invoke",
        "--name",
        "matrix",
        "--input",
        str(root / "a-file"),
        expect="uri_file",
    )
    m.refused(
        "folder of folders",
        "batch-endpoint",
        "invoke",
        "--name",
        "matrix",
        "--input",
        str(root / "nested"),
        expect="subfolders",
    )
    m.refused(
        "output path is a file",
        "batch-endpoint",
        "invoke",
        "--name",
        "matrix",
        "--input",
        inputs,
        "--output-path",
        str(root / "a-file"),
        expect="is a file",
    )
    m.refused(
        "output under a file",
        "batch-endpoint",
        "invoke",
        "--name",
        "matrix",
        "--input",
        inputs,
        "--output-path",
        str(root / "a-file" / "out"),
        expect="under a file",
    )

    # class 6: a failed job says why
    for deployment, expect in (("raises-dpl", "ValueError: cannot score"),
                               ("syntax-dpl", "SyntaxError"),
                               ("no-run-dpl", "does not define run()"),
                               ("missing-module-dpl", "not_installed_anywhere"),
                               ("init-fails-dpl", "no model here"),
                               ("slow-dpl", "timed out")):  # fmt: skip
        m.job_fails(
            f"job: {deployment}", "--deployment-name", deployment, "--input", inputs, expect=expect
        )

    # class 3: two jobs, one output
    output = str(root / "shared-out")
    first = m.pbe(
        "batch-endpoint",
        "invoke",
        "--name",
        "matrix",
        "--deployment-name",
        "slow-dpl",
        "--input",
        inputs,
        "--output-path",
        output,
    )
    time.sleep(8)  # the first job claims the output once it starts
    m.refused(
        "second job on a claimed output",
        "batch-endpoint",
        "invoke",
        "--name",
        "matrix",
        "--input",
        inputs,
        "--output-path",
        output,
        expect="claimed by job",
    )
    if first is not None and first.returncode == 0:
        m.pbe("job", "cancel", "-n", json.loads(first.stdout)["name"])

    # class 4: downloads
    done = m.pbe(
        "batch-endpoint",
        "invoke",
        "--name",
        "matrix",
        "--input",
        inputs,
        "--output-path",
        str(root / "out-ok"),
        "--wait",
    )
    if done is not None and done.returncode == 0:
        job = json.loads(done.stdout)["name"]
        rows = (root / "out-ok" / "predictions.csv").read_text().splitlines()
        m.record("job: good", "clear" if len(rows) == 4 else "lost", f"{len(rows)} of 4 rows")
        m.works("download", "job", "download", "-n", job, "--download-path", str(root / "dl"))
        m.refused(
            "download over existing files",
            "job",
            "download",
            "-n",
            job,
            "--download-path",
            str(root / "dl"),
            expect="--overwrite",
        )
    else:
        m.record("job: good", "wrong", (done.stderr if done else "no answer")[:150])
    return m


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="pbe-fault-matrix-"))
    matrix = None
    try:
        matrix = run_matrix(root)
    finally:
        if matrix is not None:
            matrix.pbe("server", "stop")
        shutil.rmtree(root, ignore_errors=True)
    counts = Counter(o.verdict for o in matrix.outcomes if not o.case.startswith("set-up"))
    print()
    print(f"{sum(counts.values())} cases: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    names = ("clear", "unclear", "traceback", "wrong", "stuck", "lost")
    print("RESULT " + " ".join(f"{k}={counts.get(k, 0)}" for k in names))
    return 0 if set(counts) <= {"clear"} else 1


if __name__ == "__main__":
    sys.exit(main())
