"""The production profile's object store: an S3-compatible server named by two variables.

FLIGHTLINE_S3_ENDPOINT=http://minio.flightline.svc:9000   (scheme + host + port)
FLIGHTLINE_S3_BUCKET=flightline
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY                   (from the flightline-secrets Secret)

With them set, everything that is a file in the embedded profile lives in the bucket instead:
the lake, reports, the prediction log, MLflow's artifacts and exported Bentos (DataPaths puts
`s3://<bucket>/...` URIs in place of folders). Nothing else changes; unset, nothing here runs.

Every reader and writer goes through pyarrow's S3 filesystem (the lake, the prediction log),
MLflow's boto3 client (artifacts), or DuckDB's httpfs extension (Feast's offline store), each
pointed at the same endpoint by this module. Failures to reach the server are re-raised as
ObjectStoreUnavailable naming the endpoint. S3 makes an object visible only once its upload
completed, and our writers put to a temporary key and rename, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

# pyarrow is imported inside the functions that use it: the code location imports
# this module and must load without it (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import pyarrow.fs as pafs

ENDPOINT_ENV = "FLIGHTLINE_S3_ENDPOINT"
BUCKET_ENV = "FLIGHTLINE_S3_BUCKET"
REGION_ENV = "FLIGHTLINE_S3_REGION"
CONNECT_TIMEOUT_S = 3
REQUEST_TIMEOUT_S = 30
# Markers of a transport failure in pyarrow's and botocore's messages (not a missing key).
_UNREACHABLE = (
    "NETWORK_CONNECTION",
    "curlCode",
    "Could not connect",
    "Connection refused",
    "Connect timeout",
    "EndpointConnectionError",
    "Could not resolve",
    "timed out",
)


class ObjectStoreUnavailable(OSError):
    """The object store cannot be reached, or its bucket is missing or refuses our keys."""


@dataclass(frozen=True)
class ObjectStore:
    endpoint: str  # http(s)://host:port
    bucket: str
    access_key: str | None = None
    secret_key: str | None = None
    region: str = "us-east-1"

    @classmethod
    def from_env(cls) -> ObjectStore | None:
        endpoint = os.environ.get(ENDPOINT_ENV) or None
        if endpoint is None:
            return None
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{ENDPOINT_ENV}={endpoint}: expected http(s)://host:port")
        bucket = os.environ.get(BUCKET_ENV) or ""
        if not bucket:
            raise ValueError(f"{ENDPOINT_ENV} is set but {BUCKET_ENV} is not: name the bucket")
        return cls(
            endpoint.rstrip("/"),
            bucket,
            os.environ.get("AWS_ACCESS_KEY_ID") or None,
            os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
            os.environ.get(REGION_ENV) or os.environ.get("AWS_REGION") or "us-east-1",
        )

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).netloc

    @property
    def scheme(self) -> str:
        return urlsplit(self.endpoint).scheme

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *(p.strip("/") for p in parts)])

    def filesystem(self) -> pafs.S3FileSystem:
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            endpoint_override=self.host,
            scheme=self.scheme,
            connect_timeout=CONNECT_TIMEOUT_S,
            request_timeout=REQUEST_TIMEOUT_S,
            # Two tries, not AWS's default of ten with backoff: a store that is down is an error
            # within seconds, not a step that hangs.
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=2),
            allow_bucket_creation=False,
            allow_bucket_deletion=False,
        )

    def check(self) -> None:
        """Reach the server and the bucket, or raise naming the endpoint."""
        import pyarrow.fs as pafs

        with unavailable_as_error(self):
            info = self.filesystem().get_file_info(self.bucket)
        if info.type == pafs.FileType.NotFound:
            raise ObjectStoreUnavailable(
                f"object store {self.endpoint}: bucket {self.bucket!r} does not exist "
                f"(create it, or fix {BUCKET_ENV})"
            )

    def client_env(self) -> dict[str, str]:
        """What boto3 (MLflow's artifact client) needs to find the same server."""
        env = {"MLFLOW_S3_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": self.region}
        if self.access_key:
            env["AWS_ACCESS_KEY_ID"] = self.access_key
        if self.secret_key:
            env["AWS_SECRET_ACCESS_KEY"] = self.secret_key
        return env

    def duckdb_secret_sql(self, name: str = "flightline_lake") -> str:
        def quoted(value: str) -> str:
            return "'" + value.replace("'", "''") + "'"

        options = {
            "TYPE": "s3",
            "KEY_ID": quoted(self.access_key or ""),
            "SECRET": quoted(self.secret_key or ""),
            "REGION": quoted(self.region),
            "ENDPOINT": quoted(self.host),
            "URL_STYLE": "'path'",  # MinIO and most S3-compatible servers: bucket in the path
            "USE_SSL": "true" if self.scheme == "https" else "false",
            "SCOPE": quoted(f"s3://{self.bucket}"),
        }
        body = ", ".join(f"{k} {v}" for k, v in options.items())
        return f"CREATE OR REPLACE SECRET {name} ({body})"


def is_unreachable(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return any(marker in text for marker in _UNREACHABLE)


@contextlib.contextmanager
def unavailable_as_error(store: ObjectStore | None) -> Iterator[None]:
    """Re-raise a transport failure as ObjectStoreUnavailable naming the endpoint."""
    try:
        yield
    except ObjectStoreUnavailable:
        raise
    except Exception as exc:
        if store is None or not is_unreachable(exc):
            raise
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise ObjectStoreUnavailable(
            f"object store {store.endpoint} (bucket {store.bucket}) is unreachable: {first}"
        ) from exc


def is_remote(root: str) -> bool:
    return root.startswith("s3://")


def store_for(root: str) -> ObjectStore | None:
    """The object store an s3:// root lives in (configured by the environment)."""
    if not is_remote(root):
        return None
    store = ObjectStore.from_env()
    if store is None:
        raise ValueError(f"{root}: an s3:// location needs {ENDPOINT_ENV} and {BUCKET_ENV}")
    bucket = root.removeprefix("s3://").split("/", 1)[0]
    if bucket != store.bucket:
        raise ValueError(f"{root} is outside the configured bucket {store.bucket!r}")
    return store


def under(root: Path | str, *parts: str) -> Path | str:
    """A location below a root: a Path below a folder, a URI below an s3:// prefix."""
    if is_remote(str(root)):
        return "/".join([str(root).rstrip("/"), *parts])
    return Path(root).joinpath(*parts)


def filesystem_for(root: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the base path within it for a local folder or an s3:// URI."""
    import pyarrow.fs as pafs

    store = store_for(root)
    if store is not None:
        return store.filesystem(), root.removeprefix("s3://").rstrip("/")
    path = os.path.abspath(root)
    return pafs.LocalFileSystem(), path


def write_bytes_atomic(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write to a temporary name, then rename: a reader sees the whole file or nothing."""
    _make_parent(fs, path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with fs.open_output_stream(tmp) as out:
        out.write(data)
    fs.move(tmp, path)


def _make_parent(fs: pafs.FileSystem, path: str) -> None:
    import pyarrow.fs as pafs

    # S3 has no folders: creating one would only add marker objects.
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)


def upload_file(root: str, relative: str, local: Path) -> str:
    """Copy a local file under a root (folder or s3:// URI), atomically; returns where."""
    import pyarrow.fs as pafs

    fs, base = filesystem_for(root)
    target = f"{base}/{relative}"
    with unavailable_as_error(store_for(root)):
        _make_parent(fs, target)
        tmp = f"{target}.tmp-{os.getpid()}"
        pafs.copy_files(str(local), tmp, destination_filesystem=fs)
        fs.move(tmp, target)
    return f"{root.rstrip('/')}/{relative}"


def download_file(uri: str, local: Path) -> Path:
    """Copy a file at a folder path or s3:// URI to a local path."""
    import pyarrow.fs as pafs

    fs, path = filesystem_for(uri)
    local.parent.mkdir(parents=True, exist_ok=True)
    with unavailable_as_error(store_for(uri)):
        if fs.get_file_info(path).type != pafs.FileType.File:
            raise FileNotFoundError(f"{uri} does not exist")
        pafs.copy_files(path, str(local), source_filesystem=fs)
    return local


def httpfs_extension() -> Path:
    """DuckDB's httpfs extension as the duckdb-extension-httpfs package ships it (never
    downloaded at run time): built for exactly the pinned duckdb."""
    import duckdb
    import duckdb_extension_httpfs

    folder = Path(duckdb_extension_httpfs.__file__).parent / "extensions"
    version = duckdb.__version__
    found = sorted(folder.glob(f"v{version}/httpfs.duckdb_extension"))
    if not found:
        shipped = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
        raise RuntimeError(
            f"duckdb {version}: duckdb-extension-httpfs ships no build for it ({shipped}); "
            "pin both to the same version"
        )
    return found[0]


def configure_duckdb(execute, store: ObjectStore) -> None:
    """Make a DuckDB connection read s3://<bucket>/ from the store: install the packaged
    httpfs extension into DuckDB's extension folder (a copy, no network), load it, and register
    the endpoint and keys as a secret scoped to the bucket. `execute` runs one SQL statement."""
    execute(f"INSTALL '{httpfs_extension()}'")
    execute("LOAD httpfs")
    execute(store.duckdb_secret_sql())
