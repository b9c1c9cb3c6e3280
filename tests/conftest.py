"""Fixtures shared across test modules."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from tests.servers import Postgres, SeaweedS3


@pytest.fixture(scope="session")
def s3_server():
    """One real S3-compatible server (SeaweedFS) for the session, on 127.0.0.1."""
    with SeaweedS3() as server:
        yield server


@dataclass(frozen=True)
class S3Lake:
    server: SeaweedS3
    url: str  # s3://lake/t-<random>: a lake of the test's own

    @property
    def env(self) -> dict[str, str]:
        return self.server.env


@pytest.fixture
def s3(s3_server, monkeypatch) -> S3Lake:
    """The server's AWS_* settings in this process's environment, and a fresh lake URL for the test."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return S3Lake(s3_server, s3_server.url(f"t-{uuid.uuid4().hex[:10]}"))


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path) -> str:
    """A fresh lake location, once a folder and once a prefix on the test S3 server."""
    if request.param == "local":
        return str(tmp_path / "lake")
    return request.getfixturevalue("s3").url


@pytest.fixture(scope="session")
def pg_server():
    """One real Postgres cluster for the session (Debian's package), on 127.0.0.1."""
    with Postgres() as server:
        yield server


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty database on the session's Postgres: its ``postgresql://`` URL."""
    return pg_server.create_database(f"t_{uuid.uuid4().hex[:10]}")
