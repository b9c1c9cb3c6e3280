"""A run launcher for a single host: Dagster's default launcher, plus worker health checks.

Run monitoring can only tell that a run's worker died if the launcher can check the worker: the
Kubernetes and Docker launchers ask the pod or container; Dagster's :class:`DefaultRunLauncher` (runs as
processes of the code server) cannot, so a run whose worker was killed (OOM killer, ``kill -9``, a
reboot) stays STARTED for ever and keeps its pool slots. This launcher reads the worker's PID from the
run's own "Started process for run" event and reports the worker FAILED once that process is gone,
so the daemon fails the run and frees its slots (``run_monitoring`` in ``deploy/dagster.yaml``).

For one host only (the daemon must see the worker's processes): Docker Compose and Kubernetes
deployments use their own launchers (``deploy/docker``, ``deploy/k8s``).
"""

from __future__ import annotations

from pathlib import Path

from dagster import DagsterEventType, DagsterRun
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus

_STARTED = "Started process for run"


class HostRunLauncher(DefaultRunLauncher):
    """:class:`DefaultRunLauncher` whose workers run monitoring can check (by PID, on this host)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        pid = self._worker_pid(run)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the worker has not reported its PID yet")
        if _alive(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone")

    def _worker_pid(self, run: DagsterRun) -> int | None:
        records = self._instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)
        for entry in reversed(records):  # the newest worker: a resumed run has started another
            event = entry.dagster_event
            if event is None or not (event.message or "").startswith(_STARTED):
                continue
            pid = event.engine_event_data.metadata.get("pid")
            if pid is not None:
                return int(pid.value)
        return None


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (a killed child its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
