"""Inputs and outputs on S3, against moto's real server on loopback (no mocks)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest
from s3_server import TEST_KEY, TEST_SECRET, S3Server, isolated_aws_env, running_s3_server

from blocks.datastore import Datastore, resolve_uri
from blocks.errors import InputError, StorageError
from flows.inputs import list_input, local_copies
from flows.storage import Location, publish_folder

pytestmark = pytest.mark.timeout(120)

INPUTS = {
    "data/": b"",  # a console-made folder marker: not a file
    "data/b.txt": b"bb",
    "data/a.txt": b"a",
    "data/c.txt": b"ccc",
    "data/sub/d.txt": b"dddd",
    "empty/": b"",
    "nested/x/y.txt": b"y",
    "nested/z/w.txt": b"w",
    "single.txt": b"single",
}


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with isolated_aws_env(), running_s3_server() as server:
        server.put("inputs", INPUTS)
        server.put("outputs", {})
        yield server


@pytest.fixture(scope="module")
def strict_s3() -> Iterator[S3Server]:
    """A second server that checks every request's credentials."""
    with isolated_aws_env(), running_s3_server(strict=True) as server:
        server.put("locked", {"data/a.txt": b"a"})
        yield server


def at(s3: S3Server, uri: str, **credentials: str | None) -> Location:
    return Location(uri, s3.options(**credentials))


def assert_clean(error: Exception, uri: str, *secrets: str) -> str:
    """The message names the URI and shows none of the secrets."""
    message = str(error)
    assert uri in message
    for secret in (TEST_SECRET, *secrets):
        assert secret not in message and secret not in repr(error)
    return message


# --- listing and reading -------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["s3://inputs/data/", "s3://inputs/data"])
def test_folder_lists_direct_child_files_sorted(s3: S3Server, uri: str) -> None:
    assert list_input(at(s3, uri)) == [
        "s3://inputs/data/a.txt",
        "s3://inputs/data/b.txt",
        "s3://inputs/data/c.txt",
    ]


def test_single_file_and_type_mismatches(s3: S3Server) -> None:
    assert list_input(at(s3, "s3://inputs/single.txt"), "uri_file") == ["s3://inputs/single.txt"]
    with pytest.raises(InputError, match="is a folder, not a file"):
        list_input(at(s3, "s3://inputs/data/"), "uri_file")
    with pytest.raises(InputError, match="is a file, not a folder"):
        list_input(at(s3, "s3://inputs/single.txt"))


def test_remote_files_become_local_copies_removed_afterwards(s3: S3Server) -> None:
    files = list_input(at(s3, "s3://inputs/data/"))
    with local_copies(files, s3.options()) as paths:
        assert [open(p, "rb").read() for p in paths] == [b"a", b"bb", b"ccc"]
        assert [os.path.basename(p) for p in paths] == ["a.txt", "b.txt", "c.txt"]
        workdir = os.path.dirname(os.path.dirname(paths[0]))
    assert not os.path.exists(workdir)


def test_a_failed_download_names_the_file_and_leaves_nothing(
    s3: S3Server, monkeypatch, tmp_path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    files = ["s3://inputs/data/a.txt", "s3://inputs/data/gone.txt"]
    with pytest.raises(InputError) as info:
        with local_copies(files, s3.options()):
            pass
    assert "no object or folder at this key" in assert_clean(info.value, files[1])
    assert os.listdir(tmp_path) == []


# --- bad inputs: clear errors naming the URI, never the secret -----------------------------


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("s3://no-such-bucket/data/", "bucket 'no-such-bucket' does not exist"),
        ("s3://no-such-bucket", "bucket 'no-such-bucket' does not exist"),
        ("s3://inputs/missing/", "no object or folder at this key"),
        ("s3://inputs/empty/", "is empty"),
        ("s3://inputs/nested/", "holds only subfolders (2)"),
    ],
)
def test_bad_folders(s3: S3Server, uri: str, problem: str) -> None:
    with pytest.raises(InputError) as info:
        list_input(at(s3, uri))
    assert problem in assert_clean(info.value, uri)
    assert info.value.hint


def test_missing_file(s3: S3Server) -> None:
    with pytest.raises(InputError) as info:
        list_input(at(s3, "s3://inputs/nope.txt"), "uri_file")
    assert "no object or folder" in assert_clean(info.value, "s3://inputs/nope.txt")


def test_no_credentials_anywhere(s3: S3Server) -> None:
    with pytest.raises(InputError) as info:
        list_input(at(s3, "s3://inputs/data/", key=None))
    message = assert_clean(info.value, "s3://inputs/data/")
    assert "no S3 credentials were found" in message and "AWS_ACCESS_KEY_ID" in message


def test_unreachable_endpoint(s3: S3Server) -> None:
    options = s3.options()
    options["client_kwargs"] = {"endpoint_url": "http://127.0.0.1:9"}
    with pytest.raises(InputError) as info:
        list_input(Location("s3://inputs/data/", options))
    assert "cannot reach the store" in assert_clean(info.value, "s3://inputs/data/")


@pytest.mark.parametrize(
    ("key", "secret"), [("AKIAUNKNOWNKEY000000", "unknown-secret-value"), (None, "wrong-secret")]
)
def test_wrong_credentials(strict_s3: S3Server, key: str | None, secret: str) -> None:
    key = key or strict_s3.user_key
    location = at(strict_s3, "s3://locked/data/", key=key, secret=secret)
    with pytest.raises(InputError) as info:
        list_input(location)
    message = assert_clean(info.value, "s3://locked/data/", secret, strict_s3.user_secret)
    assert "wrong credentials" in message and info.value.hint
    with pytest.raises(StorageError) as info:
        location.join("out.csv").write_atomic([b"x"])
    assert "wrong credentials" in assert_clean(info.value, "s3://locked/data/out.csv", secret)


def test_right_credentials_pass_the_strict_server(strict_s3: S3Server) -> None:
    location = at(
        strict_s3, "s3://locked/data/a.txt", key=strict_s3.user_key, secret=strict_s3.user_secret
    )
    assert list_input(location, "uri_file") == ["s3://locked/data/a.txt"]


def test_credentials_from_the_aws_environment(s3: S3Server, monkeypatch) -> None:
    uri, options = resolve_uri("s3://inputs/data/", {}.__getitem__)
    assert options == {}
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint_url)
    assert len(list_input(Location(uri, options))) == 3


def test_datastore_paths_on_s3(s3: S3Server) -> None:
    store = Datastore(
        type="s3", url="s3://inputs", endpoint_url=s3.endpoint_url, key=TEST_KEY, secret=TEST_SECRET
    )
    uri, options = resolve_uri("azureml://datastores/lake/paths/data/", {"lake": store}.get)
    assert list_input(Location(uri, options))[0] == "s3://inputs/data/a.txt"


# --- outputs --------------------------------------------------------------------------------


def test_atomic_write_read_exists_and_refusal_check(s3: S3Server) -> None:
    target = at(s3, "s3://outputs/job-1/predictions.csv")
    assert not target.exists()
    at(s3, "s3://outputs/job-1").makedirs()  # checks the bucket; creates nothing
    assert target.write_atomic(iter([b"a 1\n", b"b 2\n"])) == 8
    assert target.exists() and target.read_bytes() == b"a 1\nb 2\n"
    assert s3.keys("outputs", "job-1/") == ["job-1/predictions.csv"]


def test_a_failed_write_leaves_no_object(s3: S3Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"first rows\n"
        raise RuntimeError("the merge broke")

    target = at(s3, "s3://outputs/job-2/predictions.csv")
    with pytest.raises(RuntimeError):
        target.write_atomic(chunks())
    assert not target.exists() and s3.keys("outputs", "job-2/") == []


def test_output_bucket_must_exist(s3: S3Server) -> None:
    output = at(s3, "s3://no-output-bucket/job")
    assert not output.join("predictions.csv").exists()
    with pytest.raises(StorageError) as info:
        output.makedirs()
    message = assert_clean(info.value, "s3://no-output-bucket/job")
    assert "bucket 'no-output-bucket' does not exist" in message
    assert "no-output-bucket" not in {b["Name"] for b in s3.client().list_buckets()["Buckets"]}


def test_staging_style_listing_and_removal(s3: S3Server) -> None:
    root = at(s3, "s3://outputs/job-3/.staging")
    assert root.list_names() == []
    root.join("attempts", "2.json").write_atomic([b"{}"])
    root.join("attempts", "1.json").write_atomic([b"{}"])
    root.join("parts", "0.rows").write_atomic([b"x\n"])
    assert sorted(root.join("attempts").list_names()) == ["1.json", "2.json"]
    root.remove_tree()
    assert s3.keys("outputs", "job-3/") == []


def test_publish_folder_uploads_what_the_script_wrote(s3: S3Server, tmp_path) -> None:
    (tmp_path / "summary.txt").write_text("done")
    (tmp_path / "per-file").mkdir()
    (tmp_path / "per-file" / "a.json").write_text("{}")
    uploaded = publish_folder(tmp_path, at(s3, "s3://outputs/job-4"))
    assert uploaded == ["s3://outputs/job-4/summary.txt", "s3://outputs/job-4/per-file/a.json"]
    assert s3.get("outputs", "job-4/summary.txt") == b"done"
    assert publish_folder(tmp_path, Location(str(tmp_path / "local-out"))) == []


def test_locations_never_show_their_credentials(s3: S3Server) -> None:
    location = at(s3, "s3://outputs/x")
    for text in (str(location), repr(location), location.display, repr(location.join("y"))):
        assert TEST_SECRET not in text and TEST_KEY not in text
