"""A local fake OpenAI-compatible chat server (127.0.0.1 only) for fault-injection tests.

``script`` decides, per request, what the server does: a callable taking the request number (1-based)
and the parsed JSON body and returning one of

* ``("ok", text)`` — a normal chat completion whose content is ``text``;
* ``("length", text)`` — the same, cut off by the token limit (``finish_reason: length``);
* ``("status", code)`` — an error response with that HTTP status (``429`` carries ``Retry-After: 0``);
* ``("retry_after", seconds)`` — a 429 whose ``Retry-After`` asks for ``seconds``;
* ``("hang", seconds)`` — sleep before answering (to trip client timeouts);
* ``("drop", None)`` — close the connection without a response;
* ``("cut", None)`` — send headers and half a body, then close (a truncated response);
* ``("malformed", None)`` — a 200 whose body is not JSON;
* ``("echo_key", None)`` — a 401 whose message quotes the Authorization header back, as some
  providers do ("Incorrect API key provided: sk-…"): the secrets tests check it never gets stored.

Every request body is recorded in ``requests`` (and its arrival time in ``times``) so tests can count
what reached the "provider" and when.

``limits=ProviderLimits(rpm, tpm)`` makes it enforce a key's rate limits the way OpenAI describes
them: token buckets refilled continuously, holding one second's worth ("60,000 RPM may be enforced
as 1,000 requests per second"), a request counted against TPM as its prompt plus ``max_tokens``; beyond
them a 429 with ``Retry-After`` (the seconds until it would fit) — such requests are recorded in
``limited``, not in ``requests`` — and ``x-ratelimit-*`` headers on every answer. ``latency_s`` delays
every answer (a provider is not instant); with ``slots`` the server is a self-hosted one that serves
that many at once and queues the rest (latency grows with load, never a 429), each request held
beyond its slots slowing every answer by ``overload``. ``set_limits`` changes the limits mid-run.

``batches=FakeBatches(...)`` serves OpenAI's ``/v1/files`` and ``/v1/batches`` with time compressed: a
batch is ``validating``, then ``in_progress``, then ``completed`` after ``polls`` status reads (or stays
in progress while ``hold`` is set); its answers come from ``script``. Faults: the first
``expire_first`` batches end ``expired`` with half their requests answered; ``fail(body)`` marks
requests answered with an error line; ``malformed`` cuts one output line in half. Every submitted
request's ``custom_id`` is recorded in ``batches.submitted``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Action = tuple[str, Any]


class ProviderLimits:
    """A provider's per-key limits (None: unlimited), enforced with one-second token buckets."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None):
        self._lock = threading.Lock()
        self.set(rpm, tpm)

    def set(self, rpm: float | None, tpm: float | None) -> None:
        with self._lock:
            self.rpm, self.tpm = rpm, tpm
            now = time.monotonic()
            self._req = [rpm / 60 if rpm else 0.0, now]
            self._tok = [tpm / 60 if tpm else 0.0, now]

    def admit(self, tokens: int) -> tuple[float, dict[str, str]]:
        """(0, headers) when the request fits and is counted; (seconds to wait, headers) when not."""
        with self._lock:
            now = time.monotonic()
            wait = 0.0
            for bucket, per_min, need in ((self._req, self.rpm, 1), (self._tok, self.tpm, tokens)):
                if per_min:
                    rate = per_min / 60
                    bucket[0] = min(rate, bucket[0] + (now - bucket[1]) * rate)
                    bucket[1] = now
                    if bucket[0] < min(need, rate):
                        wait = max(wait, (min(need, rate) - bucket[0]) / rate)
            if wait == 0.0:
                self._req[0] -= 1 if self.rpm else 0
                self._tok[0] -= tokens if self.tpm else 0
            return wait, self._headers()

    def _headers(self) -> dict[str, str]:
        headers = {}
        for kind, bucket, per_min in (("requests", self._req, self.rpm), ("tokens", self._tok, self.tpm)):
            if per_min:
                rate = per_min / 60
                headers[f"x-ratelimit-limit-{kind}"] = str(int(per_min))
                headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, int(bucket[0])))
                headers[f"x-ratelimit-reset-{kind}"] = f"{max(0.0, (rate - bucket[0]) / rate):.3f}s"
        return headers


def echo_script(_n: int, body: dict) -> Action:
    """Answer with a deterministic text derived from the last user message."""
    return ("ok", "Echo: " + body["messages"][-1]["content"][:200])


class FakeBatches:
    """The batch API's state and its injected faults (see the module docstring)."""

    def __init__(
        self,
        polls: int = 2,
        expire_first: int = 0,
        fail: Callable[[dict], bool] | None = None,
        malformed: bool = False,
    ):
        self.polls, self.expire_first, self.fail, self.malformed = polls, expire_first, fail, malformed
        self.hold = threading.Event()  # set: batches stay in progress
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.reads: dict[str, int] = {}
        self.submitted: list[str] = []
        self._lock = threading.RLock()  # retrieve uploads the output while holding it

    def upload(self, data: bytes) -> dict:
        with self._lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = data
        return {  # OpenAI's FileObject, every required field (the SDK validates them)
            "id": file_id, "object": "file", "bytes": len(data), "purpose": "batch",
            "filename": f"{file_id}.jsonl", "created_at": int(time.time()), "status": "processed",
        }  # fmt: skip

    def create(self, body: dict) -> dict:
        lines = [json.loads(x) for x in self.files[body["input_file_id"]].splitlines() if x.strip()]
        with self._lock:
            batch_id = f"batch_{len(self.batches) + 1}"
            self.submitted += [x["custom_id"] for x in lines]
            self.batches[batch_id] = {
                "id": batch_id, "object": "batch", "status": "validating", "lines": lines,
                "input_file_id": body["input_file_id"], "output_file_id": None, "error_file_id": None,
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "endpoint": body.get("endpoint", "/v1/chat/completions"), "created_at": int(time.time()),
                "completion_window": body.get("completion_window", "24h"), "metadata": body.get("metadata"),
            }  # fmt: skip
            self.reads[batch_id] = 0
        return self.public(batch_id)

    def public(self, batch_id: str) -> dict:
        return {k: v for k, v in self.batches[batch_id].items() if k != "lines"}

    def retrieve(self, batch_id: str, script: Callable[[int, dict], Action]) -> dict:
        with self._lock:
            batch = self.batches[batch_id]
            if batch["status"] in ("completed", "expired", "failed", "cancelled") or self.hold.is_set():
                return self.public(batch_id)
            self.reads[batch_id] += 1
            if self.reads[batch_id] < self.polls:
                batch["status"] = "in_progress"
                return self.public(batch_id)
            expire = int(batch_id.split("_")[1]) <= self.expire_first
            lines = batch["lines"][: len(batch["lines"]) // 2] if expire else batch["lines"]
            out, err = [], []
            for n, line in enumerate(lines, 1):
                if self.fail and self.fail(line["body"]):
                    err.append(
                        {
                            "id": f"r{n}",
                            "custom_id": line["custom_id"],
                            "response": {
                                "status_code": 400,
                                "body": {"error": {"message": "injected per-request error"}},
                            },
                        }
                    )
                    continue
                _kind, text = script(n, line["body"])
                out.append({"id": f"r{n}", "custom_id": line["custom_id"], "response": {
                    "status_code": 200, "body": _completion(line["body"], text)}})  # fmt: skip
            data = b"".join(json.dumps(x).encode() + b"\n" for x in out)
            if self.malformed and out:
                first = json.dumps(out[0]).encode()
                data = first[: len(first) // 2] + b"\n" + data.split(b"\n", 1)[1]
            batch["output_file_id"] = self.upload(data)["id"] if out else None
            if err:
                batch["error_file_id"] = self.upload(b"".join(json.dumps(x).encode() + b"\n" for x in err))[
                    "id"
                ]
            batch["status"] = "expired" if expire else "completed"
            batch["request_counts"] = {
                "total": len(batch["lines"]),
                "completed": len(out),
                "failed": len(err),
            }
            return self.public(batch_id)


class FakeOpenAI:
    def __init__(
        self,
        script: Callable[[int, dict], Action] = echo_script,
        limits: ProviderLimits | None = None,
        latency_s: float = 0.0,
        batches: FakeBatches | None = None,
        slots: int | None = None,
        overload: float = 0.0,
    ):
        self.script = script
        self.limits = limits
        self.latency_s = latency_s
        # a self-hosted server: ``slots`` requests served at once, the rest queue (never a 429); each
        # request held beyond the slots slows every answer by ``overload`` (KV-cache pressure)
        self.slots = threading.Semaphore(slots) if slots else None
        self.n_slots, self.overload, self.in_system = slots or 0, overload, 0
        self.batches = batches
        self.limited: list[float] = []  # arrival times of requests refused for the rate limits
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.times: list[float] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _send_json(self, payload: dict | bytes, status: int = 200) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = self.path.rstrip("/").split("/")
                if server.batches is None:
                    return self._send_json({"error": {"message": "no batch API"}}, 404)
                if parts[-2] == "batches":
                    return self._send_json(server.batches.retrieve(parts[-1], server.script))
                if parts[-1] == "content":
                    return self._send_json(server.batches.files[parts[-2]])
                return self._send_json({"error": {"message": "not found"}}, 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                if server.batches is not None and self.path.endswith("/files"):
                    return self._send_json(server.batches.upload(_multipart_file(self.headers, raw)))
                if server.batches is not None and self.path.endswith("/batches"):
                    return self._send_json(server.batches.create(json.loads(raw)))
                body = json.loads(raw or b"{}")
                limit_headers: dict[str, str] = {}
                if server.limits is not None:
                    wait, limit_headers = server.limits.admit(
                        _prompt_tokens(body) + body.get("max_tokens", 0)
                    )
                    if wait > 0:
                        with server._lock:
                            server.limited.append(time.monotonic())
                        payload = json.dumps(
                            {"error": {"message": "rate limited", "type": "requests"}}
                        ).encode()
                        self.send_response(429)
                        self.send_header("Retry-After", f"{wait:.3f}")
                        for k, v in limit_headers.items():
                            self.send_header(k, v)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        return
                if server.slots is not None:
                    with server._lock:
                        server.in_system += 1
                        extra = max(0, server.in_system - server.n_slots)
                    with server.slots:
                        time.sleep(server.latency_s * (1 + server.overload * extra))
                    with server._lock:
                        server.in_system -= 1
                elif server.latency_s:
                    time.sleep(server.latency_s)
                with server._lock:
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    server.times.append(time.monotonic())
                    n = len(server.requests)
                kind, arg = server.script(n, body)
                if kind == "hang":
                    time.sleep(arg)
                    kind, arg = "ok", "late answer"
                if kind == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.connection.close()
                    return
                if kind == "echo_key":
                    kind, arg = "status", 401
                    message = f"Incorrect API key provided: {self.headers.get('Authorization', '')}"
                else:
                    message = f"injected {arg}"
                if kind == "retry_after":
                    payload = json.dumps({"error": {"message": "rate limited", "type": "fake"}}).encode()
                    self.send_response(429)
                    self.send_header("Retry-After", str(arg))
                elif kind == "status":
                    payload = json.dumps({"error": {"message": message, "type": "fake"}}).encode()
                    self.send_response(arg)
                    if arg == 429:
                        self.send_header("Retry-After", "0")
                elif kind == "malformed":
                    payload = b'{"id": "chatcmpl-fake", "choices": [{"message": {"content": "unterminated'
                    self.send_response(200)
                elif kind == "cut":
                    payload = json.dumps(_completion(body, "a response cut in half")).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.connection.close()
                    return
                else:
                    finish = "length" if kind == "length" else "stop"
                    payload = json.dumps(_completion(body, arg, finish)).encode()
                    self.send_response(200)
                for k, v in limit_headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up first
                    self.wfile.write(payload)

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Server(ThreadingHTTPServer):
    """A client that went away (killed, timed out) is not the server's error: no traceback for it."""

    request_queue_size = 128  # many workers connecting at once are queued, not refused

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _multipart_file(headers: Any, raw: bytes) -> bytes:
    """The ``file`` part of a multipart/form-data upload."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + raw
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True)
    raise ValueError("no file part")


def _prompt_tokens(body: dict) -> int:
    return sum(len(m.get("content", "").split()) for m in body.get("messages", []))


def _completion(body: dict, text: str, finish_reason: str = "stop") -> dict:
    prompt_tokens = _prompt_tokens(body)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [
            {"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": text}}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_tokens + len(text.split()),
        },
    }
