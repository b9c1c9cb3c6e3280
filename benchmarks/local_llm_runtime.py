"""Which runtime should run the embedded SmolLM2-135M-Instruct, and what does the gateway cost on top?

Runs the same Text-to-Persona prompts (rendered from the sample corpus with the bundled template,
greedy decoding) through

1. transformers + gguf (the GGUF de-quantized to fp32 and run by PyTorch) — the baseline;
2. llama.cpp directly (``llama_cpp.Llama.create_chat_completion``);
3. our LLMGateway → its local transport → llama.cpp (cache empty, so every request runs).

and prints load time, tokens generated, tokens/s, the speed-up over transformers, and the gateway's
overhead over raw llama.cpp.

    .venv/bin/python benchmarks/local_llm_runtime.py [--n 16] [--max-tokens 64] [--skip-transformers]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from personahub_dagster.core.llm.cache.sqlite import ResponseCache
from personahub_dagster.core.llm.config import LLMConfig
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.local_models import DEFAULT_MODEL, smollm2_gguf_path
from personahub_dagster.core.llm.results import LLMRequest
from personahub_dagster.core.stages.ingest import read_documents
from personahub_dagster.core.stages.prompts import bundled_assets_dir, load_prompt


def prompts(n: int) -> list[list[dict[str, str]]]:
    t = load_prompt("text_to_persona")
    docs, _ = read_documents([bundled_assets_dir() / "corpus"])
    return [
        t.render(
            text=d.text,
            perspective="read",
            perspective_phrase=t.extras["perspectives"]["read"],
            granularity_instruction=t.extras["granularity"]["fine"],
        )
        for d in docs[:n]
    ]


def bench_transformers(msgs, max_tokens):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(os.cpu_count() or 1)
    path = smollm2_gguf_path()
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    load = time.perf_counter() - t0
    tokens, t0 = 0, time.perf_counter()
    for m in msgs:
        ids = tok.apply_chat_template(m, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False)
        tokens += out.shape[1] - ids["input_ids"].shape[1]
    return load, tokens, time.perf_counter() - t0


def bench_llama_cpp(msgs, max_tokens):
    from llama_cpp import Llama

    t0 = time.perf_counter()
    llm = Llama(model_path=str(smollm2_gguf_path()), n_ctx=2048, n_threads=os.cpu_count() or 1, verbose=False)
    load = time.perf_counter() - t0
    tokens, t0 = 0, time.perf_counter()
    for m in msgs:
        out = llm.create_chat_completion(messages=m, max_tokens=max_tokens, temperature=0.0, seed=0)
        tokens += out["usage"]["completion_tokens"]
    return load, tokens, time.perf_counter() - t0


def bench_gateway(msgs, max_tokens):
    with tempfile.TemporaryDirectory() as tmp:
        gw = LLMGateway(
            LLMConfig(model=DEFAULT_MODEL, temperature=0.0, max_tokens=max_tokens, seed=0),
            ResponseCache(os.path.join(tmp, "cache.sqlite")),
        )
        t0 = time.perf_counter()
        gw.generate([LLMRequest("warm", [{"role": "user", "content": "Hi"}], {"max_tokens": 1})], "warmup")
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, stats = gw.generate([LLMRequest(str(i), m) for i, m in enumerate(msgs)], "bench")
        return load, stats.completion_tokens, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=16, help="prompts (distinct sample texts)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--skip-transformers", action="store_true")
    args = ap.parse_args()
    msgs = prompts(args.n)
    rows = []
    if not args.skip_transformers:
        rows.append(("transformers + gguf (fp32, PyTorch)", *bench_transformers(msgs, args.max_tokens)))
    rows.append(("llama.cpp (llama-cpp-python)", *bench_llama_cpp(msgs, args.max_tokens)))
    rows.append(("LLMGateway → llama.cpp", *bench_gateway(msgs, args.max_tokens)))

    base = rows[0][2] / rows[0][3]
    setup = f"{args.n} Text-to-Persona prompts, greedy, max {args.max_tokens} new tokens"
    print(f"\n{setup}, {os.cpu_count()} threads\n")
    print(f"| runtime | load s | tokens | seconds | tokens/s | vs {rows[0][0].split(' (')[0]} |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, load, tokens, secs in rows:
        rate = tokens / secs
        print(f"| {name} | {load:.1f} | {tokens} | {secs:.1f} | {rate:.1f} | {rate / base:.2f}× |")
    raw, gw = rows[-2], rows[-1]
    overhead = (gw[3] / gw[2]) / (raw[3] / raw[2]) - 1
    print(f"\ngateway overhead over raw llama.cpp (seconds per token): {overhead * 100:+.1f}%")


if __name__ == "__main__":
    main()
