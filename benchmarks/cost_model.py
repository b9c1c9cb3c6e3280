"""What a hub of 1M or 1B personas costs: requests, tokens, hours and dollars.

Reads what a real run measured from a lake — LLM calls and tokens per stage (``llm_calls``), personas
kept after deduplication (``hub``) — and scales it. Web text is longer than the sample corpus, so
the Text-to-Persona prompt can be set to the truncation limit (``--text-tokens``, default 1024, the
pipeline's ``max_text_tokens``). Hours are for one client at ``--req-per-s`` (what the provider
sustains for you: concurrency / latency, capped by the client: ~510 req/s for one process here,
``benchmarks/llm_throughput.py``).

    .venv/bin/python benchmarks/cost_model.py --lake lake [--req-per-s 64] [--price-in 0.15] [--price-out 0.6]
"""

from __future__ import annotations

import argparse

from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.llm.batch.run import BATCH_DISCOUNT

PERSONA_STAGES = ("text_personas", "expanded_personas")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lake", default="lake")
    ap.add_argument("--req-per-s", type=float, default=64.0, help="sustained requests/s (default: 128 / 2 s)")
    ap.add_argument("--text-tokens", type=int, default=1024, help="Text-to-Persona prompt tokens (web text)")
    ap.add_argument("--price-in", type=float, default=0.15, help="$ per 1M prompt tokens (gpt-4o-mini)")
    ap.add_argument("--price-out", type=float, default=0.60, help="$ per 1M completion tokens")
    ap.add_argument("--client-ms", type=float, default=2.0, help="client CPU per request, ms")
    args = ap.parse_args()

    with Lake(args.lake).connect() as con:
        per_stage = {
            stage: (calls, pt, ct)
            for stage, calls, pt, ct in con.execute(
                "SELECT stage, count(*), avg(prompt_tokens), avg(completion_tokens) FROM llm_calls "
                "WHERE status = 'ok' GROUP BY 1"
            ).fetchall()
        }
        kept = con.execute("SELECT count(*) FROM hub WHERE dup_of IS NULL").fetchone()[0]
    if not kept or not all(s in per_stage for s in PERSONA_STAGES):
        raise SystemExit(f"{args.lake}: run the persona stages and the hub first (e.g. make demo)")

    t2p_calls, _, t2p_out = per_stage["text_personas"]
    p2p_calls, p2p_in, p2p_out = per_stage["expanded_personas"]
    calls_per_persona = (t2p_calls + p2p_calls) / kept
    tokens_in = (t2p_calls * args.text_tokens + p2p_calls * p2p_in) / kept
    tokens_out = (t2p_calls * t2p_out + p2p_calls * p2p_out) / kept
    print(
        f"\nmeasured in {args.lake}: {t2p_calls + p2p_calls} persona calls for {kept} kept personas "
        f"= {calls_per_persona:.2f} calls per hub persona; Text-to-Persona prompt set to {args.text_tokens} "
        f"tokens; {tokens_in:.0f} prompt + {tokens_out:.0f} completion tokens per hub persona\n"
    )
    rate, price = (
        f"hours at {args.req_per_s:g} req/s",
        f"$ online at {args.price_in:g}/{args.price_out:g} per 1M",
    )
    print(
        f"| hub personas | requests | prompt tokens | completion tokens | {rate} | client CPU h | {price} "
        f"| $ batch API (×{BATCH_DISCOUNT:g}) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in (1_000_000, 1_000_000_000):
        req = n * calls_per_persona
        tin, tout = n * tokens_in, n * tokens_out
        hours = req / args.req_per_s / 3600
        cpu = req * args.client_ms / 1000 / 3600
        dollars = tin / 1e6 * args.price_in + tout / 1e6 * args.price_out
        print(
            f"| {n:,} | {req:,.0f} | {tin:,.0f} | {tout:,.0f} | {hours:,.1f} | {cpu:,.1f} | {dollars:,.0f} "
            f"| {dollars * BATCH_DISCOUNT:,.0f} |"
        )


if __name__ == "__main__":
    main()
