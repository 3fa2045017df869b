"""moto's threaded S3 server with test credentials in the environment (inherited by worker
subprocesses), for the backup tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import pytest
from moto.server import ThreadedMotoServer


@contextmanager
def moto_s3(*buckets: str) -> Iterator[str]:
    """The server's endpoint URL, with ``buckets`` created."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            patch.delenv(variable, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for bucket in buckets:
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        try:
            yield endpoint
        finally:
            server.stop()
