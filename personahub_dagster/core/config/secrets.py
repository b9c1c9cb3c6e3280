"""Credentials the process holds, and the one function that takes them out of any text.

A key reaches a provider by more ways than the pipeline's own setting: litellm and the HTTP transport
read ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY`` / … themselves, the Postgres cache takes its password
from its URL or ``PGPASSWORD``, the object store from ``AWS_SECRET_ACCESS_KEY``. Any of them can come
back inside an error — a gateway that quotes the bearer key in its 401, a driver that prints its
connection string — and from there into a journal row, a reject, a Delta log's column statistics, a
Dagster event or the report. So redaction does not ask which setting a key came from: it removes
*every* credential the process can see, wherever text leaves the process.

* :func:`secret_values` — the values: the environment's credential-shaped variables (names ending in
  ``_KEY``, ``_TOKEN``, ``_SECRET``, ``_PASSWORD``, ``PASSWORD``, ``_CREDENTIALS``…), passwords inside
  URL-valued variables (``postgresql://user:pw@…``), and values handed to :func:`register` (a key given
  to a resource directly, not through the environment). Read on each call: a test or a CLI that changes
  its environment is seen at once.
* :func:`redact` — the text with each of those values (4 characters or more) replaced by ``***``, and
  a bearer token or a URL's password replaced even when its value is not known here.
* :class:`RedactingFilter` — the same for log records, installed on the loggers libraries write their
  errors to (litellm, httpx, the root logger).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from urllib.parse import urlsplit

MASK = "***"
_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$|^PGPASSWORD$", re.IGNORECASE)
_NOT_SECRET = re.compile(r"(_ID|_FILE|_PATH|_NAME|_REGION)$", re.IGNORECASE)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_URL_PASSWORD = re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^\s:/@]+:)([^\s@/]+)(@)")
_registered: set[str] = set()
_lock = threading.Lock()
_MIN_LENGTH = 4  # a shorter "secret" would blank out ordinary words


def register(*values: str | None) -> None:
    """Credentials given to the process other than through the environment (a resource's ``api_key``,
    a storage option): redacted from then on."""
    with _lock:
        _registered.update(v for v in values if v and len(v) >= _MIN_LENGTH)


def _url_password(value: str) -> str | None:
    if "://" not in value:
        return None
    try:
        return urlsplit(value).password
    except ValueError:
        return None


def _looks_secret(value: str) -> bool:
    """Not a flag (``true``, ``1``), a path or a sentence that a credential-shaped name happens to
    hold: such values would blank out ordinary words."""
    return len(value) >= 6 and not any(c.isspace() for c in value) and not value.startswith(("/", "."))


def secret_values(env: dict[str, str] | None = None) -> list[str]:
    """Every credential the process holds now, longest first (a key that contains another is replaced
    whole)."""
    env = os.environ if env is None else env
    found = set(_registered)
    for name, value in env.items():
        if not value:
            continue
        if _NAME.search(name) and not _NOT_SECRET.search(name) and _looks_secret(value):
            found.add(value)
        password = _url_password(value)
        if password:
            found.add(password)
    return sorted((v for v in found if len(v) >= _MIN_LENGTH), key=len, reverse=True)


def redact(text: str | None, extra: tuple[str | None, ...] = ()) -> str | None:
    """``text`` with every credential the process holds (and ``extra``) replaced by ``***``; a bearer
    token and a URL's password go whether or not their value is known."""
    if not text:
        return text
    for value in (*[e for e in extra if e and len(e) >= _MIN_LENGTH], *secret_values()):
        if value in text:
            text = text.replace(value, MASK)
    text = _BEARER.sub(rf"\g<1>{MASK}", text)
    return _URL_PASSWORD.sub(rf"\g<1>{MASK}\g<3>", text)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (arguments merged in) and its exception text with :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to complain
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(text)
            record.exc_info = None
        return True


_LOGGERS = ("", "LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "httpcore", "openai", "aiohttp")
_filter = RedactingFilter()


def install_log_filter() -> None:
    """Redact what the libraries the pipeline calls log: the filter on their loggers and on every
    handler the root logger has (records from child loggers pass the root's handlers, not its
    filters). Idempotent."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
    for handler in logging.getLogger().handlers:
        if _filter not in handler.filters:
            handler.addFilter(_filter)
