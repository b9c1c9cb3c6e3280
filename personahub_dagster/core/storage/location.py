"""Where a lake is: a local folder or ``s3://bucket/prefix``, parsed once into a :class:`Location` that
carries the object store's settings from the standard ``AWS_*`` variables (the same settings serve
delta-rs and obstore)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from personahub_dagster.core.config.secrets import register

REMOTE_SCHEMES = ("s3", "s3a")
_TIMEOUTS = {"connect_timeout": "5s", "timeout": "120s"}


class StorageError(RuntimeError):
    """A lake location that cannot be used as configured; the message names the setting to fix."""


@dataclass(frozen=True)
class Location:
    """A parsed lake location: ``uri`` is an absolute path for a local lake, ``s3://bucket/prefix``
    otherwise; ``options`` are the object-store settings for delta-rs and obstore (empty when local)."""

    uri: str
    options: Mapping[str, str] = field(default_factory=dict, repr=False)  # holds credentials: never shown

    @property
    def is_local(self) -> bool:
        return not self.uri.startswith(tuple(f"{s}://" for s in REMOTE_SCHEMES))

    @property
    def bucket(self) -> str:
        return urlparse(self.uri).netloc

    @property
    def prefix(self) -> str:
        return urlparse(self.uri).path.strip("/")

    def join(self, *parts: str) -> str:
        return "/".join([self.uri.rstrip("/"), *parts])

    def key(self) -> str:
        """A short stable name for this location (for files kept elsewhere on its behalf)."""
        return hashlib.sha256(self.uri.encode()).hexdigest()[:12]

    def __str__(self) -> str:
        return self.uri


def parse_location(location: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Location:
    """A path or URL → :class:`Location`; S3 settings come from ``env`` (default: the process's)."""
    text = os.fspath(location)
    scheme = urlparse(text).scheme.lower() if "://" in text else ""
    if not scheme or scheme == "file":
        path = urlparse(text).path if scheme == "file" else text
        return Location(str(Path(path).expanduser().resolve()))
    if scheme not in REMOTE_SCHEMES:
        raise StorageError(
            f"PERSONAHUB_LAKE={text}: unsupported scheme {scheme!r}; use a path or s3://bucket/prefix"
        )
    parsed = urlparse(text)
    if not parsed.netloc:
        raise StorageError(f"PERSONAHUB_LAKE={text}: no bucket in the URL; use s3://bucket/prefix")
    uri = f"s3://{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
    return Location(uri, s3_options(os.environ if env is None else env))


def s3_options(env: Mapping[str, str]) -> dict[str, str]:
    """delta-rs / object_store settings from the standard AWS variables.

    ``conditional_put=etag``: commits are created with ``If-None-Match: *`` — what makes concurrent
    writers safe without a lock service (AWS S3, R2, MinIO and SeaweedFS honour it; delta-rs issue 2894).
    Plain-HTTP endpoints (a server on 127.0.0.1) are allowed only when the endpoint says ``http://``."""
    opts = {"conditional_put": "etag", **_TIMEOUTS}
    for var, key in (
        ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
        ("AWS_SESSION_TOKEN", "aws_session_token"),
        ("AWS_REGION", "aws_region"),
        ("AWS_ENDPOINT_URL", "aws_endpoint"),
    ):
        if env.get(var):
            opts[key] = env[var]
    register(opts.get("aws_secret_access_key"), opts.get("aws_session_token"))  # redacted everywhere
    opts.setdefault("aws_region", env.get("AWS_DEFAULT_REGION") or "us-east-1")
    if opts.get("aws_endpoint", "").startswith("http://"):
        opts["allow_http"] = "true"
    return opts
