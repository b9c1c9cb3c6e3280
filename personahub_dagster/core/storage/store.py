"""Where the lake's bytes live: a local folder or a prefix of an S3-compatible bucket.

``PERSONAHUB_LAKE`` is a path (``./lake``, the default) or a URL (``s3://bucket/prefix``). Delta Lake
writes the tables itself (:mod:`.lake`); everything else the lake holds — the hub's dedup state,
dataset exports, reports — goes through :class:`Store`, one small interface over both:

* **local**: temp file + fsync + rename (readers see the old file or the new one, never a part), and a
  compare-and-swap under a file lock;
* **S3**: ``obstore`` (the Rust ``object_store`` that delta-rs itself uses, so one set of settings
  serves both): a PUT is atomic per object, and compare-and-swap is a conditional PUT (``If-Match`` on
  the ETag, ``If-None-Match: *`` to create) — the same mechanism Delta's commits rely on.

S3 settings are the standard variables — ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``, ``AWS_ENDPOINT_URL`` (any S3-compatible server: MinIO, SeaweedFS, R2, …), optionally
``AWS_SESSION_TOKEN``. :func:`check_store` turns the ways a remote lake is misconfigured (unreachable
endpoint, wrong credentials, missing bucket) into one line that names the setting to fix, before
anything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import urlparse

from personahub_dagster.core.config.secrets import redact, register

_UMASK = os.umask(0)
os.umask(_UMASK)

REMOTE_SCHEMES = ("s3", "s3a")
_LOST_RACE = ("AlreadyExistsError", "PreconditionError")  # obstore: a conditional PUT found it changed
_TIMEOUTS = {"connect_timeout": "5s", "timeout": "120s"}
T = TypeVar("T")


class StorageError(RuntimeError):
    """A lake location that cannot be used as configured; the message names the setting to fix."""


class ConcurrentUpdate(RuntimeError):
    """A compare-and-swap found the object changed since it was read: another writer got there first."""


READ_ATTEMPTS = 5  # a read that fails for any reason but "not found" is tried this often, then raises


def _transient(exc: BaseException) -> bool:
    return not isinstance(exc, FileNotFoundError | ConcurrentUpdate | StorageError)


def retried(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` retried with exponential backoff (0.2 s doubling, up to 5 s) when it fails for any reason
    but "not found": a read of shared state that hits a network blip, a throttled request or a 5xx must
    neither fail the night nor — worse — be taken for "there is no state", which would start the hub
    over. After :data:`READ_ATTEMPTS` the last error is raised as it was."""
    import tenacity

    return tenacity.retry(
        retry=tenacity.retry_if_exception(_transient),
        stop=tenacity.stop_after_attempt(READ_ATTEMPTS),
        wait=tenacity.wait_exponential(multiplier=0.2, max=5),
        reraise=True,
    )(fn)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a local file through a temp file + fsync + rename: readers see the old file or the complete
    new one, never a part; a crash leaves at most a hidden temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the file should read like any other
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


class Store:
    """Files under one folder of the lake, local or remote. Keys are ``/``-separated relative names."""

    def __init__(self, location: Location, prefix: str = ""):
        self.location = location
        self.prefix = prefix.strip("/")
        self._remote = None

    def child(self, name: str) -> Store:
        return Store(self.location, f"{self.prefix}/{name}" if self.prefix else name)

    @property
    def is_local(self) -> bool:
        return self.location.is_local

    def uri(self, key: str = "") -> str:
        """Where ``key`` is, as a user would type it (a path, or an s3:// URL)."""
        return self.location.join(*[p for p in (self.prefix, key) if p])

    def local_path(self, key: str = "") -> Path | None:
        """The file's path when the store is local (for memory-mapping), else None."""
        return Path(self.uri(key)) if self.is_local else None

    # -- remote ----------------------------------------------------------------------------------
    def _s3(self):
        if self._remote is None:
            self._remote = _s3_store(self.location)
        return self._remote

    def _key(self, key: str) -> str:
        return "/".join(p for p in (self.location.prefix, self.prefix, key) if p)

    # -- operations ------------------------------------------------------------------------------
    def put(self, key: str, data: bytes | Callable[[BinaryIO], object]) -> str:
        """Write ``key`` whole (bytes, or a function writing to a binary file); returns its URI."""
        if self.is_local:
            write = data if callable(data) else (lambda fh: fh.write(data))
            atomic_write(self.local_path(key), write)
        else:
            import obstore

            obstore.put(self._s3(), self._key(key), _as_bytes(data))
        return self.uri(key)

    @retried
    def get(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError if there is none."""
        if self.is_local:
            return self.local_path(key).read_bytes()
        import obstore

        try:
            return bytes(obstore.get(self._s3(), self._key(key)).bytes())
        except FileNotFoundError:
            raise
        except Exception as exc:
            if _status(exc) in (404, 412):  # SeaweedFS answers 412 to conditional reads of nothing
                raise FileNotFoundError(self.uri(key)) from exc
            raise

    @retried
    def exists(self, key: str) -> bool:
        if self.is_local:
            return self.local_path(key).exists()
        import obstore

        try:
            obstore.head(self._s3(), self._key(key))
            return True
        except FileNotFoundError:
            return False

    @retried
    def list(self, prefix: str = "") -> list[str]:
        """Keys below ``prefix`` (recursively), relative to this store, sorted."""
        if self.is_local:
            base = self.local_path()
            start = base / prefix if prefix else base
            if not start.exists():
                return []
            return sorted(
                str(p.relative_to(base))
                for p in start.rglob("*")
                if p.is_file() and not p.name.startswith(".")
            )
        import obstore

        root = self._key("")
        found = []
        for batch in obstore.list(self._s3(), prefix=self._key(prefix) or None):
            found += [m["path"][len(root) :].lstrip("/") for m in batch]
        return sorted(found)

    def delete(self, keys: list[str]) -> None:
        if self.is_local:
            for key in keys:
                self.local_path(key).unlink(missing_ok=True)
            return
        import obstore

        if keys:
            obstore.delete(self._s3(), [self._key(k) for k in keys])

    # -- compare-and-swap ------------------------------------------------------------------------
    @retried
    def read_versioned(self, key: str) -> tuple[bytes | None, str | None]:
        """The object's bytes and a version token for :meth:`swap` (None, None when absent)."""
        if self.is_local:
            try:
                data = self.local_path(key).read_bytes()
            except FileNotFoundError:
                return None, None
            return data, hashlib.sha256(data).hexdigest()
        import obstore

        try:
            result = obstore.get(self._s3(), self._key(key))
        except FileNotFoundError:
            return None, None
        return bytes(result.bytes()), result.meta["e_tag"]

    def swap(self, key: str, data: bytes, expected: str | None) -> str:
        """Replace ``key`` only if it is still at version ``expected`` (None: only if absent) and return
        its new version token; :class:`ConcurrentUpdate` otherwise. Local: under a file lock; S3: a
        conditional PUT."""
        if self.is_local:
            with self._local_lock(key):
                _, current = self.read_versioned(key)
                if current != expected:
                    raise ConcurrentUpdate(f"{self.uri(key)} changed since it was read")
                self.put(key, data)
            return hashlib.sha256(data).hexdigest()
        import obstore

        mode = "create" if expected is None else {"e_tag": expected}
        try:
            return obstore.put(self._s3(), self._key(key), data, mode=mode)["e_tag"]
        except Exception as exc:
            if type(exc).__name__ in _LOST_RACE or _status(exc) in (409, 412):
                raise ConcurrentUpdate(f"{self.uri(key)} changed since it was read") from exc
            raise

    @contextlib.contextmanager
    def _local_lock(self, key: str) -> Iterator[None]:
        from filelock import FileLock

        path = self.local_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path.with_name(f".{path.name}.lock")):
            yield


def as_store(where: Store | str | os.PathLike[str]) -> Store:
    """A :class:`Store` for a folder or a URL (a Store is returned as it is)."""
    return where if isinstance(where, Store) else Store(parse_location(where))


def _as_bytes(data: bytes | Callable[[BinaryIO], object]) -> bytes:
    if not callable(data):
        return data
    buffer = io.BytesIO()
    data(buffer)
    return buffer.getvalue()


def _status(exc: BaseException) -> int | None:
    text = str(exc)
    for code in (400, 403, 404, 409, 412):
        if f" {code} " in text or f"status code: {code}" in text:
            return code
    return None


def _s3_store(location: Location):
    from obstore.store import S3Store

    opts = dict(location.options)
    client = {k: opts.pop(k) for k in ("allow_http", "connect_timeout", "timeout") if k in opts}
    config = {k: v for k, v in opts.items() if k != "conditional_put"}
    return S3Store(
        location.bucket,
        config={**config, "conditional_put": opts.get("conditional_put", "etag")},
        client_options=client,
        retry_config={"max_retries": 2, "retry_timeout": timedelta(seconds=30)},
    )


def check_store(location: Location) -> None:
    """Fail fast, in one line naming the setting, if a remote lake cannot be used: the endpoint does not
    answer, the credentials are refused, or the bucket does not exist. Writes nothing."""
    if location.is_local:
        return
    import obstore

    endpoint = location.options.get("aws_endpoint", "the AWS default endpoint")
    try:
        next(iter(obstore.list(_s3_store(location), prefix=location.prefix or None, chunk_size=1)), None)
    except Exception as exc:
        raise StorageError(explain(exc, location, endpoint)) from None


def explain(exc: BaseException, location: Location, endpoint: str) -> str:
    """The one-line reason a remote lake failed, naming the variable to fix (never a secret's value)."""
    text = str(exc)
    low = text.lower()
    if any(s in low for s in ("nosuchbucket", "bucket does not exist", "the specified bucket")):
        return (
            f"PERSONAHUB_LAKE={location.uri}: bucket {location.bucket!r} does not exist at {endpoint}; "
            "create it or fix the bucket in PERSONAHUB_LAKE"
        )
    if (
        any(
            s in low
            for s in (
                "invalidaccesskeyid",
                "signaturedoesnotmatch",
                "accessdenied",
                "access denied",
                "403 forbidden",
                "invalid access key",
                "missing credentials",
            )
        )
        or _status(exc) == 403
    ):
        return (
            f"PERSONAHUB_LAKE={location.uri}: the object store at {endpoint} refused the credentials; "
            "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if any(
        s in low for s in ("connection refused", "error sending request", "dns error", "timed out", "connect")
    ):
        return (
            f"PERSONAHUB_LAKE={location.uri}: cannot reach the object store at {endpoint}; "
            "check AWS_ENDPOINT_URL (and that the server is running)"
        )
    if _status(exc) == 404:
        return (
            f"PERSONAHUB_LAKE={location.uri}: bucket {location.bucket!r} was not found at {endpoint}; "
            "check the bucket in PERSONAHUB_LAKE and AWS_ENDPOINT_URL"
        )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    first = redact(first) or ""  # a store's error may quote a signed URL or a credential
    return f"PERSONAHUB_LAKE={location.uri}: the object store at {endpoint} failed: {first[:200]}"
