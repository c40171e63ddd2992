"""Resuming a job: committed mini-batches are never scored again, the output is exactly that
of an uninterrupted run, and a changed input is refused (real Prefect, Dask and scripts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness
from support import make_model, make_spec, write_inputs, write_script

from blocks.errors import ResumeRefused
from flows.batch_score import batch_score

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# run() fails on any file named in the flag file while it exists; every file it scores
# leaves one line in <markers>/<file name>
MARKED_SCRIPT = """
import os

MARKERS = {markers!r}
FLAG = {flag!r}

def init():
    os.makedirs(MARKERS, exist_ok=True)

def run(mini_batch):
    if os.path.exists(FLAG):
        bad = open(FLAG).read().split()
        for path in mini_batch:
            if os.path.basename(path) in bad:
                raise ValueError("cannot score " + path)
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        with open(os.path.join(MARKERS, name), "a") as marker:
            marker.write(f"{{os.getpid()}}\\n")
        rows.append(f"{{name}} {{open(path).read().strip()}}")
    return rows
"""


@pytest.fixture(scope="module", autouse=True)
def prefect_api():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def marked_project(root: Path, count: int = 12):
    markers, flag = root / "markers", root / "flag.txt"
    code = write_script(root / "code", MARKED_SCRIPT.format(markers=str(markers), flag=str(flag)))
    inputs = root / "inputs"
    write_inputs(inputs, count)
    spec = make_spec(
        code, make_model(root / "model"), mini_batch_size=2, max_retries=1, error_threshold=0
    )
    return spec, inputs, markers, flag


def run(spec, inputs: Path, output: Path, **options):
    return batch_score(
        input=str(inputs), deployment=spec, output_path=str(output), return_state=True, **options
    )


def marker_counts(markers: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in markers.iterdir()}


def test_resume_after_an_error_threshold_stop_scores_only_what_is_left(tmp_path, monkeypatch):
    monkeypatch.setenv("PBE_SUBMIT_WINDOW", "2")  # what a large job does: windows of its plan
    spec, inputs, markers, flag = marked_project(tmp_path)
    flag.write_text("item0006.txt")
    output = tmp_path / "out"
    first = run(spec, inputs, output, job_name="resumable", instance_count=1)
    assert first.is_failed()
    staging = output / ".pbe-staging-resumable"
    committed = sorted(p.name for p in (staging / "parts").iterdir())
    assert committed and "000000003.rows" not in committed  # kept for the resume
    assert not (output / "predictions.csv").exists()
    record = json.loads((output / "logs" / "job.json").read_text())
    assert record["status"] == "Failed" and len(record["attempts"]) == 1
    scored_before = marker_counts(markers)

    flag.unlink()  # the script is fixed
    again = run(spec, inputs, output, job_name="resumable", resume=True)
    assert again.is_completed(), again.message
    result = again.result()
    assert result.mini_batches_skipped == len(committed)

    fresh = tmp_path / "fresh"
    assert run(spec, inputs, fresh, job_name="fresh").is_completed()
    assert (output / "predictions.csv").read_bytes() == (fresh / "predictions.csv").read_bytes()
    # each file was scored once by the two runs of the job (and once by the fresh job)
    counts = marker_counts(markers)
    assert set(counts) == {f"item{n:04d}.txt" for n in range(12)}
    assert all(counts[name] == 2 for name in counts), counts
    assert all(scored_before[name] == 1 for name in scored_before)
    assert not staging.exists()  # a completed job removes its staging
    record = json.loads((output / "logs" / "job.json").read_text())
    assert record["status"] == "Completed" and len(record["attempts"]) == 2
    assert record["attempts"][1]["mini_batches_skipped"] == len(committed)
    assert record["attempts"][1]["mini_batches_scored"] == 6 - len(committed)
    assert record["counts"]["items_succeeded"] == 12
    report = (output / "logs" / "processed_mini-batches.csv").read_text().splitlines()[1:]
    assert [int(line.split(",")[0]) for line in report] == list(range(6))


def test_a_changed_input_or_mini_batch_size_refuses_the_resume(tmp_path):
    spec, inputs, markers, flag = marked_project(tmp_path)
    flag.write_text("item0008.txt")
    output = tmp_path / "out"
    assert run(spec, inputs, output, job_name="changing", instance_count=1).is_failed()
    flag.unlink()
    (inputs / "item0003.txt").write_text("changed\n")
    (inputs / "item0100.txt").write_text("new\n")
    (inputs / "item0005.txt").unlink()
    refused = run(spec, inputs, output, job_name="changing", resume=True)
    assert refused.is_failed()
    with pytest.raises(ResumeRefused) as error:
        refused.result()
    message = str(error.value)
    assert "changed: item0003.txt" in message and "added: item0100.txt" in message
    assert "removed: item0005.txt" in message and "start a new job" in message
    bigger = run(spec, inputs, output, job_name="changing", resume=True, mini_batch_size=3)
    with pytest.raises(ResumeRefused, match="mini_batch_size 3 differs"):
        bigger.result()
    assert (output / ".pbe-staging-changing" / "parts").exists()  # still resumable


def test_a_completed_job_cannot_be_resumed(tmp_path):
    spec, inputs, _, _ = marked_project(tmp_path, count=4)
    output = tmp_path / "out"
    assert run(spec, inputs, output, job_name="done").is_completed()
    with pytest.raises(ResumeRefused, match="it completed"):
        run(spec, inputs, output, job_name="done", resume=True).result()
