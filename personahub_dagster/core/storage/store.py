"""Where the lake's bytes live: a local folder or a prefix of an S3-compatible bucket.

``PERSONAHUB_LAKE`` is a path (``./lake``, the default) or a URL (``s3://bucket/prefix``). Delta Lake
writes the tables itself (:mod:`~personahub_dagster.core.lake`); everything else the lake holds —
the hub's dedup state, dataset exports, reports — goes through :class:`Store`, one small interface over both:

* **local**: temp file + fsync + rename (readers see the old file or the new one, never a part), and a
  compare-and-swap under a file lock;
* **S3**: ``obstore`` (the Rust ``object_store`` that delta-rs itself uses, so one set of settings
  serves both): a PUT is atomic per object, and compare-and-swap is a conditional PUT (``If-Match`` on
  the ETag, ``If-None-Match: *`` to create) — the same mechanism Delta's commits rely on.

S3 settings are the standard variables — ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``, ``AWS_ENDPOINT_URL`` (any S3-compatible server: MinIO, SeaweedFS, R2, …), optionally
``AWS_SESSION_TOKEN``. :func:`~.s3.check_store` turns the ways a remote lake is misconfigured (unreachable
endpoint, wrong credentials, missing bucket) into one line that names the setting to fix, before
anything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

from personahub_dagster.core.storage.location import Location, StorageError, parse_location
from personahub_dagster.core.storage.s3 import s3_store

_UMASK = os.umask(0)
os.umask(_UMASK)

T = TypeVar("T")


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
            self._remote = s3_store(self.location)
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
        from obstore.exceptions import PreconditionError

        try:
            return bytes(obstore.get(self._s3(), self._key(key)).bytes())
        except PreconditionError as exc:  # SeaweedFS answers 412 to a read of nothing
            raise FileNotFoundError(self.uri(key)) from exc

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
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        mode = "create" if expected is None else {"e_tag": expected}
        try:
            return obstore.put(self._s3(), self._key(key), data, mode=mode)["e_tag"]
        except (AlreadyExistsError, PreconditionError) as exc:  # a conditional PUT found it changed
            raise ConcurrentUpdate(f"{self.uri(key)} changed since it was read") from exc

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
