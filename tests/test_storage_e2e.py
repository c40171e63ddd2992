"""The batch-score flow end to end on remote storage: S3 in and out, https in, datastores.

Real Prefect (test harness), real Dask LocalCluster, moto's real S3 server and an HTTP
server on loopback. Needs flows/batch_score.py to resolve ``input``/``output_path``
through :class:`blocks.datastore.SavedDatastores` (see the issue 5 wiring notes).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness
from s3_server import (
    TEST_KEY,
    TEST_SECRET,
    S3Server,
    isolated_aws_env,
    running_s3_server,
    serving_folder,
)
from support import (
    SIZES_SCRIPT,
    STORAGE_INPUT,
    STORAGE_ROWS,
    SUMMARY_SCRIPT,
    check_remote_user_logs,
    user_logs_script,
)

from blocks.datastore import Datastore, save_datastore
from blocks.errors import InputError, OutputExistsError
from blocks.spec import ModelDeploymentSpec
from blocks.spec_loading import parse_deployment
from flows.batch_score import batch_score

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module", autouse=True)
def prefect_api() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def s3(prefect_api: None) -> Iterator[S3Server]:
    """The S3 server, its bucket ``lake`` and the saved datastore ``lake`` that reaches it."""
    with isolated_aws_env(), running_s3_server() as server:
        server.put("lake", STORAGE_INPUT)
        save_datastore(
            "lake",
            Datastore(
                type="s3",
                url="s3://lake",
                endpoint_url=server.endpoint_url,
                key=TEST_KEY,
                secret=TEST_SECRET,
            ),
            overwrite=True,
        )
        yield server


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("www")
    (root / "files").mkdir()
    (root / "files" / "a.png").write_bytes(b"\x89PNG fake image")
    with serving_folder(root) as base_url:
        yield base_url


def deployment(tmp_path: Path, script: str, **settings: object) -> ModelDeploymentSpec:
    code = tmp_path / "code"
    code.mkdir()
    (code / "score.py").write_text(script)
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.txt").write_text("none")
    return parse_deployment(
        {
            "name": "sizes",
            "endpoint_name": "storage-e2e",
            "model": {"name": "m", "path": str(model)},
            "code_configuration": {"code": str(code), "scoring_script": "score.py"},
            "compute": "azureml:cpu",
            "settings": {"mini_batch_size": 2, "max_concurrency_per_instance": 1, **settings},
        }
    )


def test_s3_datastore_input_to_s3_output(s3: S3Server, tmp_path: Path) -> None:
    state = batch_score(
        input="azureml://datastores/lake/paths/in/",
        output_path="s3://lake/out/job-s3",
        deployment=deployment(tmp_path, SIZES_SCRIPT),
        job_name="job-s3",
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert s3.get("lake", "out/job-s3/predictions.csv").decode().splitlines() == STORAGE_ROWS
    assert s3.keys("lake", "out/job-s3/") == [  # the staging area is gone
        "out/job-s3/logs/errors.txt",
        "out/job-s3/logs/job.json",  # the job's record
        "out/job-s3/logs/processed_mini-batches.csv",
        "out/job-s3/predictions.csv",
    ]
    report = csv.DictReader(
        io.StringIO(s3.get("lake", "out/job-s3/logs/processed_mini-batches.csv").decode())
    )
    assert [row["status"] for row in report] == ["succeeded"] * 3  # 5 files, batches of 2
    assert TEST_SECRET not in s3.get("lake", "out/job-s3/logs/errors.txt").decode()


def test_s3_uri_input_uses_the_covering_datastore(s3: S3Server, tmp_path: Path) -> None:
    output = tmp_path / "out"
    state = batch_score(
        input="s3://lake/in/",
        output_path=str(output),
        deployment=deployment(tmp_path, SIZES_SCRIPT),
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert (output / "predictions.csv").read_text().splitlines() == STORAGE_ROWS


def test_https_file_input(web: str, tmp_path: Path) -> None:
    output = tmp_path / "out"
    state = batch_score(
        input=f"{web}/files/a.png",
        input_type="uri_file",
        output_path=str(output),
        deployment=deployment(tmp_path, SIZES_SCRIPT),
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert (output / "predictions.csv").read_text().splitlines() == ["a.png 15"]


def test_existing_s3_output_is_refused_before_scoring(s3: S3Server, tmp_path: Path) -> None:
    s3.put("lake", {"out/job-exists/predictions.csv": b"old rows\n"})
    state = batch_score(
        input="azureml://datastores/lake/paths/in/",
        output_path="s3://lake/out/job-exists",
        deployment=deployment(tmp_path, SIZES_SCRIPT),
        return_state=True,
    )
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, OutputExistsError)
    assert "s3://lake/out/job-exists/predictions.csv" in str(error)
    assert s3.keys("lake", "out/job-exists/") == ["out/job-exists/predictions.csv"]


def test_empty_s3_input_fails_before_scoring(s3: S3Server, tmp_path: Path) -> None:
    output = tmp_path / "out"
    state = batch_score(
        input="azureml://datastores/lake/paths/empty/",
        output_path=str(output),
        deployment=deployment(tmp_path, SIZES_SCRIPT),
        return_state=True,
    )
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, InputError)
    assert "'s3://lake/empty/': is empty" in str(error) and TEST_SECRET not in str(error)
    assert not (output / "logs").exists()


def test_summary_only_files_are_uploaded_to_s3(s3: S3Server, tmp_path: Path) -> None:
    state = batch_score(
        input="azureml://datastores/lake/paths/in/",
        output_path="s3://lake/out/job-summary",
        deployment=deployment(tmp_path, SUMMARY_SCRIPT, output_action="summary_only"),
        return_state=True,
    )
    assert state.is_completed(), state.message
    keys = s3.keys("lake", "out/job-summary/")
    assert [k for k in keys if "/seen-" in k] == [
        f"out/job-summary/seen-f{n}.bin.txt" for n in range(5)
    ]
    assert s3.get("lake", "out/job-summary/seen-f4.bin.txt") == b"5"
    assert "out/job-summary/predictions.csv" not in keys


@pytest.mark.parametrize(
    "fail_on", [None, "f2.bin", "init"], ids=["completed", "run-fails", "init-fails"]
)
def test_the_scripts_own_output_is_uploaded_whole_to_s3(
    s3: S3Server, tmp_path: Path, fail_on: str | None
) -> None:
    """logs/user/{stdout,stderr}/<host>-<pid>.txt reach the bucket, one pair per scoring
    process, with every line; a job that fails (over the error threshold, in run() or in
    init()) uploads them too; no local copy is left."""
    job = f"job-user-{fail_on or 'ok'}".replace(".", "-")
    check_remote_user_logs(
        fail_on=fail_on,
        input="azureml://datastores/lake/paths/in/",
        output=f"s3://lake/out/{job}",
        logs=f"azureml://datastores/lake/paths/out/{job}/logs",
        deployment=deployment(
            tmp_path, user_logs_script(fail_on), mini_batch_size=1, max_concurrency_per_instance=2
        ),
        names=lambda prefix: s3.keys("lake", f"out/{job}/{prefix}"),
    )
