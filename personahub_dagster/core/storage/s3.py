"""The S3 client of a :class:`~.location.Location` (obstore), and the one line that says why a remote
lake cannot be used. obstore's typed errors tell refused credentials (``PermissionDeniedError``,
``UnauthenticatedError``) and a missing object or bucket (``NotFoundError``) apart for object requests;
a *listing* — what :func:`check_store` asks, since it needs no object to exist — fails as a
``GenericError`` whose text carries the HTTP status (object_store types statuses only for object
requests), and an endpoint that does not answer is a ``GenericError`` around the HTTP client's error:
those two are read from the message, and nothing else is."""

from __future__ import annotations

import re
from datetime import timedelta

from obstore.exceptions import GenericError, NotFoundError, PermissionDeniedError, UnauthenticatedError

from personahub_dagster.core.config.secrets import redact
from personahub_dagster.core.storage.location import Location, StorageError


def s3_store(location: Location):
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
        next(iter(obstore.list(s3_store(location), prefix=location.prefix or None, chunk_size=1)), None)
    except Exception as exc:
        raise StorageError(explain(exc, location, endpoint)) from None


def explain(exc: BaseException, location: Location, endpoint: str) -> str:
    """The one-line reason a remote lake failed, naming the variable to fix (never a secret's value)."""
    text = str(exc)
    status = _listing_status(exc)
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError) or status in (401, 403):
        return (
            f"PERSONAHUB_LAKE={location.uri}: the object store at {endpoint} refused the credentials; "
            "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(exc, NotFoundError | FileNotFoundError) or status == 404:
        return (
            f"PERSONAHUB_LAKE={location.uri}: bucket {location.bucket!r} does not exist at {endpoint}; "
            "create it or fix the bucket in PERSONAHUB_LAKE"
        )
    if isinstance(exc, GenericError) and any(
        s in text.lower() for s in ("error sending request", "connection refused", "dns error", "timed out")
    ):
        return (
            f"PERSONAHUB_LAKE={location.uri}: cannot reach the object store at {endpoint}; "
            "check AWS_ENDPOINT_URL (and that the server is running)"
        )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    first = redact(first) or ""  # a store's error may quote a signed URL or a credential
    return f"PERSONAHUB_LAKE={location.uri}: the object store at {endpoint} failed: {first[:200]}"


def _listing_status(exc: BaseException) -> int | None:
    """The HTTP status of a failed listing (``… non-2xx status code: 403 Forbidden``), else None."""
    found = re.search(r"status code: (\d{3})", str(exc)) if isinstance(exc, GenericError) else None
    return int(found.group(1)) if found else None
