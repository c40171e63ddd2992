"""The batch-score flow end to end on Azure Blob Storage, against a real Azurite.

Real Prefect (test harness), real Dask LocalCluster, Azurite on loopback reached through
``PBE_AZURE_BLOB_ENDPOINT_DEVSTOREACCOUNT1``. Checks that no secret (account key, SAS
signature) reaches an error, ``pbe datastore show``, the run's stored parameters or logs.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from uuid import UUID

import pytest
from azurite_server import ACCOUNT, KEY, Azurite
from prefect.testing.utilities import prefect_test_harness
from support import (
    SIZES_SCRIPT,
    STORAGE_INPUT,
    STORAGE_ROWS,
    SUMMARY_SCRIPT,
    check_remote_user_logs,
    user_logs_script,
)

from blocks.datastore import Datastore, SavedDatastores, save_datastore
from blocks.errors import InputError, OutputExistsError
from blocks.sas_handoff import stash
from flows.batch_score import batch_score
from flows.inputs import list_input
from flows.storage import Location

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk0Mg" + KEY[46:]


@pytest.fixture(scope="module", autouse=True)
def prefect_api() -> Iterator[str]:
    from prefect.settings import PREFECT_API_URL

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="module")
def blob(prefect_api: str, azurite: Azurite) -> Azurite:
    """Containers ``lake`` (private) and ``open`` (public); datastores reaching ``lake``."""
    azurite.put("lake", STORAGE_INPUT)
    azurite.put("open", STORAGE_INPUT, public=True)
    azurite.put("vault", STORAGE_INPUT)  # private, and no datastore covers it
    save_datastore(
        "bloblake",
        Datastore(type="azure_blob", account_name=ACCOUNT, container_name="lake", account_key=KEY),
        overwrite=True,
    )
    save_datastore(
        "badkey",
        Datastore(
            type="azure_blob", account_name=ACCOUNT, container_name="lake", account_key=WRONG_KEY
        ),
        overwrite=True,
    )
    return azurite


def deployment(tmp_path: Path, script: str, **settings: object):
    from blocks.spec_loading import parse_deployment

    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "score.py").write_text(script)
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "weights.txt").write_text("none")
    return parse_deployment(
        {
            "name": "sizes",
            "endpoint_name": "blob-e2e",
            "model": {"name": "m", "path": str(model)},
            "code_configuration": {"code": str(code), "scoring_script": "score.py"},
            "compute": "azureml:cpu",
            "settings": {"mini_batch_size": 2, "max_concurrency_per_instance": 1, **settings},
        }
    )


def signature(sas: str) -> str:
    return dict(p.split("=", 1) for p in sas.split("&"))["sig"]


def recorded(flow_run_id: UUID, last: str) -> tuple[dict, list[str]]:
    """The run's parameters as Prefect stored them, and its logs once ``last`` arrived."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        parameters = client.read_flow_run(flow_run_id).parameters
        while True:  # logs arrive in batches
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            messages = [log.message for log in logs]
            if any(last in m for m in messages) or time.monotonic() > deadline:
                return parameters, messages


def assert_secret_free(*texts: str, secrets: tuple[str, ...]) -> None:
    for text in texts:
        for secret in (KEY, WRONG_KEY, *secrets):
            assert secret not in text


# --- jobs ------------------------------------------------------------------------------------


def test_public_container_to_a_blob_datastore_output(blob: Azurite, tmp_path: Path) -> None:
    state = batch_score(
        input=blob.url("open", "in/"),
        output_path="azureml://datastores/bloblake/paths/out/job-pub/",
        deployment=deployment(tmp_path, SIZES_SCRIPT),
        job_name="job-pub",
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert blob.get("lake", "out/job-pub/predictions.csv").decode().splitlines() == STORAGE_ROWS
    assert blob.names("lake", "out/job-pub/") == [  # the staging area is gone
        "out/job-pub/logs/errors.txt",
        "out/job-pub/logs/job.json",  # the job's record
        "out/job-pub/logs/processed_mini-batches.csv",
        "out/job-pub/predictions.csv",
    ]
    report = csv.DictReader(
        io.StringIO(blob.get("lake", "out/job-pub/logs/processed_mini-batches.csv").decode())
    )
    assert [row["status"] for row in report] == ["succeeded"] * 3
    result = state.result()
    assert result.output_file == blob.url("lake", "out/job-pub/predictions.csv")


def test_a_sas_url_input_is_never_recorded(blob: Azurite, tmp_path: Path) -> None:
    sas = blob.sas("lake")
    output = tmp_path / "out"
    state = batch_score(
        input=f"{blob.url('lake', 'in/')}?{sas}",
        output_path=str(output),
        deployment=deployment(tmp_path, SIZES_SCRIPT),
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert (output / "predictions.csv").read_text().splitlines() == STORAGE_ROWS
    parameters, logs = recorded(state.state_details.flow_run_id, "Output:")
    assert parameters["input"].startswith(blob.url("lake", "in/?"))
    assert_secret_free(
        json.dumps(parameters),
        *logs,
        state.message or "",
        (output / "logs" / "processed_mini-batches.csv").read_text(),
        secrets=(signature(sas),),
    )


def test_the_account_key_datastore_writes_summary_files(blob: Azurite, tmp_path: Path) -> None:
    state = batch_score(
        input="azureml://datastores/bloblake/paths/in/",
        output_path="azureml://datastores/bloblake/paths/out/job-summary",
        deployment=deployment(tmp_path, SUMMARY_SCRIPT, output_action="summary_only"),
        return_state=True,
    )
    assert state.is_completed(), state.message
    names = blob.names("lake", "out/job-summary/")
    assert [n for n in names if "/seen-" in n] == [
        f"out/job-summary/seen-f{n}.bin.txt" for n in range(5)
    ]
    assert blob.get("lake", "out/job-summary/seen-f4.bin.txt") == b"5"
    assert "out/job-summary/predictions.csv" not in names
    parameters, logs = recorded(state.state_details.flow_run_id, "Output:")
    assert_secret_free(json.dumps(parameters), *logs, secrets=())


def test_an_existing_blob_output_is_refused_before_scoring(blob: Azurite, tmp_path: Path) -> None:
    blob.put("lake", {"out/job-exists/predictions.csv": b"old rows\n"})
    state = batch_score(
        input="azureml://datastores/bloblake/paths/in/",
        output_path="azureml://datastores/bloblake/paths/out/job-exists",
        deployment=deployment(tmp_path, SIZES_SCRIPT),
        return_state=True,
    )
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, OutputExistsError)
    assert blob.url("lake", "out/job-exists/predictions.csv") in str(error)
    assert blob.names("lake", "out/job-exists/") == ["out/job-exists/predictions.csv"]
    assert blob.get("lake", "out/job-exists/predictions.csv") == b"old rows\n"


@pytest.mark.parametrize(
    "fail_on", [None, "f2.bin", "init"], ids=["completed", "run-fails", "init-fails"]
)
def test_the_scripts_own_output_is_uploaded_whole_to_blob(
    blob: Azurite, tmp_path: Path, fail_on: str | None
) -> None:
    """logs/user/{stdout,stderr}/<host>-<pid>.txt reach the container, one pair per scoring
    process, with every line; a job that fails (over the error threshold, in run() or in
    init()) uploads them too; no local copy is left."""
    job = f"job-user-{fail_on or 'ok'}".replace(".", "-")
    check_remote_user_logs(
        fail_on=fail_on,
        input="azureml://datastores/bloblake/paths/in/",
        output=f"azureml://datastores/bloblake/paths/out/{job}",
        logs=f"azureml://datastores/bloblake/paths/out/{job}/logs",
        deployment=deployment(
            tmp_path, user_logs_script(fail_on), mini_batch_size=1, max_concurrency_per_instance=2
        ),
        names=lambda prefix: blob.names("lake", f"out/{job}/{prefix}"),
    )


BAD_STORAGE_INPUTS = [
    ("https://{a}.blob.core.windows.net/nolake/in/?{nolake}", "container 'nolake' does not exist"),
    ("azureml://datastores/bloblake/paths/missing/", "no blob or folder at this path"),
    ("azureml://datastores/bloblake/paths/empty/", "is empty"),
    ("https://{a}.blob.core.windows.net/vault/in/", "access denied to an anonymous reader"),
    ("azureml://datastores/badkey/paths/in/", "wrong account key or SAS token"),
    ("https://{a}.blob.core.windows.net/lake/in/?{forged}", "wrong account key or SAS token"),
]


@pytest.mark.parametrize(("uri", "problem"), BAD_STORAGE_INPUTS)
def test_bad_inputs_fail_before_scoring(
    blob: Azurite, tmp_path: Path, uri: str, problem: str
) -> None:
    sas = blob.sas("lake")
    forged = sas.replace(signature(sas), "Zm9yZ2VkLXNpZ25hdHVyZS1mb3JnZWQtc2lnbmF0dXJl")
    output = tmp_path / "out"
    state = batch_score(
        input=uri.format(a=ACCOUNT, forged=forged, nolake=blob.sas("nolake")),
        output_path=str(output),
        deployment=deployment(tmp_path, SIZES_SCRIPT),
        return_state=True,
    )
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, InputError)
    assert problem in str(error) and error.hint
    assert f"'https://{ACCOUNT}.blob.core.windows.net/" in str(error)  # the URI, masked
    assert not (output / "logs").exists()  # nothing was scored
    parameters, logs = recorded(state.state_details.flow_run_id, problem)
    assert any(problem in m for m in logs)
    assert_secret_free(
        str(error),
        repr(error),
        state.message or "",
        json.dumps(parameters),
        *logs,
        secrets=(signature(sas), signature(forged)),
    )


# --- pbe: datastore YAML, show, and SAS tokens handed to a job ------------------------------


def pbe(api_url: str, *args: str) -> tuple[int, str, str]:
    from deployments.cli import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_API_URL", api_url)
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_datastore_yaml_create_show_and_use(
    blob: Azurite, prefect_api: str, tmp_path: Path
) -> None:
    sas = blob.sas("lake")
    (tmp_path / "key.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/azureBlob.schema.json\n"
        f"name: yaml_lake\ntype: azure_blob\ndescription: the lake\naccount_name: {ACCOUNT}\n"
        "container_name: lake\nendpoint: core.windows.net\nprotocol: https\n"
        f"credentials:\n  account_key: {KEY}\n"
    )
    (tmp_path / "sas.yml").write_text(
        f"name: sas_lake\ntype: azure_blob\naccount_name: {ACCOUNT}\ncontainer_name: lake\n"
        f"credentials:\n  sas_token: '{sas}'\n"
    )
    (tmp_path / "open.yml").write_text(
        f"name: open_lake\ntype: azure_blob\naccount_name: {ACCOUNT}\ncontainer_name: open\n"
    )
    (tmp_path / "s3.yml").write_text(
        "name: s3_lake\ntype: s3\nurl: s3://lake\nendpoint_url: http://127.0.0.1:9\n"
        "credentials: {key: AKIAYAMLKEY0001, secret: yaml-s3-secret-value}\n"
    )
    outputs = []
    for name in ("key", "sas", "open", "s3"):
        code, out, err = pbe(
            prefect_api, "datastore", "create", "-f", str(tmp_path / f"{name}.yml"), "--overwrite"
        )
        assert code == 0, err
        outputs.append(out)
    code, shown, err = pbe(prefect_api, "datastore", "show", "--name", "yaml_lake")
    assert code == 0, err
    record = json.loads(shown)
    assert record["credentials"] == "account key set" and record["account_name"] == ACCOUNT
    assert record["url"] == blob.url("lake")
    code, listed, _ = pbe(prefect_api, "datastore", "list", "-o", "yaml")
    assert "credentials: key and secret set" in listed and "credentials: sas token set" in listed
    assert_secret_free(
        shown,
        listed,
        *outputs,
        secrets=(signature(sas), sas, "AKIAYAMLKEY0001", "yaml-s3-secret-value"),
    )
    for store in ("yaml-lake", "sas-lake", "open-lake"):
        container = "open" if store == "open-lake" else "lake"
        uri, options = SavedDatastores().resolve(f"azureml://datastores/{store}/paths/in/")
        assert list_input(Location(uri, options))[0] == blob.url(container, "in/f0.bin")


def test_datastore_yaml_mistakes_are_one_line(
    blob: Azurite, prefect_api: str, tmp_path: Path
) -> None:
    (tmp_path / "both.yml").write_text(
        f"name: both\ntype: azure_blob\naccount_name: {ACCOUNT}\ncontainer_name: lake\n"
        f"credentials: {{account_key: '{KEY}', sas_token: 'sv=1&sig=abcdefgh'}}\n"
    )
    (tmp_path / "typo.yml").write_text(
        f"name: typo\ntype: azure_blob\naccount_nme: {ACCOUNT}\ncontainer_name: lake\n"
    )
    for name, expected in (
        ("both", "account_key or sas_token, not both"),
        ("typo", "key 'account_nme': unknown or misplaced key"),
    ):
        code, out, err = pbe(
            prefect_api, "datastore", "create", "-f", str(tmp_path / f"{name}.yml")
        )
        assert code != 0 and expected in err
        assert_secret_free(out, err, secrets=("abcdefgh",))
    code, out, err = pbe(
        prefect_api,
        "datastore",
        "create",
        "--name",
        "flagged",
        "--type",
        "local",
        "--url",
        str(tmp_path),
        "--overwrite",
    )
    assert code == 0 and json.loads(out)["url"] == str(tmp_path), err  # the flags still work
    code, out, err = pbe(prefect_api, "datastore", "create", "--name", "half", "--type", "s3")
    assert code != 0 and "needs --url (or --file)" in err


def test_a_sas_token_is_handed_to_the_job_through_a_secret_block(blob: Azurite) -> None:
    sas = blob.sas("lake")
    parameter = stash(f"{blob.url('lake', 'in/')}?{sas}")
    assert signature(sas) not in parameter and "prefect.blocks.secret.pbe-sas-" in parameter
    uri, options = SavedDatastores().resolve(parameter)
    assert uri == blob.url("lake", "in/")
    assert len(list_input(Location(uri, options))) == 5
    assert stash(blob.url("lake", "in/")) == blob.url("lake", "in/")  # nothing to hide


def test_pbe_invoke_hands_over_sas_tokens_not_parameters(blob: Azurite) -> None:
    from deployments.jobs import _checked_locations

    sas = blob.sas("lake", write=True)
    given = (f"{blob.url('lake', 'in/')}?{sas}", f"{blob.url('lake', 'out/job-x')}?{sas}")
    parameters = _checked_locations(given[0], "uri_folder", given[1], "predictions.csv")
    assert all(signature(sas) not in p and "sig=" not in p for p in parameters)
    assert [SavedDatastores().resolve(p)[0] for p in parameters] == [
        blob.url("lake", "in/"),
        blob.url("lake", "out/job-x"),
    ]
