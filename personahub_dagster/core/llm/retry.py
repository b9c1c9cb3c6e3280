"""Which failures are worth another attempt, and how long the provider asked us to wait.

A retry helps only when the failure was the provider's moment (a rate limit, a timeout, a dropped
connection, a 5xx); a bad request or a bad key fails the same way every time, and a client-side
configuration error never reached the provider at all."""

from __future__ import annotations

import asyncio
import email.utils
import time

TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


_CONFIG_ERRORS = ("Missing credentials", "api_key client option must be set", "LLM Provider NOT provided")


class AttemptFailed(Exception):
    def __init__(self, message: str, transient: bool, retry_after: float | None = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


def error_headers(exc: BaseException):
    return (
        getattr(exc, "litellm_response_headers", None)
        or getattr(getattr(exc, "response", None), "headers", None)
        or getattr(exc, "headers", None)
    )


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait (``Retry-After``: seconds or an HTTP date;
    ``retry-after-ms``), from the error's HTTP response; None when it did not say."""
    headers = error_headers(exc)  # litellm keeps the provider's headers in litellm_response_headers
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def is_rate_limit(exc: BaseException) -> bool:
    """A 429, or a provider's rate-limit error as litellm files it."""
    import litellm

    return isinstance(exc, litellm.exceptions.RateLimitError) or getattr(exc, "status_code", None) == 429


def classify(exc: BaseException) -> bool:
    """True when a failure is worth retrying (rate limit, timeout, connection, server error)."""
    import litellm

    if isinstance(exc, asyncio.TimeoutError | TimeoutError | ConnectionError):
        return True
    if any(m in str(exc) for m in _CONFIG_ERRORS):
        return (
            False  # raised by the client before sending (litellm files them under 500): a retry cannot help
        )
    transient_types = (
        litellm.exceptions.RateLimitError,
        litellm.exceptions.Timeout,
        litellm.exceptions.APIConnectionError,
        litellm.exceptions.InternalServerError,
        litellm.exceptions.ServiceUnavailableError,
    )
    if isinstance(exc, transient_types):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and status in TRANSIENT_STATUS
