"""Embedding throughput: the fast backend against plain sentence-transformers, with agreement.

Encodes the same personas (synthetic, varied lengths: one-sentence bases and longer two-sentence
ones) with

1. plain ``SentenceTransformer.encode`` at batch 64 — the baseline;
2. our ``Embedder`` with the default ``torch`` backend (the exact path);
3. our ``Embedder`` with ``backend="onnx-int8"`` (int8 ONNX graph, length-bucketed batches);

and prints personas/s, the ratio to the baseline, and the cosine between each persona's vector and
the baseline's (mean and minimum). The first ``onnx-int8`` use exports and quantizes the packaged
model once (time printed separately; later runs reuse the file).

    .venv/bin/python benchmarks/embeddings.py [--n 3000]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_personas import bases

from personahub_dagster.core.hub.embedder import Embedder, resolve_embedder_path


def personas(n: int) -> list[str]:
    rng = random.Random(0)
    texts = bases(n)
    # Half get a second sentence: real personas run from 10 to 60 words.
    return [t + " " + rng.choice(texts) if i % 2 else t for i, t in enumerate(texts)]


def timed(fn, texts: list[str]) -> tuple[np.ndarray, float]:
    fn(texts[:64])  # warm-up
    start = time.perf_counter()
    vecs = fn(texts)
    return vecs, len(texts) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    args = ap.parse_args()
    texts = personas(args.n)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PERSONAHUB_CACHE_DIR", tempfile.mkdtemp(prefix="personahub-cache-"))
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(resolve_embedder_path("all-MiniLM-L6-v2"), device="cpu")
    ref, ref_rate = timed(lambda t: plain.encode(t, batch_size=64, normalize_embeddings=True), texts)

    start = time.perf_counter()
    fast = Embedder(backend="onnx-int8")
    fast.encode(["warm"])
    export_s = time.perf_counter() - start
    rows = [("plain SentenceTransformer.encode (batch 64)", ref, ref_rate)]
    rows.append(("Embedder, torch backend (default, exact)", *timed(Embedder().encode, texts)))
    rows.append(("Embedder, onnx-int8 backend", *timed(fast.encode, texts)))

    print(
        f"\n{args.n} personas, {os.cpu_count()} cores; "
        f"onnx-int8 export + quantization once: {export_s:.1f} s\n"
    )
    print("| embedder | personas/s | × plain | cosine to plain: mean | min |")
    print("|---|---:|---:|---:|---:|")
    for name, vecs, rate in rows:
        cos = np.sum(vecs * ref, axis=1)
        print(f"| {name} | {rate:.0f} | {rate / ref_rate:.2f} | {cos.mean():.4f} | {cos.min():.4f} |")


if __name__ == "__main__":
    main()
