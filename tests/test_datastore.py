"""Datastores: validation, secrets, masking, URI resolution, and the Block round trip."""

from __future__ import annotations

import os
import pickle

import pytest
from prefect.testing.utilities import prefect_test_harness
from pydantic import ValidationError

from blocks.datastore import (
    Datastore,
    SavedDatastores,
    block_name,
    mask,
    resolve_uri,
    save_datastore,
    secret_values,
)
from blocks.errors import AlreadyExistsError, NotFoundError, SpecError

KEY = "AKIAROUNDTRIPKEY0001"
SECRET = "s3cr3t-value-that-must-never-show"


def s3_store(url: str = "s3://lake/raw", **extra: object) -> Datastore:
    return Datastore(
        type="s3", url=url, key=KEY, secret=SECRET, endpoint_url="http://127.0.0.1:9", **extra
    )


def no_saved(name: str) -> Datastore:
    raise KeyError(name)


# --- the block ------------------------------------------------------------------------------


def test_secrets_never_in_repr_str_or_json() -> None:
    store = s3_store()
    for text in (repr(store), str(store), store.model_dump_json(), str(store.model_dump())):
        assert SECRET not in text and KEY not in text


def test_storage_options_carry_credentials_and_endpoint() -> None:
    options = s3_store(region="eu-west-1").storage_options()
    assert options == {
        "key": KEY,
        "secret": SECRET,
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu-west-1"},
    }
    assert Datastore(type="s3", url="s3://lake").storage_options() == {}
    assert Datastore(type="local", url="/data").storage_options() == {}
    assert sorted(secret_values(options)) == sorted([KEY, SECRET])


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"type": "s3", "url": "/not/a/bucket"}, "url"),
        ({"type": "s3", "url": "s3://lake", "key": KEY}, "secret"),
        ({"type": "s3", "url": "s3://lake", "secret": SECRET}, "key"),
        ({"type": "s3", "url": "s3://lake", "endpoint_url": "127.0.0.1:9000"}, "endpoint_url"),
        ({"type": "local", "url": "s3://lake"}, "url"),
        ({"type": "local", "url": "/data", "key": KEY, "secret": SECRET}, "key"),
    ],
)
def test_inconsistent_fields_are_refused_naming_the_key(fields: dict, key: str) -> None:
    with pytest.raises(SpecError) as info:
        Datastore(**fields)
    assert info.value.key == key
    assert SECRET not in str(info.value) and KEY not in str(info.value)


def test_validation_errors_never_echo_a_secret() -> None:
    with pytest.raises(ValidationError) as info:
        Datastore(type="ftp", url="s3://lake", key=KEY, secret=SECRET)
    assert SECRET not in str(info.value) and KEY not in str(info.value)


def test_block_pickles_with_its_secret() -> None:
    store = pickle.loads(pickle.dumps(s3_store()))
    assert store.secret is not None and store.secret.get_secret_value() == SECRET


# --- masking ----------------------------------------------------------------------------


def test_mask_hides_url_passwords_signatures_and_known_secrets() -> None:
    text = (
        "GET https://user:pa55word@host/data.csv?sv=2024&sig=abcDEF%2B123&se=1 "
        "and s3://bucket/k?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA/x with "
        "extra-secret-value"
    )
    masked = mask(text, secrets=["extra-secret-value"])
    for secret in ("pa55word", "abcDEF%2B123", "deadbeef", "AKIA/x", "extra-secret-value"):
        assert secret not in masked
    assert "https://***@host/data.csv?sv=2024&sig=***&se=1" in masked


def test_mask_hides_secrets_handed_out_by_a_datastore() -> None:
    s3_store().storage_options()  # the process now knows these values
    assert mask(f"denied for {KEY} / {SECRET}") == "denied for *** / ***"
    assert mask("s3://lake/raw/file.txt") == "s3://lake/raw/file.txt"


# --- resolving URIs ---------------------------------------------------------------------


def test_default_datastore_is_the_workspace_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PBE_HOME", str(tmp_path))
    uri, options = resolve_uri("azureml://datastores/workspaceblobstore/paths/in/x", no_saved)
    assert uri == os.path.join(str(tmp_path), "datastores", "workspaceblobstore", "in", "x")
    assert options == {}


def test_datastore_paths_resolve_through_the_lookup() -> None:
    stores = {"lake": s3_store(), "disk": Datastore(type="local", url="/srv/data")}
    uri, options = resolve_uri("azureml://datastores/lake/paths/images/", stores.__getitem__)
    assert (uri, options["secret"]) == ("s3://lake/raw/images/", SECRET)
    long_form = (
        "azureml://subscriptions/s/resourcegroups/g/workspaces/w/datastores/disk/paths/a/b.csv"
    )
    assert resolve_uri(long_form, stores.__getitem__) == ("/srv/data/a/b.csv", {})


def test_unknown_datastore_lists_the_known_ones() -> None:
    with pytest.raises(NotFoundError) as info:
        resolve_uri("azureml://datastores/nope/paths/x", no_saved)
    assert "datastore 'nope' not found" in str(info.value)
    assert "workspaceblobstore" in str(info.value)
    assert "pbe datastore create" in str(info.value)


@pytest.mark.parametrize(
    "uri", ["azureml:my-data:1", "azureml://datastores/x", "azureml://datastores/x/paths"]
)
def test_other_azureml_forms_are_refused_with_the_expected_form(uri: str) -> None:
    with pytest.raises(SpecError, match="azureml://datastores/<name>/paths/<path>"):
        resolve_uri(uri, no_saved)


def test_datastore_paths_may_not_leave_the_datastore() -> None:
    with pytest.raises(SpecError, match="outside the datastore"):
        resolve_uri("azureml://datastores/lake/paths/../other", {"lake": s3_store()}.get)


def test_s3_uris_take_the_credentials_of_the_longest_covering_datastore() -> None:
    broad = Datastore(type="s3", url="s3://lake", key="AKIABROAD0000", secret="broad-secret")
    narrow = s3_store("s3://lake/raw/")
    stores = [broad, narrow]
    assert resolve_uri("s3://lake/raw/x.png", no_saved, s3_stores=stores)[1]["secret"] == SECRET
    assert resolve_uri("s3://lake/raw", no_saved, s3_stores=stores)[1]["secret"] == SECRET
    assert resolve_uri("s3://lake/rawer/x", no_saved, s3_stores=stores)[1]["secret"] == (
        "broad-secret"
    )
    assert resolve_uri("s3://other/x", no_saved, s3_stores=stores) == ("s3://other/x", {})


def test_https_and_local_uris(tmp_path, monkeypatch) -> None:
    url = "https://example.org/data/file.png"
    assert resolve_uri(url, no_saved) == (url, {})
    monkeypatch.chdir(tmp_path)
    assert resolve_uri("inputs", no_saved) == (str(tmp_path / "inputs"), {})
    assert resolve_uri(f"file://{tmp_path}/x", no_saved) == (f"{tmp_path}/x", {})


def test_block_names_follow_prefect_rules() -> None:
    assert block_name("My_Store") == "my-store"
    with pytest.raises(SpecError, match="invalid"):
        block_name("bad/name")


# --- saved in the Prefect API -------------------------------------------------------------


@pytest.fixture(scope="session")
def prefect_api():
    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.mark.timeout(180)
def test_block_round_trip_through_the_prefect_api(prefect_api) -> None:
    assert save_datastore("round_trip", s3_store(region="eu-west-1")) == "round-trip"
    loaded = Datastore.load("round-trip")
    assert loaded.secret is not None and loaded.secret.get_secret_value() == SECRET
    assert loaded.key is not None and loaded.key.get_secret_value() == KEY
    assert (loaded.url, loaded.endpoint_url, loaded.region) == (
        "s3://lake/raw",
        "http://127.0.0.1:9",
        "eu-west-1",
    )
    saved = SavedDatastores()
    assert saved("round_trip").storage_options() == s3_store(region="eu-west-1").storage_options()
    assert {"round-trip", "workspaceblobstore"} <= set(saved.names())


@pytest.mark.timeout(180)
def test_saved_datastores_resolve_and_refuse(prefect_api, tmp_path) -> None:
    save_datastore("disk", Datastore(type="local", url=str(tmp_path)), overwrite=True)
    save_datastore("lake", s3_store("s3://saved-lake"), overwrite=True)
    saved = SavedDatastores()
    assert saved.resolve("azureml://datastores/disk/paths/in") == (str(tmp_path / "in"), {})
    uri, options = saved.resolve("s3://saved-lake/in/")
    assert (uri, options["key"]) == ("s3://saved-lake/in/", KEY)
    with pytest.raises(NotFoundError) as info:
        saved.resolve("azureml://datastores/missing/paths/x")
    assert "disk" in str(info.value) and "lake" in str(info.value)
    with pytest.raises(AlreadyExistsError):
        save_datastore("disk", Datastore(type="local", url=str(tmp_path)))
    with pytest.raises(AlreadyExistsError, match="built in"):
        save_datastore("workspaceblobstore", Datastore(type="local", url=str(tmp_path)))


# --- Azure Blob Storage datastores ----------------------------------------------------------

ACCOUNT_KEY = "QXp1cmVBY2NvdW50S2V5LXRoYXQtbXVzdC1uZXZlci1zaG93LTAxMjM0NTY3ODk="


def blob_store(**extra: object) -> Datastore:
    return Datastore(type="azure_blob", account_name="acct1", container_name="data", **extra)


def test_a_blob_datastore_is_its_container_and_hides_its_key() -> None:
    store = blob_store(account_key=ACCOUNT_KEY)
    assert store.url == store.root() == "https://acct1.blob.core.windows.net/data"
    assert store.uri_for("in/") == "https://acct1.blob.core.windows.net/data/in/"
    for text in (repr(store), str(store), store.model_dump_json(), str(store.model_dump())):
        assert ACCOUNT_KEY not in text
    options = store.storage_options()
    assert options == {
        "connection_string": "BlobEndpoint=https://acct1.blob.core.windows.net;"
        f"AccountName=acct1;AccountKey={ACCOUNT_KEY};"
    }
    assert ACCOUNT_KEY in secret_values(options)
    assert mask(f"denied with {ACCOUNT_KEY}") == "denied with ***"
    assert blob_store().storage_options() == {  # anonymous
        "connection_string": "BlobEndpoint=https://acct1.blob.core.windows.net;"
    }


def test_a_blob_datastore_follows_its_endpoint_and_the_environment(monkeypatch) -> None:
    china = blob_store(endpoint="core.chinacloudapi.cn", protocol="http", sas_token="sv=1&sig=xy")
    assert china.root() == "https://acct1.blob.core.chinacloudapi.cn/data"
    assert china.storage_options()["connection_string"] == (
        "BlobEndpoint=http://acct1.blob.core.chinacloudapi.cn;SharedAccessSignature=sv=1&sig=xy;"
    )
    monkeypatch.setenv("PBE_AZURE_BLOB_ENDPOINT_ACCT1", "http://127.0.0.1:10000/acct1/")
    assert blob_store().storage_options()["connection_string"] == (
        "BlobEndpoint=http://127.0.0.1:10000/acct1;"
    )


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"container_name": "data"}, "account_name"),
        ({"account_name": "Bad_Account", "container_name": "data"}, "account_name"),
        ({"account_name": "acct1"}, "container_name"),
        (
            {
                "account_name": "acct1",
                "container_name": "data",
                "account_key": ACCOUNT_KEY,
                "sas_token": "sv=1&sig=x",
            },
            "credentials",
        ),
        ({"account_name": "acct1", "container_name": "data", "key": KEY, "secret": SECRET}, "key"),
        ({"account_name": "acct1", "container_name": "data", "url": "s3://x"}, "url"),
    ],
)
def test_inconsistent_blob_fields_are_refused(fields: dict, key: str) -> None:
    with pytest.raises(SpecError) as info:
        Datastore(type="azure_blob", **fields)
    assert info.value.key == key
    assert ACCOUNT_KEY not in str(info.value) and SECRET not in str(info.value)
    with pytest.raises(SpecError, match="only apply to type azure_blob"):
        Datastore(type="s3", url="s3://lake", account_name="acct1")


def test_blob_urls_take_the_covering_datastore_or_go_anonymous() -> None:
    stores = [blob_store(account_key=ACCOUNT_KEY)]
    uri, options = resolve_uri(
        "https://acct1.blob.core.windows.net/data/in/x.png", no_saved, blob_stores=stores
    )
    assert ACCOUNT_KEY in options["connection_string"]
    uri, options = resolve_uri(
        "https://acct1.blob.core.windows.net/other/x.png", no_saved, blob_stores=stores
    )
    assert options == {"connection_string": "BlobEndpoint=https://acct1.blob.core.windows.net;"}
    with pytest.raises(SpecError, match="not a SAS token"):
        resolve_uri("https://acct1.blob.core.windows.net/data/x.png?comp=list", no_saved)


@pytest.mark.timeout(180)
def test_blob_datastore_round_trip_through_the_prefect_api(prefect_api) -> None:
    save_datastore(
        "blob_lake", blob_store(account_key=ACCOUNT_KEY, description="d"), overwrite=True
    )
    loaded = SavedDatastores()("blob_lake")
    assert loaded.account_key is not None and loaded.account_key.get_secret_value() == (ACCOUNT_KEY)
    assert (loaded.type, loaded.url, loaded.description) == (
        "azure_blob",
        "https://acct1.blob.core.windows.net/data",
        "d",
    )
