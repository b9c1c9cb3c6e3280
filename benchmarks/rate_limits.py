"""Living within a provider's limits: goodput and 429s against a provider that enforces a key's RPM and
TPM (the fake OpenAI-compatible server of the tests: one-second token buckets, 429 + Retry-After
beyond them, x-ratelimit-* headers), in the same run. Four tables:

1. **one worker** (``--part single``): fixed concurrency 128 (the gateway before pacing), plain litellm
   under a semaphore, the paced gateway, and two paced workers each with a static ``rate_share`` 0.5;
2. **a team** (``--part team``): two and four worker processes on one key, one of them killed midway and
   a new one started later — drawing from the **shared bucket** in the cache's database (Postgres, or
   SQLite with ``--cache sqlite``) beside the **static split** (``rate_share`` 1/N) in the same run:
   goodput over the whole run, 429s, and how long the killed worker's share stays unused;
3. **sporadic 429s** (``--part sporadic``): 4% of answers are 429s with no limit behind them — goodput
   with AIMD on against AIMD off (it must not collapse to one request in flight);
4. **a server that queues** (``--part queue``): a self-hosted server with 8 slots that queues the rest
   (latency grows with load, never a 429, and a queue beyond the slots slows everyone) — every fixed
   concurrency against the latency-driven limiter, which is not told the slots.

Goodput is answered requests per minute as a share of what the key allows (the lower of RPM and
TPM / tokens a request); 429s are counted per 1,000 requests answered.

    python benchmarks/rate_limits.py [--part all] [--requests 5000] [--rpm 6000] [--tpm 400000]
                                     [--latency 0.1] [--cache postgres|sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from personahub_dagster.core.llm.cache.backends import open_cache
from personahub_dagster.core.llm.config import LLMConfig
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import LLMRequest
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


def gateway(base_url: str, cache: Path | str, **config) -> LLMGateway:
    cfg = LLMConfig(
        model="openai/fake",
        api_base=base_url,
        api_key="sk-bench",
        max_tokens=MAX_TOKENS,
        max_retries=20,
        **config,
    )
    return LLMGateway(cfg, open_cache(cache))


def run_gateway(base_url: str, n: int, tag: str, cache: str, config: dict) -> tuple[int, float]:
    gw, batch = gateway(base_url, cache, **config), requests(n, tag)  # imports before the clock
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


def single(args: argparse.Namespace) -> None:
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


def _endless(base_url: str, tag: str, cache: str, config: dict) -> None:
    """A worker that asks until it is stopped (the team table's workers)."""
    gw = gateway(base_url, cache, **config)
    gw.generate(requests(100_000, tag), tag)


def team(args: argparse.Namespace, cache_target: str, workers: int, shared: bool) -> tuple:
    """``workers`` processes on one key; worker 0 killed at ``stop``, a new one started at ``join``."""
    stop, join, end = 10.0, 16.0, 24.0
    limits = ProviderLimits(args.rpm, args.tpm)
    config = {"concurrency": 16, "rpm": args.rpm, "tpm": args.tpm}
    config.update({"shared_rate": True} if shared else {"rate_share": 1 / workers, "shared_rate": False})
    context = multiprocessing.get_context("spawn")
    with FakeOpenAI(limits=limits, latency_s=args.latency) as server:
        tag = f"team{workers}{'s' if shared else 'x'}"
        procs = [
            context.Process(target=_endless, args=(server.base_url, f"{tag}w{k}", cache_target, config))
            for k in range(workers + 1)
        ]
        for p in procs[:workers]:
            p.start()
        while not server.times:  # the clock starts with the first answer (imports take seconds)
            time.sleep(0.05)
        t0 = time.monotonic()
        time.sleep(stop)
        procs[0].kill()  # SIGKILL: no goodbye, its leases and its share simply stop being used
        time.sleep(join - stop)
        procs[workers].start()
        time.sleep(end - join)
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join()
        times = [t - t0 for t in server.times if t >= t0]
        limited = [t for t in server.limited if t >= t0]
    allowed_s = min(args.rpm, args.tpm / _per_request()) / 60
    per_second = [sum(1 for t in times if k <= t < k + 1) for k in range(int(end))]
    taken = next(
        (k + 1 - stop for k in range(int(stop), int(join)) if per_second[k] >= 0.9 * allowed_s), None
    )
    window = [c for k, c in enumerate(per_second) if k >= 1]  # the first second is a half-full bucket
    goodput = sum(window) / (allowed_s * len(window))
    limited_rate = 1000 * len(limited) / max(1, len(times))
    return goodput, limited_rate, taken, len(times)


def _per_request() -> int:
    return _prompt_tokens({"messages": requests(1, "x")[0].messages}) + MAX_TOKENS


def team_table(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp())
    with contextlib.ExitStack() as stack:
        if args.cache == "postgres":
            from tests.support.servers import Postgres

            target = stack.enter_context(Postgres()).url()
        else:
            target = str(tmp / "team.sqlite")
        rows = []
        for workers in (2, 4):
            for shared in (False, True):
                name = f"{workers} workers, " + ("shared bucket" if shared else f"static split 1/{workers}")
                goodput, per_k, taken, answered = team(args, target, workers, shared)
                rows.append((name, answered, goodput, per_k, taken))
                print(f"  {name}: {answered} answered, goodput {goodput:.1%}", file=sys.stderr)
    print(
        f"\nteam: {args.rpm:,.0f} RPM, {args.tpm:,.0f} TPM, {args.latency} s an answer, concurrency 16 a "
        f"worker, cache {args.cache}; worker 0 killed at 10 s, a new worker started at 16 s, stopped at "
        "24 s (after its imports: it joins a few seconds later)\n"
    )
    print("| workers | answered | goodput (share of allowed) | 429s per 1,000 | killed worker's share used |")
    print("|---|---:|---:|---:|---:|")
    for name, answered, goodput, per_k, taken in rows:
        shown = f"{taken:.0f} s" if taken is not None else "not before the new worker"
        print(f"| {name} | {answered:,} | {goodput:.1%} | {per_k:.1f} | {shown} |")


def sporadic_script(n: int, body: dict) -> tuple:
    """4% of answers are 429s (Retry-After 0) at random, with no limit behind them."""
    return ("status", 429) if random.Random(n).random() < 0.04 else ("ok", "an answer")


def sporadic_table(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp())
    rows = []
    config = {"concurrency": 16, "backoff_initial_s": 0.05, "backoff_max_s": 0.5}
    for adaptive in (False, True):
        runs = []
        for rep in range(3):  # the median of three: a retry's jitter moves one run's end
            with FakeOpenAI(sporadic_script, latency_s=0.05) as server:
                tag = f"sporadic{adaptive}{rep}"
                cache = str(tmp / f"{tag}.sqlite")
                runs.append(run_gateway(server.base_url, 600, tag, cache, {**config, "adaptive": adaptive}))
        ok, wall = sorted(runs, key=lambda run: run[1])[1]
        rows.append((f"AIMD {'on' if adaptive else 'off'}", ok, wall, ok / wall))
    print("\nsporadic 429s: 4% of answers at random, no limit behind them; 600 requests, concurrency 16, "
          "0.05 s an answer; the median of three runs\n")  # fmt: skip
    print("| AIMD | answered | wall s | requests/s | vs AIMD off |")
    print("|---|---:|---:|---:|---:|")
    for name, ok, wall, rate in rows:
        print(f"| {name} | {ok} | {wall:.1f} | {rate:.1f} | {rate / rows[0][3]:.0%} |")


def queue_table(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp())
    rows = []
    n, settled = 600, 100  # the steady rate is measured from the 100th answer on
    cases = [(f"fixed {c}", {"concurrency": c, "adaptive": False}) for c in (1, 2, 4, 8, 16, 32, 64)]
    cases.append(("latency-driven, up to 64", {"concurrency": 64, "latency_adaptive": True}))
    for name, config in cases:
        with FakeOpenAI(slots=8, latency_s=0.05, overload=0.03) as server:
            tag = "q" + name.split()[-1] + str(len(rows))
            gw, batch = gateway(server.base_url, tmp / f"{tag}.sqlite", **config), requests(n, tag)
            started = time.monotonic()
            results, stats = gw.generate(batch, tag)
            wall = time.monotonic() - started
            times = sorted(server.times)
        ok = sum(r.ok for r in results)
        steady = (len(times) - settled) / (times[-1] - times[settled - 1])
        rows.append((name, ok / wall, steady, stats.latency_percentile(0.5), gw.pacer.limit))
    best, best_steady = max(r[1] for r in rows[:-1]), max(r[2] for r in rows[:-1])
    print("\na server that queues: 8 slots, 0.05 s an answer, never a 429; each request queued beyond the "
          f"slots slows every answer by 3%; {n} requests a row; steady: from answer {settled}\n")  # fmt: skip
    print("| concurrency | requests/s | vs best fixed | steady requests/s | vs best fixed | median latency s "
          "| limit at the end |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, rate, steady, p50, limit in rows:
        shares = f"{rate / best:.0%} | {steady:.1f} | {steady / best_steady:.0%}"
        print(f"| {name} | {rate:.1f} | {shares} | {p50:.3f} | {limit:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["all", "single", "team", "sporadic", "queue"], default="all")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rpm", type=float, default=6000)
    parser.add_argument("--tpm", type=float, default=400_000)
    parser.add_argument("--latency", type=float, default=0.1, help="the provider's seconds per answer")
    parser.add_argument("--cache", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args()
    if args.part in ("all", "single"):
        single(args)
    if args.part in ("all", "team"):
        team_table(args)
    if args.part in ("all", "sporadic"):
        sporadic_table(args)
    if args.part in ("all", "queue"):
        queue_table(args)


if __name__ == "__main__":
    main()
