"""Real servers on loopback for storage tests: moto's S3 server and a static HTTP server.

:func:`running_s3_server` starts ``python -m moto.server`` on a free loopback port and
stops it afterwards. :func:`isolated_aws_env` makes sure nothing reaches real AWS: it
removes AWS credentials and profiles from the environment, disables the EC2 metadata
lookup and points the default S3 endpoint at a closed loopback port, so a test that
forgets ``endpoint_url`` fails fast instead of calling out.

moto accepts any credentials unless told to enforce them; ``strict=True`` gives a server
that does (an IAM user with S3 rights is created first, see :attr:`S3Server.user_key`).
moto's signature check mishandles ``/`` in query strings (``ListObjectsV2`` with a
prefix), so strict servers are only good for *wrong*-credential tests.

:func:`serving_folder` serves a local folder over plain HTTP on loopback, standing in for
public https files.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from support import answering, free_port

# Placeholder credentials for moto, which accepts any when not strict.
TEST_KEY = "AKIATESTKEY00000001"
TEST_SECRET = "test-secret-d0n0tl3ak-9f8e7d6c"
REGION = "us-east-1"
_AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@dataclass
class S3Server:
    """A running moto server; ``user_key``/``user_secret`` are valid on a strict server."""

    endpoint_url: str
    user_key: str = TEST_KEY
    user_secret: str = TEST_SECRET

    def client(self, key: str = TEST_KEY, secret: str = TEST_SECRET) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )

    def options(self, key: str | None = TEST_KEY, secret: str | None = TEST_SECRET) -> dict:
        """fsspec storage options for this server (no key: the AWS credential chain)."""
        options: dict[str, Any] = {
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": REGION},
            "config_kwargs": {"retries": {"max_attempts": 1}},
        }
        if key is not None:
            options.update(key=key, secret=secret)
        return options

    def put(self, bucket: str, files: dict[str, bytes]) -> None:
        """Create ``bucket`` if needed and upload ``files`` (key → content)."""
        client = self.client(self.user_key, self.user_secret)
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)
        for key, body in files.items():
            client.put_object(Bucket=bucket, Key=key, Body=body)

    def get(self, bucket: str, key: str) -> bytes:
        return (
            self.client(self.user_key, self.user_secret)
            .get_object(Bucket=bucket, Key=key)["Body"]
            .read()
        )

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        client = self.client(self.user_key, self.user_secret)
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@contextmanager
def isolated_aws_env() -> Iterator[pytest.MonkeyPatch]:
    """No AWS credentials, profiles or metadata service; S3 defaults to a closed port."""
    with pytest.MonkeyPatch.context() as patch:
        for name in _AWS_VARIABLES:
            patch.delenv(name, raising=False)
        nowhere = os.path.join(os.path.dirname(__file__), ".no-such-aws-file")
        patch.setenv("AWS_CONFIG_FILE", nowhere)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", nowhere)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: never AWS
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        yield patch


@contextmanager
def running_s3_server(*, strict: bool = False, attempts: int = 3) -> Iterator[S3Server]:
    """Start moto's server on a free loopback port; stop it when the block ends."""
    for _ in range(attempts):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            server = S3Server(f"http://127.0.0.1:{port}")
            if not answering(f"{server.endpoint_url}/moto-api/", process, 30):
                continue  # the port was taken meanwhile: try another
            if strict:
                _enforce_credentials(server)
            yield server
            return
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    raise RuntimeError("moto server did not start")


def _enforce_credentials(server: S3Server) -> None:
    iam = boto3.client(
        "iam",
        endpoint_url=server.endpoint_url,
        region_name=REGION,
        aws_access_key_id=TEST_KEY,
        aws_secret_access_key=TEST_SECRET,
    )
    iam.create_user(UserName="batch-tester")
    iam.put_user_policy(
        UserName="batch-tester",
        PolicyName="s3-all",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    )
    access = iam.create_access_key(UserName="batch-tester")["AccessKey"]
    server.user_key, server.user_secret = access["AccessKeyId"], access["SecretAccessKey"]
    request = urllib.request.Request(  # from now on, every request must be signed right
        f"{server.endpoint_url}/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    urllib.request.urlopen(request, timeout=10).close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serving_folder(root: str | os.PathLike[str]) -> Iterator[str]:
    """Serve ``root`` over HTTP on a free loopback port; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
