"""The Prefect UI shows a job's summary and its failed mini-batch: checked in headless
Chromium by ``scripts/ui_screenshot.py`` (a workspace and embedded server of its own)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        not any(
            shutil.which(n)
            for n in (
                os.environ.get("PBE_CHROMIUM") or "chromium",
                "chromium",
                "chromium-browser",
                "google-chrome",
            )
        ),
        reason="no Chromium: scripts/install_chromium.sh installs Debian's",
    ),
]


def test_the_ui_shows_the_summary_the_failed_mini_batch_and_the_scripts_lines(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "ui_screenshot.py"),
            "--out",
            str(tmp_path),
            "--readme-image",
            str(tmp_path / "small.png"),
        ],
        capture_output=True,
        text=True,
        timeout=840,
        cwd=str(REPO),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(done.stdout)
    assert record["status"] == "Completed"
    assert "4 mini-batches: 3 succeeded, 1 failed" in record["message"]

    summary = Path(record["pages"]["summary"]["text"]).read_text()
    assert f"Job {record['job']}: Completed" in summary  # the markdown, rendered
    assert "Failures by category" in summary
    assert "user_error 1 1 ValueError: cannot score item0002.txt" in summary

    table = Path(record["pages"]["mini-batches"]["text"]).read_text()
    assert "1 1 " in table and "failed user_error ValueError: cannot score item0002.txt" in table
    rows = table[table.index("error_message") :]  # past the header's column names
    assert rows.index("failed user_error") < rows.index("succeeded")  # failed ones first

    logs = Path(record["pages"]["logs"]["text"]).read_text()
    assert "scoring 2 files: item0002.txt, item0003.txt" in logs  # the script's own line

    for page in record["pages"].values():
        assert Path(page["screenshot"]).stat().st_size > 10_000  # a rendered page, not blank
    assert record["readme_image_bytes"] < 200_000
