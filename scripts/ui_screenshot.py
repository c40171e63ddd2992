"""A job as a person sees it in the Prefect UI: run one, open its pages in headless Chromium.

Starts the embedded Prefect server in a workspace of its own (``PBE_HOME`` in a temporary
folder), runs a small real job through ``pbe`` in which one mini-batch fails, then opens
the job's summary and mini-batch table artifacts (the latest of their keys, found through
the API as a user would) and the flow run's logs in headless Chromium (Debian's
``chromium``; ``scripts/install_chromium.sh``), saving a screenshot and the rendered text
of each. Prints a JSON record of what it made; ``--readme-image`` also writes a small PNG
of the summary for the README.

    python scripts/ui_screenshot.py --out /tmp/pbe-ui [--readme-image docs/job-summary.png]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = """\
import logging
import os

def init():
    print("init: the model is ready")

def run(mini_batch):
    names = [os.path.basename(path) for path in mini_batch]
    print(f"scoring {len(names)} files: {', '.join(names)}")
    if "item0002.txt" in names:
        raise ValueError("cannot score item0002.txt: the file is corrupt")
    logging.getLogger("demo").info("scored %d files", len(names))
    return [f"{name} 1" for name in names]
"""

DEPLOYMENT = """\
name: demo-dpl
endpoint_name: demo-endpoint
type: model
model: azureml:demo-model@latest
code_configuration:
  code: code
  scoring_script: score.py
compute: azureml:demo-cluster
resources:
  instance_count: 2
settings:
  max_concurrency_per_instance: 1
  mini_batch_size: 2
  output_file_name: predictions.csv
  error_threshold: -1
  retry_settings:
    max_retries: 1
    timeout: 30
"""

PAGES = {  # name -> (path under the UI, what the page must show once rendered)
    "summary": ("/artifacts/artifact/{summary_id}", "Failures by category"),
    "mini-batches": ("/artifacts/artifact/{table_id}", "cannot score item0002.txt"),
    "logs": ("/runs/flow-run/{run_id}?tab=Logs", "scoring 2 files"),
}


def chromium() -> str:
    for name in (os.environ.get("PBE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name) or name
    raise SystemExit("no Chromium found: run scripts/install_chromium.sh (or set PBE_CHROMIUM)")


def _browser(url: str, *flags: str, budget_ms: int) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="pbe-chromium-") as profile:
        return subprocess.run(
            [
                chromium(),
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--window-size=1400,1100",
                f"--virtual-time-budget={budget_ms}",
                *flags,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )


def render(url: str, screenshot: Path, expected: str) -> str:
    """The page's text once rendered (waiting longer until ``expected`` shows), and a
    screenshot of it."""
    text = ""
    for budget in (8000, 20000, 40000):
        dom = _browser(url, "--dump-dom", budget_ms=budget).stdout
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
        if expected in text:
            break
    _browser(url, f"--screenshot={screenshot}", budget_ms=budget)
    return text


class Workspace:
    """A workspace of its own, driven by real ``pbe`` processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE")
        }
        self.env["PBE_HOME"] = str(root / "home")
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        )

    def pbe(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "deployments.cli", *args],
            env=self.env,
            cwd=str(self.root),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and done.returncode != 0:
            raise SystemExit(f"pbe {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout.strip()

    def api_url(self) -> str:
        state = json.loads((self.root / "home" / "prefect" / "embedded.json").read_text())
        return state["server"]["url"]


def make_project(root: Path) -> None:
    (root / "code").mkdir(parents=True)
    (root / "code" / "score.py").write_text(SCRIPT)
    (root / "model" / "model").mkdir(parents=True)
    (root / "model" / "model" / "weights.txt").write_text("1\n")
    (root / "inputs").mkdir()
    for number in range(8):
        (root / "inputs" / f"item{number:04d}.txt").write_text(f"{number}\n")
    (root / "deployment.yml").write_text(DEPLOYMENT)
    (root / "endpoint.yml").write_text("name: demo-endpoint\nauth_mode: aad_token\n")


def run_job(ws: Workspace) -> dict:
    ws.pbe("compute", "create", "-n", "demo-cluster", "--type", "local")
    ws.pbe(
        "model",
        "create",
        "--name",
        "demo-model",
        "--type",
        "custom_model",
        "--path",
        str(ws.root / "model" / "model"),
    )
    ws.pbe("batch-endpoint", "create", "--file", str(ws.root / "endpoint.yml"))
    ws.pbe("batch-deployment", "create", "--file", str(ws.root / "deployment.yml"), "--set-default")
    job = json.loads(
        ws.pbe(
            "batch-endpoint",
            "invoke",
            "--name",
            "demo-endpoint",
            "--input",
            str(ws.root / "inputs"),
            "--wait",
        )
    )
    return job


def latest_artifact_id(api_url: str, key: str) -> str:
    import httpx

    response = httpx.post(
        f"{api_url}/artifacts/filter",
        json={"artifacts": {"key": {"any_": [key]}}, "limit": 1, "sort": "CREATED_DESC"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()[0]["id"]


def readme_image(source: Path, target: Path, limit: int = 200_000) -> int:
    """A copy of ``source`` small enough for the README (PNG, under ``limit`` bytes)."""
    from PIL import Image

    image = Image.open(source).convert("RGB")
    width = 1100
    while True:
        scaled = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        target.parent.mkdir(parents=True, exist_ok=True)
        scaled.quantize(colors=64).save(target, optimize=True)
        if target.stat().st_size < limit or width < 500:
            return target.stat().st_size
        width = int(width * 0.85)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the screenshots")
    parser.add_argument("--readme-image", type=Path, help="also write a small PNG here")
    parser.add_argument("--keep", action="store_true", help="keep the workspace and server")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    chromium()  # fail before starting anything
    root = Path(tempfile.mkdtemp(prefix="pbe-ui-"))
    ws = Workspace(root)
    try:
        make_project(root)
        job = run_job(ws)
        api_url = ws.api_url()
        ids = {
            "run_id": job["id"],
            "summary_id": latest_artifact_id(api_url, "demo-endpoint--demo-dpl-summary"),
            "table_id": latest_artifact_id(api_url, "demo-endpoint--demo-dpl-mini-batches"),
        }
        ui = api_url.removesuffix("/api")
        record = {
            "job": job["name"],
            "status": job["status"],
            "message": job["message"],
            "pages": {},
        }
        for name, (path, expected) in PAGES.items():
            url = ui + path.format(**ids)
            shot = args.out / f"{name}.png"
            text = render(url, shot, expected)
            (args.out / f"{name}.txt").write_text(text)
            record["pages"][name] = {
                "url": url,
                "screenshot": str(shot),
                "text": str(args.out / f"{name}.txt"),
                "shows_expected": expected in text,
            }
        if args.readme_image:
            record["readme_image"] = str(args.readme_image)
            record["readme_image_bytes"] = readme_image(args.out / "summary.png", args.readme_image)
        print(json.dumps(record, indent=2))
        return 0 if all(p["shows_expected"] for p in record["pages"].values()) else 1
    finally:
        if not args.keep:
            ws.pbe("server", "stop", check=False)
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(
                textwrap.dedent(f"""\
                kept: PBE_HOME={root / "home"} (stop: PBE_HOME={root / "home"} pbe server stop)"""),
                file=sys.stderr,
            )


if __name__ == "__main__":
    sys.exit(main())
