"""LLM throughput against a provider that answers after a fixed latency: how close each client gets to
the limit (concurrency / latency), and what the gateway itself costs per request.

Starts its own fake OpenAI-compatible server (aiohttp, in a separate process, 127.0.0.1) that waits
``--latency`` seconds and answers with realistic token counts, then measures in one run:

* the sequential ``openai`` loop of the original Persona Hub scripts (the baseline);
* plain ``litellm.acompletion`` under a semaphore;
* plain aiohttp POSTs (the wire, no client library);
* our Text-to-Persona stage through the gateway (prompt rendering, cache, journal, parsing included);

then the gateway's overhead per request with the server answering at once, and the stage's memory
over 10k requests.

    .venv/bin/python benchmarks/llm_throughput.py [--latency 0.2] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import resource
import socket
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import polars as pl

from personahub_dagster.core.lake.schemas import now_utc, rows_frame
from personahub_dagster.core.llm.cache.sqlite import ResponseCache
from personahub_dagster.core.llm.config import LLMConfig
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.stages.personas import text_to_persona
from personahub_dagster.core.stages.prompts import load_prompt

PERSONA = "A {job} who restores timber-framed barns and teaches evening classes on joinery to beginners."
JOBS = ["carpenter", "violinist", "actuary", "beekeeper", "pilot", "chemist", "librarian", "welder"]


# -- the fake provider ---------------------------------------------------------------------------
def _serve(port: int, latency: float) -> None:
    from aiohttp import web

    count = 0

    async def chat(request: web.Request) -> web.Response:
        nonlocal count
        body = await request.json()
        count += 1
        await asyncio.sleep(latency)
        prompt_tokens = sum(len(m["content"]) for m in body["messages"]) // 4
        text = PERSONA.format(job=JOBS[count % len(JOBS)]) + f" ({count})"
        return web.json_response(
            {
                "id": f"chatcmpl-{count}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": 24,
                    "total_tokens": prompt_tokens + 24,
                },
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=1024)


class FakeServer:
    def __init__(self, latency: float):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = multiprocessing.get_context("spawn").Process(
            target=_serve, args=(self.port, latency), daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeServer:
        self.proc.start()
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("fake server did not start")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.join()


# -- clients ---------------------------------------------------------------------------------------
def messages(i: int) -> list[dict[str, str]]:
    text = f"Document {i}: " + "notes on restoring barns, choosing oak and pegging joints. " * 20
    return [
        {"role": "system", "content": "You are an expert at describing people."},
        {"role": "user", "content": f"Who is likely to read this text?\n{text}\nPersona:"},
    ]


def sequential_openai(base_url: str, n: int) -> float:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="sk-bench")
    start = time.perf_counter()
    for i in range(n):
        client.chat.completions.create(model="fake", messages=messages(i), max_tokens=64, temperature=0.7)
    return n / (time.perf_counter() - start)


async def _litellm(base_url: str, n: int, conc: int) -> float:
    import litellm

    litellm.suppress_debug_info = True
    sem = asyncio.Semaphore(conc)

    async def one(i: int) -> None:
        async with sem:
            await litellm.acompletion(
                model="openai/fake",
                api_base=base_url,
                api_key="sk-bench",
                messages=messages(i),
                max_tokens=64,
            )

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - start)


async def _aiohttp(base_url: str, n: int, conc: int) -> float:
    import aiohttp

    sem = asyncio.Semaphore(conc)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as session:

        async def one(i: int) -> None:
            async with sem:
                body = {"model": "fake", "messages": messages(i), "max_tokens": 64}
                async with session.post(f"{base_url}/chat/completions", data=json.dumps(body)) as r:
                    json.loads(await r.read())

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - start)


def texts(n: int, offset: int = 0) -> pl.DataFrame:
    body = "notes on restoring barns, choosing oak and pegging joints. " * 20
    return rows_frame(
        "source_texts",
        [
            {"text_id": f"t-{offset + i:07d}", "partition": "b", "text": f"Document {offset + i}: {body}",
             "ingested_at": now_utc()}
            for i in range(n)
        ],
    )  # fmt: skip


def stage(base_url: str, n: int, conc: int, cache_dir: Path, **config: object) -> tuple[float, int]:
    """req/s of the Text-to-Persona stage over ``n`` fresh texts (nothing cached), and rows made."""
    cfg = LLMConfig(model="openai/fake", api_base=base_url, api_key="sk-bench", concurrency=conc, **config)
    gw = LLMGateway(cfg, ResponseCache(cache_dir / f"cache-{time.time_ns()}.sqlite"))
    frame = texts(n)
    start = time.perf_counter()
    out = text_to_persona(frame, gw, load_prompt("text_to_persona"), perspectives=["read"], partition="b")
    return n / (time.perf_counter() - start), out.rows.height


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    args = ap.parse_args()
    per = 4 if args.quick else 20  # requests per concurrency slot: 20 waves, ramp-up and tail amortised
    tmp = Path(tempfile.mkdtemp(prefix="llm-throughput-"))

    rows: list[tuple[str, int, float]] = []
    with FakeServer(args.latency) as server:
        url = server.base_url
        stage(url, 64, 8, tmp)  # warm-up: imports, tokenizer tables, the server's first connections
        seq = sequential_openai(url, 10 if args.quick else 25)
        rows.append(("sequential openai loop (original scripts)", 1, seq))
        for conc in (8, 32, 128):
            n = max(200, conc * per)
            rows.append(("plain litellm.acompletion + semaphore", conc, asyncio.run(_litellm(url, n, conc))))
            rows.append(("plain aiohttp POSTs (the wire)", conc, asyncio.run(_aiohttp(url, n, conc))))
            rate, made = stage(url, n, conc, tmp)
            assert made == n, f"stage made {made} of {n} rows"
            rows.append(("our Text-to-Persona stage (gateway, fast path)", conc, rate))
            rate, made = stage(url, n, conc, tmp, fast_path=False)
            rows.append(("our stage through litellm (fast_path=False)", conc, rate))

    litellm_at = {c: r for name, c, r in rows if name.startswith("plain litellm")}
    print(f"\nfake provider: {args.latency * 1000:.0f} ms a request; limit = concurrency / latency\n")
    print("| client | concurrency | req/s | of the limit | × plain litellm | × sequential |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, conc, rate in rows:
        limit = conc / args.latency
        vs = f"{rate / litellm_at[conc]:.2f}" if conc in litellm_at else "–"
        print(f"| {name} | {conc} | {rate:.1f} | {rate / limit:.0%} | {vs} | {rate / seq:.1f} |")

    # Overhead per request with a server that answers at once, one request at a time.
    n = 150 if args.quick else 400
    with FakeServer(0.0) as server:
        url = server.base_url
        asyncio.run(_aiohttp(url, 50, 1))
        stage(url, 50, 1, tmp)
        wire = 1 / asyncio.run(_aiohttp(url, n, 1))
        ours = 1 / stage(url, n, 1, tmp)[0]
        lite = 1 / asyncio.run(_litellm(url, n, 1))
    print("\n| one request at a time, server at 0 ms | ms per request | overhead over the wire |")
    print("|---|---:|---:|")
    print(f"| plain aiohttp POST (the wire) | {wire * 1e3:.2f} | – |")
    name = "our stage through the gateway (render, cache, journal, parse)"
    print(f"| {name} | {ours * 1e3:.2f} | {(ours - wire) * 1e3:.2f} ms |")
    print(f"| plain litellm.acompletion | {lite * 1e3:.2f} | {(lite - wire) * 1e3:.2f} ms |")

    # Memory over 10k requests at concurrency 128: the stage's resident set after 2k, 6k and 10k.
    total = 3000 if args.quick else 10_000
    with FakeServer(args.latency) as server:
        cfg = LLMConfig(model="openai/fake", api_base=server.base_url, api_key="sk-bench", concurrency=128)
        gw = LLMGateway(cfg, ResponseCache(tmp / "memory.sqlite"))
        tpl = load_prompt("text_to_persona")
        done, marks = 0, []
        chunk = 2000 if not args.quick else 1000
        start = time.perf_counter()
        while done < total:
            out = text_to_persona(texts(chunk, done), gw, tpl, perspectives=["read"], partition="b")
            done += chunk
            del out
            gc.collect()
            marks.append((done, rss_mb()))
        rate = total / (time.perf_counter() - start)
    print(f"\n| requests done (concurrency 128) | resident MB |  ({rate:.0f} req/s over {total})")
    print("|---:|---:|")
    for n_done, mb in marks:
        print(f"| {n_done:,} | {mb:.0f} |")
    print(f"| peak | {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} |")


if __name__ == "__main__":
    main()
