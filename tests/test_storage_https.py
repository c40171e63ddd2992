"""Public http(s) files as inputs, served by a real HTTP server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3_server import serving_folder

from blocks.datastore import resolve_uri
from blocks.errors import InputError
from flows.inputs import list_input, local_copies
from flows.storage import Location

pytestmark = pytest.mark.timeout(60)

SIGNATURE = "sig-0123456789abcdef"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a loopback server over a folder holding ``files/a.png`` and ``b.txt``."""
    root = tmp_path_factory.mktemp("www")
    (root / "files").mkdir()
    (root / "files" / "a.png").write_bytes(b"\x89PNG fake image")
    (root / "files" / "b.txt").write_text("hello")
    with serving_folder(root) as base_url:
        yield base_url


def test_a_file_is_one_input_and_needs_no_options(web: str) -> None:
    uri, options = resolve_uri(f"{web}/files/a.png", {}.__getitem__)
    assert (uri, options) == (f"{web}/files/a.png", {})
    assert list_input(Location(uri), "uri_file") == [uri]


def test_the_worker_gets_a_local_copy_removed_afterwards(web: str) -> None:
    files = [f"{web}/files/a.png", f"{web}/files/b.txt?sig={SIGNATURE}"]
    with local_copies(files, {}) as paths:
        assert [os.path.basename(p) for p in paths] == ["a.png", "b.txt"]
        assert Path(paths[1]).read_text() == "hello"
    assert not any(os.path.exists(p) for p in paths)


def test_a_folder_over_https_is_refused_with_a_hint(web: str) -> None:
    with pytest.raises(InputError) as info:
        list_input(Location(f"{web}/files/"), "uri_folder")
    assert f"{web}/files/" in str(info.value)
    assert "uri_file" in info.value.hint and "S3" in info.value.hint


def test_a_missing_file_is_named_with_its_signature_masked(web: str) -> None:
    uri = f"{web}/files/missing.png?sv=2024&sig={SIGNATURE}"
    with pytest.raises(InputError) as info:
        list_input(Location(uri), "uri_file")
    message = str(info.value)
    assert f"{web}/files/missing.png?sv=2024&sig=***" in message and "does not exist" in message
    assert SIGNATURE not in message


def test_a_failed_download_is_an_input_error(web: str) -> None:
    with pytest.raises(InputError, match="does not exist"):
        with local_copies([f"{web}/files/gone.png"], {}):
            pass


def test_an_unreachable_server(web: str) -> None:
    with pytest.raises(InputError) as info:
        list_input(Location("http://127.0.0.1:9/a.png"), "uri_file")
    assert "cannot reach the store" in str(info.value)
