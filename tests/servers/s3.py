"""An S3-compatible store for the tests: moto's standalone server on a free loopback port.

The pipeline talks to it as to any S3 endpoint (pyarrow's S3 client, the AWS_* variables), so the
tests exercise the real client, its requests and its errors; only the server is a stand-in.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from tests.servers.process import free_port, serving

MOTO = str(Path(sys.executable).with_name("moto_server"))


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        """The variables a client (and a Ray worker started with them) needs to reach the server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(endpoint_override=self.endpoint, access_key="testing", secret_key="testing",
                                 region="us-east-1", allow_bucket_creation=True, allow_bucket_deletion=True)

    def create_bucket(self, name: str) -> str:
        self.filesystem().create_dir(name)
        return f"s3://{name}"

    def upload(self, local: str | Path, uri: str) -> None:
        fs = self.filesystem()
        pafs.copy_files(str(local), uri.removeprefix("s3://"), source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=fs)


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """moto's server in its own process group, until the block ends."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with serving([MOTO, "-H", "127.0.0.1", "-p", str(port)], f"{endpoint}/moto-api/", name="moto's server"):
        yield S3Server(endpoint)
