"""Outputs are claimed, not just checked: of jobs racing for one output file exactly one
gets it, on a local disk, on S3 (moto) and on Azure Blob Storage (Azurite)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from s3_server import isolated_aws_env, running_s3_server

from blocks.errors import OutputClaimedError
from flows.claims import claim_of, claim_output, holder_of
from flows.storage import Location


@pytest.fixture(scope="module")
def s3() -> Iterator:
    with isolated_aws_env(), running_s3_server() as server:
        server.put("claims", {"keep": b"1"})
        yield server


def _targets(kind: str, tmp_path, s3, azurite) -> Location:
    if kind == "local":
        return Location(str(tmp_path / "out" / "predictions.csv"))
    if kind == "s3":
        return Location(f"s3://claims/{tmp_path.name}/predictions.csv", s3.options())
    from azurite_server import ACCOUNT, KEY, isolated_azure_env

    azurite.put("claims", {})
    with isolated_azure_env(azurite):
        from blocks.datastore import Datastore

        store = Datastore(type="azure_blob", account_name=ACCOUNT, container_name="claims",
                          account_key=KEY)  # fmt: skip
        return Location(azurite.url("claims", f"{tmp_path.name}/predictions.csv"),
                        store.storage_options())  # fmt: skip


@pytest.mark.parametrize("kind", ["local", "s3", "blob"])
def test_of_racing_jobs_exactly_one_claims_the_output(kind, tmp_path, s3, request):
    azurite = request.getfixturevalue("azurite") if kind == "blob" else None
    patch = pytest.MonkeyPatch()
    if azurite is not None:
        from azurite_server import ENDPOINT_VARIABLE

        patch.setenv(ENDPOINT_VARIABLE, azurite.endpoint)
    try:
        target = _targets(kind, tmp_path, s3, azurite)
        start, holding, done = threading.Barrier(8), threading.Event(), threading.Event()
        won, refused = [], []

        def job(number: int) -> None:
            start.wait()
            try:
                with claim_output(target, f"job-{number}"):
                    won.append(number)
                    holding.set()
                    done.wait(30)
            except OutputClaimedError as exc:
                refused.append(exc)

        threads = [threading.Thread(target=job, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        assert holding.wait(30)
        while len(refused) < 7 and any(t.is_alive() for t in threads[1:]):
            threading.Event().wait(0.05)
        assert len(won) == 1 and holder_of(target) == f"job-{won[0]}"
        done.set()
        for thread in threads:
            thread.join(30)
        assert len(refused) == 7
        assert all(f"claimed by job 'job-{won[0]}'" in str(e) for e in refused)
        assert holder_of(target) is None and not claim_of(target).exists()  # released
    finally:
        patch.undo()


def test_a_claim_is_released_when_the_job_fails_and_kept_when_it_dies(tmp_path):
    target = Location(str(tmp_path / "predictions.csv"))
    with pytest.raises(RuntimeError), claim_output(target, "failing"):
        raise RuntimeError("the job failed")
    assert holder_of(target) is None
    # a job whose process died leaves its claim: the next one is refused, naming it
    claim_of(target).write_atomic([b'{"job": "crashed-job"}'])
    with pytest.raises(OutputClaimedError) as caught, claim_output(target, "next"):
        pass
    assert "claimed by job 'crashed-job'" in str(caught.value)
    assert str(claim_of(target)) in str(caught.value)  # the hint says what to remove
