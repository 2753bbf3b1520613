"""A location is a local path or a URI; this module turns one into a pyarrow filesystem and a path.

    /data/warc/x.warc.gz, runs/demo      the local disk
    s3://bucket/key                      Amazon S3, or any S3-compatible store (`s3_endpoint_url`)
    gs://bucket/key                      Google Cloud Storage
    https://host/path                    read only (Common Crawl's data.commoncrawl.org), via fsspec

Credentials come from where each store's own tools look (for S3: AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role); the endpoint and region from the run's
`run.storage` settings or, without them, AWS_ENDPOINT_URL and AWS_DEFAULT_REGION. The settings
travel with every task, so the workers of a cluster reach the store as the driver does.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs

REMOTE_SCHEMES = ("s3", "gs", "gcs", "http", "https")
READ_ONLY_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class StorageSettings:
    s3_endpoint_url: str | None = None  # an S3-compatible store: MinIO, Ceph, R2, moto
    s3_region: str | None = None
    anonymous: bool = False  # public buckets (Common Crawl's s3://commoncrawl) without credentials
    scratch_dir: str | None = None  # where a worker stages a shard's remote files (default: the temp dir)

    def as_dict(self) -> dict:
        return asdict(self)


_settings = StorageSettings()


def configure(settings: StorageSettings | dict | None) -> None:
    """Set this process's store settings (the driver's, then each task's, from the run config)."""
    global _settings
    if isinstance(settings, dict):
        settings = StorageSettings(**settings)
    _settings = settings or StorageSettings()


def settings() -> StorageSettings:
    return _settings


def scheme_of(uri: str | Path) -> str:
    """The URI's scheme, or "" for a local path."""
    scheme = urlsplit(str(uri)).scheme.lower()
    return scheme if scheme in REMOTE_SCHEMES else ""


def is_remote(uri: str | Path) -> bool:
    return bool(scheme_of(uri))


class Location(str):
    """A remote URI that joins with `/` and has `name` and `parent`, as a local Path does, so that
    planning code builds `run_dir / "extract" / f"{shard}.parquet"` the same way for both."""

    def __new__(cls, uri: str) -> "Location":
        scheme, rest = str(uri).split("://", 1)
        return super().__new__(cls, f"{scheme.lower()}://{rest.rstrip('/')}")

    def __truediv__(self, part: str | Path) -> "Location":
        return Location(f"{self}/{str(part).strip('/')}")

    @property
    def name(self) -> str:
        return self.rsplit("/", 1)[1]

    @property
    def parent(self) -> "Location":
        head = self.rsplit("/", 1)[0]
        if head.endswith(":/"):  # s3://bucket has no parent
            return self
        return Location(head)

    def __repr__(self) -> str:
        return f"Location({str(self)!r})"


def location(uri: str | Path) -> Path | Location:
    """A local path (absolute) or a remote Location."""
    return Location(str(uri)) if is_remote(uri) else Path(uri).resolve()


def resolve(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    """The filesystem that holds `uri` and the path on it."""
    scheme = scheme_of(uri)
    if not scheme:
        return _filesystem(""), str(Path(uri).resolve())
    parts = urlsplit(str(uri))
    if scheme in READ_ONLY_SCHEMES:
        return _filesystem(scheme), str(uri)
    return _filesystem(scheme), f"{parts.netloc}{parts.path}".rstrip("/")


def _filesystem(scheme: str) -> pafs.FileSystem:
    if scheme != "s3":
        return _client(scheme, _settings.anonymous)
    # Read each time, so that the client follows the settings and the environment as they are now.
    endpoint = _settings.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = _settings.s3_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return _client(scheme, _settings.anonymous, endpoint, region)


@functools.lru_cache(maxsize=None)
def _client(scheme: str, anonymous: bool, endpoint: str | None = None, region: str | None = None) -> pafs.FileSystem:
    """One client per store and settings, for the life of the process."""
    if not scheme:
        return pafs.LocalFileSystem()
    if scheme == "s3":
        options = {"anonymous": anonymous, "endpoint_override": endpoint, "region": region}
        return pafs.S3FileSystem(**{k: v for k, v in options.items() if v is not None})
    if scheme in ("gs", "gcs"):
        return pafs.GcsFileSystem(anonymous=anonymous)
    from fsspec.implementations.http import HTTPFileSystem  # aiohttp: installed with ray[default]

    return pafs.PyFileSystem(pafs.FSSpecHandler(HTTPFileSystem()))
