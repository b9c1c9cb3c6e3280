"""Living within a provider's limits: goodput and 429s against a provider that enforces a key's RPM and
TPM (the fake OpenAI-compatible server of the tests: one-second token buckets, 429 + Retry-After
beyond them, x-ratelimit-* headers), in the same run:

* **fixed concurrency 128** — the gateway as it was: no budgets, no AIMD, Retry-After honoured per
  request;
* **litellm + semaphore** — plain ``litellm.acompletion`` under an ``asyncio.Semaphore(128)`` with
  litellm's own retries;
* **paced** — the gateway with ``rpm``/``tpm`` set to the key's limits, AIMD on;
* **two workers, paced** — two processes on one key, each with ``rate_share=0.5``.

Goodput is answered requests per minute as a share of what the key allows (the lower of RPM and
TPM / tokens a request); 429s are counted per 1,000 requests answered.

    python benchmarks/rate_limits.py [--requests 5000] [--rpm 6000] [--tpm 400000] [--latency 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from personahub_dagster.core.llm import LLMConfig, LLMGateway, LLMRequest
from personahub_dagster.core.llm_cache import ResponseCache
from tests.support.fake_openai import FakeOpenAI, ProviderLimits, _prompt_tokens

MAX_TOKENS = 64
WORDS = [
    "bees",
    "honey",
    "hive",
    "wax",
    "queen",
    "drone",
    "pollen",
    "nectar",
    "comb",
    "swarm",
    "apiary",
    "smoker",
    "frame",
    "brood",
]


def requests(n: int, tag: str) -> list[LLMRequest]:
    """Prompts of 20 words (the fake provider counts a word a token)."""
    return [
        LLMRequest(
            f"{tag}{i}",
            [{"role": "user", "content": f"{tag} {i} " + " ".join(WORDS[:14]) + " in four lines"}],
        )
        for i in range(n)
    ]


def gateway(base_url: str, cache: Path, **config) -> LLMGateway:
    cfg = LLMConfig(
        model="openai/fake",
        api_base=base_url,
        api_key="sk-bench",
        max_tokens=MAX_TOKENS,
        max_retries=20,
        **config,
    )
    return LLMGateway(cfg, ResponseCache(cache))


def run_gateway(base_url: str, n: int, tag: str, cache: str, config: dict) -> tuple[int, float]:
    gw, batch = gateway(base_url, Path(cache), **config), requests(n, tag)  # imports before the clock
    started = time.monotonic()
    results, _ = gw.generate(batch, tag)
    return sum(r.ok for r in results), time.monotonic() - started


def run_litellm(base_url: str, n: int, tag: str) -> tuple[int, float]:
    import litellm

    async def main() -> int:
        semaphore = asyncio.Semaphore(128)

        async def one(r: LLMRequest) -> bool:
            async with semaphore:
                try:
                    await litellm.acompletion(
                        model="openai/fake", api_base=base_url, api_key="sk-bench", messages=r.messages,
                        max_tokens=MAX_TOKENS, num_retries=20,
                    )  # fmt: skip
                    return True
                except Exception:
                    return False

        return sum(await asyncio.gather(*(one(r) for r in requests(n, tag))))

    started = time.monotonic()
    ok = asyncio.run(main())
    return ok, time.monotonic() - started


def _worker(args: tuple) -> tuple[int, float]:
    return run_gateway(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rpm", type=float, default=6000)
    parser.add_argument("--tpm", type=float, default=400_000)
    parser.add_argument("--latency", type=float, default=0.1, help="the provider's seconds per answer")
    args = parser.parse_args()
    n = args.requests
    per_request = _prompt_tokens({"messages": requests(1, "x")[0].messages}) + MAX_TOKENS
    allowed = min(args.rpm, args.tpm / per_request)  # requests a minute the key allows
    tmp = Path(tempfile.mkdtemp())
    paced = {"concurrency": 128, "rpm": args.rpm, "tpm": args.tpm}
    rows = []
    for name in ("fixed concurrency 128 (before)", "litellm + semaphore 128", "paced (rpm, tpm, AIMD)",
                 "two workers, paced, rate_share 0.5"):  # fmt: skip
        limits = ProviderLimits(args.rpm, args.tpm)
        with FakeOpenAI(limits=limits, latency_s=args.latency) as server:
            tag = name.split()[0] + str(len(rows))
            cache = str(tmp / f"{tag}.sqlite")
            if name.startswith("fixed"):
                ok, wall = run_gateway(
                    server.base_url, n, tag, cache, {"concurrency": 128, "adaptive": False}
                )
            elif name.startswith("litellm"):
                ok, wall = run_litellm(server.base_url, n, tag)
            elif name.startswith("paced"):
                ok, wall = run_gateway(server.base_url, n, tag, cache, paced)
            else:
                half = {**paced, "rate_share": 0.5}
                jobs = [(server.base_url, n // 2, f"{tag}w{k}", f"{cache}.{k}", half) for k in range(2)]
                with multiprocessing.get_context("spawn").Pool(2) as pool:
                    done = pool.map(_worker, jobs)
                ok, wall = sum(d[0] for d in done), max(d[1] for d in done)
            limited = len(server.limited)
        rate = 60 * ok / wall
        rows.append((name, ok, wall, rate, rate / allowed, 1000 * limited / max(1, ok)))
        print(f"  {name}: {ok} in {wall:.1f} s", file=sys.stderr)

    print(
        f"\nprovider: {args.rpm:,.0f} RPM, {args.tpm:,.0f} TPM, {per_request} tokens a request → "
        f"{allowed:,.0f} requests a minute allowed; {args.latency} s an answer; {n:,} requests\n"
    )
    print("| client | answered | wall s | requests/min | goodput (share of allowed) | 429s per 1,000 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, ok, wall, rate, share, per_k in rows:
        print(f"| {name} | {ok:,} | {wall:.1f} | {rate:,.0f} | {share:.1%} | {per_k:.1f} |")


if __name__ == "__main__":
    main()
