"""Start-up latency: ``pbe batch-endpoint invoke --wait`` → merged CSV, for a 1-file input.

Cold: nothing running (the embedded Prefect server and worker stopped first); warm: the
embedded server and worker already up. Each is timed from the command's start to its exit
(the job is Completed and ``predictions.csv`` written). The baseline, in the same run, is
the same no-op script run on the same file in a plain ``python`` process.

Run: ``python benchmarks/startup.py [--repeat 3]`` (uses a throw-away workspace)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _common import NOOP_SCRIPT, machine, result_line, verdict

TARGET_WARM_S = 8.0

ENDPOINT = "name: startup-bench\ndescription: start-up latency\n"
DEPLOYMENT = """\
name: noop-dpl
endpoint_name: startup-bench
type: model
model: {name: noop-model, path: model}
code_configuration: {code: code, scoring_script: score.py}
compute: azureml:local
settings: {mini_batch_size: 10, max_concurrency_per_instance: 1}
"""

PLAIN = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("score", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.init()
open(sys.argv[3], "w").write("".join(f"{row}\\n" for row in module.run([sys.argv[2]])))
"""


def pbe(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "deployments.cli", *args],
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"pbe {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout.strip()


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="pbe-startup-") as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
        env["PBE_HOME"] = str(root / "workspace")
        (root / "code").mkdir()
        (root / "code" / "score.py").write_text(textwrap.dedent(NOOP_SCRIPT))
        (root / "model").mkdir()
        (root / "model" / "weights.txt").write_text("0\n")
        (root / "endpoint.yml").write_text(ENDPOINT)
        (root / "deployment.yml").write_text(DEPLOYMENT)
        (root / "input.txt").write_text("one file\n")
        pbe("compute", "create", "-n", "local", "--type", "local", env=env)
        pbe("batch-endpoint", "create", "--file", str(root / "endpoint.yml"), env=env)
        pbe(
            "batch-deployment",
            "create",
            "--file",
            str(root / "deployment.yml"),
            "--endpoint-name",
            "startup-bench",
            "--set-default",
            env=env,
        )

        def invoke(number: int) -> None:
            out = root / f"out-{number}"
            pbe(
                "batch-endpoint",
                "invoke",
                "--name",
                "startup-bench",
                "--input",
                str(root / "input.txt"),
                "--input-type",
                "uri_file",
                "--output-path",
                str(out),
                "--wait",
                env=env,
            )
            assert (out / "predictions.csv").read_text() == str(root / "input.txt") + "\n"

        cold, warm = [], []
        for number in range(args.repeat):
            pbe("server", "stop", env=env)
            cold.append(timed(lambda n=number: invoke(2 * n)))
            warm.append(timed(lambda n=number: invoke(2 * n + 1)))
        plain = statistics.median(
            timed(
                lambda: subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        PLAIN,
                        str(root / "code" / "score.py"),
                        str(root / "input.txt"),
                        str(root / "plain.csv"),
                    ],
                    check=True,
                )
            )
            for _ in range(args.repeat)
        )
        pbe("server", "stop", env=env)

    cold_s, warm_s = statistics.median(cold), statistics.median(warm)
    print(
        f"cold invoke → CSV : {cold_s:6.1f} s (median of {args.repeat}: "
        f"{', '.join(f'{t:.1f}' for t in cold)})"
    )
    print(f"warm invoke → CSV : {warm_s:6.1f} s ({', '.join(f'{t:.1f}' for t in warm)})")
    print(f"plain python run  : {plain:6.2f} s  → warm / plain = {warm_s / plain:.0f}x")
    print(f"target warm <= {TARGET_WARM_S:.0f} s: {verdict(warm_s <= TARGET_WARM_S)}")
    print(
        result_line(
            cold_s=cold_s,
            warm_s=warm_s,
            plain_s=plain,
            warm_over_plain=warm_s / plain,
            target_met=str(warm_s <= TARGET_WARM_S).lower(),
        )
    )


if __name__ == "__main__":
    main()
