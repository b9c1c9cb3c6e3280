"""The deployment files under ``deploy/``: every instance config is valid for the pinned Dagster, its
classes load, and no file carries a secret or opens the webserver to the network."""

from __future__ import annotations

import os
import re
import shutil
from importlib.metadata import requires, version
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PG_ENV = {"DAGSTER_PG_HOST": "db", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USER": "u",
          "DAGSTER_PG_PASSWORD": "p", "DAGSTER_PG_DB": "dagster"}  # fmt: skip


@pytest.mark.parametrize("path", ["dagster.yaml", "docker/dagster.yaml", "local/dagster.yaml"])
def test_instance_configs_are_valid_and_their_classes_load(path, tmp_path, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes.config_class import ConfigurableClassData

    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    shutil.copy(DEPLOY / path, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))  # Dagster's own schema and cross-checks
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
    if path == "local/dagster.yaml":
        assert "storage" not in config  # the laptop keeps SQLite
        assert config["run_launcher"]["class"] == "HostRunLauncher"
        return
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert "max_concurrent_runs" not in config["run_coordinator"].get("config", {})
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= 2
    for key in ("run_coordinator", "run_launcher"):
        c = config[key]
        obj = ConfigurableClassData(c["module"], c["class"], yaml.safe_dump(c.get("config") or {})).rehydrate(
            object
        )
        assert type(obj).__name__ == c["class"]


def test_the_one_host_launcher_lets_run_monitoring_check_workers():
    from personahub_dagster.launcher import HostRunLauncher, _alive

    assert HostRunLauncher().supports_check_run_worker_health
    assert _alive(os.getpid())
    assert not _alive(2**22 + 1)  # above the kernel's largest PID


def test_integration_packages_pin_the_dagster_they_are_installed_with():
    dagster = version("dagster")
    for package in ("dagster-postgres", "dagster-k8s", "dagster-docker"):
        pins = [r for r in requires(package) or [] if re.match(r"dagster\s*==", r)]
        assert pins and all(dagster in p for p in pins), (package, pins, dagster)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"dagster=={dagster}"' in pyproject


def test_compose_and_helm_files_hold_no_secret_and_keep_the_webserver_private():
    compose = yaml.safe_load((DEPLOY / "docker" / "docker-compose.yaml").read_text())
    assert compose["services"]["webserver"]["ports"] == ["127.0.0.1:3000:3000"]
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search("PASSWORD|SECRET|KEY", key):
                assert str(value).startswith("${"), (name, key)
    values = yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"
    assert values["generatePostgresqlPasswordSecret"] is False
    assert (
        "maxConcurrentRuns" not in values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    )
    assert values["concurrency"]["pools"]["defaultLimit"] == 1
    for path in (DEPLOY / "k8s" / "values.yaml", DEPLOY / "docker" / "env.example"):
        for line in path.read_text().splitlines():
            key, sep, value = line.split("#")[0].replace("=", ":", 1).partition(":")
            if sep and re.search(r"(?i)password|secret_access_key|api_key", key):
                assert value.strip() in ("", "change-me", "false"), (path.name, line)
