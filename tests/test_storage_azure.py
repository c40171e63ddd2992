"""Inputs and outputs on Azure Blob Storage, against a real Azurite on loopback (no mocks)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from azurite_server import ACCOUNT, KEY, Azurite

from blocks.azure_urls import parse_blob_url
from blocks.datastore import Datastore, mask, resolve_uri
from blocks.errors import InputError, SpecError, StorageError
from flows.inputs import list_input, local_copies
from flows.storage import Location, is_http, publish_folder

pytestmark = pytest.mark.timeout(180)

INPUTS = {
    "data/b.txt": b"bb",
    "data/a.txt": b"a",
    "data/c.txt": b"ccc",
    "data/sub/d.txt": b"dddd",
    "empty/": b"",  # a zero-byte folder marker, as tools create: not a file
    "nested/x/y.txt": b"y",
    "nested/z/w.txt": b"w",
    "single.txt": b"single",
}
WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk0Mg" + KEY[46:]


@pytest.fixture(scope="module")
def blob(azurite: Azurite) -> Azurite:
    azurite.put("public", INPUTS, public=True)
    azurite.put("private", INPUTS)
    azurite.put("outputs", {})
    return azurite


def keyed(key: str = KEY, container: str = "private") -> Datastore:
    return Datastore(
        type="azure_blob", account_name=ACCOUNT, container_name=container, account_key=key
    )


def at(uri: str, *stores: Datastore) -> Location:
    """The Location of ``uri`` as a job resolves it, against ``stores``."""
    named = {f"s{n}": store for n, store in enumerate(stores)}
    return Location(*resolve_uri(uri, named.__getitem__, blob_stores=stores))


def assert_clean(error: Exception, uri: str, *secrets: str) -> str:
    """The message names the URI and shows none of the secrets."""
    message = str(error)
    assert uri in message
    for secret in (KEY, *secrets):
        assert secret not in message and secret not in repr(error)
    return message


def signature(sas: str) -> str:
    return dict(p.split("=", 1) for p in sas.split("&"))["sig"]


# --- URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "https://acct1.blob.core.windows.net/data/in/x.png",
        "wasbs://data@acct1.blob.core.windows.net/in/x.png",
        "abfss://data@acct1.dfs.core.windows.net/in/x.png",
        "abfs://data@acct1.dfs.core.windows.net/in/x.png",
    ],
)
def test_every_url_form_has_one_canonical_uri(uri: str) -> None:
    place = parse_blob_url(uri)
    assert place is not None
    assert place.uri == "https://acct1.blob.core.windows.net/data/in/x.png"


def test_az_urls_take_the_account_from_the_environment_or_a_datastore(monkeypatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME", raising=False)
    with pytest.raises(SpecError, match="names no storage account") as info:
        resolve_uri("az://data/in/", {}.__getitem__)
    assert "AZURE_STORAGE_ACCOUNT_NAME" in info.value.hint
    store = Datastore(type="azure_blob", account_name="acct2", container_name="data")
    assert resolve_uri("az://data/in/", {}.__getitem__, blob_stores=[store])[0] == (
        "https://acct2.blob.core.windows.net/data/in/"
    )
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct3")
    assert resolve_uri("az://data/in/", {}.__getitem__)[0] == (
        "https://acct3.blob.core.windows.net/data/in/"
    )


def test_other_https_urls_stay_plain_http() -> None:
    assert is_http("https://example.org/a.png")
    assert not is_http("https://acct1.blob.core.windows.net/data/a.png")
    assert resolve_uri("https://example.org/a.png?sig=x", {}.__getitem__) == (
        "https://example.org/a.png?sig=x",
        {},
    )


@pytest.mark.parametrize(
    "uri",
    [
        "https://acct1.blob.core.windows.net/",
        "https://acct1.blob.core.windows.net/Bad_Name/x",
        "https://acct1.blob.core.windows.net/data/../x",
        "wasbs://data@example.org/x",
    ],
)
def test_malformed_blob_urls_are_refused(uri: str) -> None:
    with pytest.raises(SpecError):
        resolve_uri(uri, {}.__getitem__)


def test_the_emulator_endpoint_maps_both_ways(blob: Azurite) -> None:
    uri, options = resolve_uri(f"{blob.endpoint}/public/data/", {}.__getitem__)
    assert uri == blob.url("public", "data/")
    assert f"BlobEndpoint={blob.endpoint};" in options["connection_string"]


# --- listing and reading -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["data/", "data"])
def test_public_folder_lists_direct_child_blobs_sorted(blob: Azurite, path: str) -> None:
    assert list_input(at(blob.url("public", path))) == [
        blob.url("public", "data/a.txt"),
        blob.url("public", "data/b.txt"),
        blob.url("public", "data/c.txt"),
    ]


def test_wasbs_and_emulator_urls_list_the_same(blob: Azurite) -> None:
    expected = list_input(at(blob.url("public", "data/")))
    assert list_input(at(f"wasbs://public@{ACCOUNT}.blob.core.windows.net/data/")) == expected
    assert list_input(at(f"{blob.endpoint}/public/data")) == expected


def test_single_blob_and_type_mismatches(blob: Azurite) -> None:
    single = blob.url("public", "single.txt")
    assert list_input(at(single), "uri_file") == [single]
    with pytest.raises(InputError, match="is a folder, not a file"):
        list_input(at(blob.url("public", "data/")), "uri_file")
    with pytest.raises(InputError, match="is a file, not a folder"):
        list_input(at(single))


def test_blobs_become_local_copies_removed_afterwards(blob: Azurite) -> None:
    source = at(blob.url("public", "data/"))
    with local_copies(list_input(source), source.storage_options) as paths:
        assert [open(p, "rb").read() for p in paths] == [b"a", b"bb", b"ccc"]
        assert [os.path.basename(p) for p in paths] == ["a.txt", "b.txt", "c.txt"]
        workdir = os.path.dirname(os.path.dirname(paths[0]))
    assert not os.path.exists(workdir)


def test_a_sas_token_in_the_url_reads_a_private_container(blob: Azurite) -> None:
    sas = blob.sas("private")
    source = at(f"{blob.url('private', 'data/')}?{sas}")
    files = list_input(source)
    assert files == [blob.url("private", f"data/{n}.txt") for n in "abc"]
    with local_copies(files, source.storage_options) as paths:
        assert open(paths[2], "rb").read() == b"ccc"
    for text in (source.uri, source.display, repr(source), *files):
        assert signature(sas) not in text and "sig=" not in text


def test_an_account_key_through_a_datastore(blob: Azurite) -> None:
    source = at("azureml://datastores/s0/paths/data/", keyed())
    assert source.uri == blob.url("private", "data/")
    assert list_input(source)[0] == blob.url("private", "data/a.txt")
    covered = at(blob.url("private", "single.txt"), keyed())  # a URL the datastore covers
    assert list_input(covered, "uri_file") == [blob.url("private", "single.txt")]


# --- bad inputs: one clear error naming the URI, never a secret ----------------------------


@pytest.mark.parametrize(
    ("container", "path", "problem"),
    [
        ("nocontainer", "data/", "container 'nocontainer' does not exist"),
        ("nocontainer", "", "container 'nocontainer' does not exist"),
        ("private", "missing/", "no blob or folder at this path"),
        ("private", "empty/", "is empty"),
        ("private", "nested/", "holds only subfolders (2)"),
    ],
)
def test_bad_folders(blob: Azurite, container: str, path: str, problem: str) -> None:
    uri = blob.url(container, path)
    with pytest.raises(InputError) as info:
        list_input(at(uri, keyed(container=container)))
    assert problem in assert_clean(info.value, uri.rstrip("/"))
    assert info.value.hint


def test_missing_blob(blob: Azurite) -> None:
    uri = blob.url("private", "nope.txt")
    with pytest.raises(InputError) as info:
        list_input(at(uri, keyed()), "uri_file")
    assert "no blob or folder at this path" in assert_clean(info.value, uri)


def test_a_private_container_read_anonymously(blob: Azurite) -> None:
    for uri, kind in (
        (blob.url("private", "data/"), "uri_folder"),
        (blob.url("private", "single.txt"), "uri_file"),
    ):
        with pytest.raises(InputError) as info:
            list_input(at(uri), kind)
        message = assert_clean(info.value, uri)
        assert "anonymous" in message and "SAS token" in info.value.hint


def test_a_wrong_account_key(blob: Azurite) -> None:
    uri = blob.url("private", "data/")
    with pytest.raises(InputError) as info:
        list_input(at(uri, keyed(WRONG_KEY)))
    assert "wrong account key or SAS token" in assert_clean(info.value, uri, WRONG_KEY)
    output = at(blob.url("private", "out/x.csv"), keyed(WRONG_KEY))
    with pytest.raises(StorageError) as info:
        output.write_atomic([b"x"])
    assert "wrong account key" in assert_clean(info.value, output.uri, WRONG_KEY)


def test_a_tampered_sas_token(blob: Azurite) -> None:
    sas = blob.sas("private")
    forged = sas.replace(signature(sas), "Zm9yZ2VkLXNpZ25hdHVyZS1mb3JnZWQtc2lnbmF0dXJl")
    uri = blob.url("private", "data/")
    with pytest.raises(InputError) as info:
        list_input(at(f"{uri}?{forged}"))
    message = assert_clean(info.value, uri, signature(sas), signature(forged))
    assert "wrong account key or SAS token" in message
    with pytest.raises(InputError) as info:  # and a token for another container
        list_input(at(f"{uri}?{blob.sas('public')}"))
    assert "access denied" in assert_clean(info.value, uri, signature(blob.sas("public")))


def test_without_adlfs_the_error_names_the_extra(blob: Azurite, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "adlfs", None)  # what an environment without it sees
    with pytest.raises(StorageError) as info:
        list_input(at(blob.url("public", "data/")))
    assert "prefect-batch-endpoints[azure]" in info.value.hint


# --- outputs --------------------------------------------------------------------------------


@pytest.fixture
def outputs(blob: Azurite) -> Datastore:
    return keyed(container="outputs")


def test_atomic_write_read_exists(blob: Azurite, outputs: Datastore) -> None:
    target = at(blob.url("outputs", "job-1/predictions.csv"), outputs)
    assert not target.exists()
    at(blob.url("outputs", "job-1"), outputs).makedirs()  # checks the container only
    assert target.write_atomic(iter([b"a 1\n", b"b 2\n"])) == 8
    assert target.exists() and target.read_bytes() == b"a 1\nb 2\n"
    assert blob.names("outputs", "job-1/") == ["job-1/predictions.csv"]


def test_a_failed_write_leaves_no_blob(blob: Azurite, outputs: Datastore) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"first rows\n"
        raise RuntimeError("the merge broke")

    target = at(blob.url("outputs", "job-2/predictions.csv"), outputs)
    with pytest.raises(RuntimeError):
        target.write_atomic(chunks())
    assert not target.exists() and blob.names("outputs", "job-2/") == []


def test_output_container_must_exist(blob: Azurite) -> None:
    output = at(blob.url("nooutputs", "job"), keyed(container="nooutputs"))
    with pytest.raises(StorageError) as info:
        output.makedirs()
    assert "container 'nooutputs' does not exist" in assert_clean(info.value, output.uri)
    assert not blob.service().get_container_client("nooutputs").exists()


def test_staging_style_listing_and_removal(blob: Azurite, outputs: Datastore) -> None:
    root = at(blob.url("outputs", "job-3/.staging"), outputs)
    assert root.list_names() == []
    root.join("attempts", "2.json").write_atomic([b"{}"])
    root.join("attempts", "1.json").write_atomic([b"{}"])
    root.join("parts", "0.rows").write_atomic([b"x\n"])
    assert sorted(root.join("attempts").list_names()) == ["1.json", "2.json"]
    root.remove_tree()
    assert blob.names("outputs", "job-3/") == []


def test_publish_folder_uploads_what_the_script_wrote(
    blob: Azurite, outputs: Datastore, tmp_path
) -> None:
    (tmp_path / "summary.txt").write_text("done")
    (tmp_path / "per-file").mkdir()
    (tmp_path / "per-file" / "a.json").write_text("{}")
    uploaded = publish_folder(tmp_path, at(blob.url("outputs", "job-4"), outputs))
    assert uploaded == [
        blob.url("outputs", "job-4/summary.txt"),
        blob.url("outputs", "job-4/per-file/a.json"),
    ]
    assert blob.get("outputs", "job-4/summary.txt") == b"done"


def test_a_sas_token_with_write_rights_writes(blob: Azurite) -> None:
    sas = blob.sas("outputs", write=True)
    output = at(f"{blob.url('outputs', 'job-5')}?{sas}")
    output.makedirs()
    output.join("predictions.csv").write_atomic([b"x\n"])
    assert blob.get("outputs", "job-5/predictions.csv") == b"x\n"


def test_masking_knows_connection_strings() -> None:
    text = f"BlobEndpoint=http://h/a;AccountName=a;AccountKey={KEY};SharedAccessSignature=sv=1"
    assert KEY not in mask(text) and "sv=1" not in mask(text)
