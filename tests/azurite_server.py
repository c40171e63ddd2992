"""A real Azure Blob Storage server on loopback for storage tests: Microsoft's Azurite.

:func:`running_azurite` installs the npm package ``azurite`` once into a cache folder
(``$PBE_TEST_TOOLS/azurite``, default ``~/.cache/pbe-test-tools/azurite``; needs node and
npm), starts ``azurite-blob`` on a free loopback port with its data in a temporary
folder, points the well-known development account ``devstoreaccount1`` at it through
``PBE_AZURE_BLOB_ENDPOINT_DEVSTOREACCOUNT1`` (so ``https://devstoreaccount1.blob.core.
windows.net/…`` URLs reach it), and stops it afterwards. Azure credentials in the
environment are removed meanwhile, so nothing reaches real Azure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from support import answering, free_port

# Azurite's documented development account and key (public, the same in every Azurite).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
ENDPOINT_VARIABLE = f"PBE_AZURE_BLOB_ENDPOINT_{ACCOUNT.upper()}"
_AZURE_VARIABLES = (
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CLIENT_ID",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_STORAGE_TENANT_ID",
    "AZURE_STORAGE_ANON",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
)


@dataclass
class Azurite:
    """A running Azurite blob service; ``endpoint`` is devstoreaccount1's path-style URL."""

    endpoint: str

    def service(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(
            self.endpoint, credential={"account_name": ACCOUNT, "account_key": KEY}
        )

    def url(self, container: str, path: str = "") -> str:
        """The canonical https URL of a blob or folder (reaches Azurite through the mapping)."""
        base = f"https://{ACCOUNT}.blob.core.windows.net/{container}"
        return f"{base}/{path}" if path else base

    def put(self, container: str, files: dict[str, bytes], *, public: bool = False) -> None:
        """Create ``container`` if needed (public: anonymous read and list) and upload."""
        service = self.service()
        client = service.get_container_client(container)
        if not client.exists():
            client.create_container(public_access="container" if public else None)
        for name, body in files.items():
            client.upload_blob(name, body, overwrite=True)

    def get(self, container: str, name: str) -> bytes:
        return self.service().get_blob_client(container, name).download_blob().readall()

    def names(self, container: str, prefix: str = "") -> list[str]:
        client = self.service().get_container_client(container)
        return sorted(b.name for b in client.list_blobs(name_starts_with=prefix or None))

    def sas(self, container: str, *, write: bool = False) -> str:
        """A container SAS token (read and list; ``write`` adds create, write, delete)."""
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        permission = ContainerSasPermissions(
            read=True, list=True, write=write, create=write, delete=write, add=write
        )
        return generate_container_sas(
            ACCOUNT,
            container,
            account_key=KEY,
            permission=permission,
            expiry=datetime.now(timezone.utc) + timedelta(hours=2),
        )


def azurite_command() -> Path:
    """The ``azurite-blob`` executable, installed with npm into the cache folder if missing."""
    root = Path(os.environ.get("PBE_TEST_TOOLS") or Path.home() / ".cache" / "pbe-test-tools")
    folder = root / "azurite"
    command = folder / "node_modules" / ".bin" / "azurite-blob"
    if command.exists():
        return command
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.fail(
            "the Azure Blob tests need node and npm to install Azurite "
            "(or azurite installed under $PBE_TEST_TOOLS/azurite)",
            pytrace=False,
        )
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "azurite@3"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0 or not command.exists():
        pytest.fail(f"npm install azurite failed:\n{done.stderr[-2000:]}", pytrace=False)
    return command


@contextmanager
def running_azurite(attempts: int = 3) -> Iterator[Azurite]:
    """Start Azurite's blob service on a free loopback port; stop it when the block ends."""
    command = azurite_command()
    for _ in range(attempts):
        port = free_port()
        data = tempfile.mkdtemp(prefix="pbe-azurite-")
        process = subprocess.Popen(
            [
                str(command),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--location",
                data,
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
                "--disableTelemetry",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            server = Azurite(f"http://127.0.0.1:{port}/{ACCOUNT}")
            if not answering(f"{server.endpoint}?comp=list", process, 60):
                continue  # the port was taken meanwhile: try another
            with isolated_azure_env(server):
                yield server
            return
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            shutil.rmtree(data, ignore_errors=True)
    raise RuntimeError("Azurite did not start")


@contextmanager
def isolated_azure_env(server: Azurite) -> Iterator[pytest.MonkeyPatch]:
    """No Azure credentials in the environment; devstoreaccount1 maps to ``server``."""
    with pytest.MonkeyPatch.context() as patch:
        for name in _AZURE_VARIABLES:
            patch.delenv(name, raising=False)
        patch.setenv(ENDPOINT_VARIABLE, server.endpoint)
        yield patch
