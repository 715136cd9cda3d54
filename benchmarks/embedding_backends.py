"""Is a faster CPU embedding backend worth shipping? torch fp32 against ONNX Runtime fp32 and int8.

    python -m benchmarks.embedding_backends [--texts 512] [--out FILE.json]

The bundled all-MiniLM-L6-v2 transformer is exported to ONNX (``torch.onnx.export``), and
quantised to int8 with ``onnxruntime.quantization.quantize_dynamic`` in three ways (all MatMuls
per-tensor; per-channel weights; per-channel, weight MatMuls only). Each backend embeds the same
SciFact chunk texts (mean pooling and L2 normalisation done as sentence-transformers does), in
alternating rounds so machine noise hits all alike. Reported: texts/s, speed-up over torch, and the
cosine of each text's vector to torch's. The platform would ship a backend only if it at least
doubles chunks/s with at most 0.01 nDCG@10 lost; the nDCG check (a full re-embedding of SciFact per
backend) is run only for a backend that passes the speed bar.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, SCIFACT, WORK, machine, print_table, read_jsonl, write_json


def export(folder: Path) -> dict[str, Path]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ingest_platform.models import resolve_model_path

    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / "model.onnx"
    if not fp32.exists():
        path = resolve_model_path("all-MiniLM-L6-v2")
        tok = AutoTokenizer.from_pretrained(path)
        base = AutoModel.from_pretrained(path).eval()

        class Wrapper(torch.nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.model(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state

        enc = tok(["an example sentence", "another"], padding=True, return_tensors="pt")
        names = ["input_ids", "attention_mask", "token_type_ids"]
        torch.onnx.export(Wrapper(base), tuple(enc[n] for n in names), str(fp32), input_names=names,
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]})
    from onnxruntime.quantization import QuantType, quantize_dynamic

    variants = {
        "onnx fp32": fp32,
        "onnx int8 (per-tensor)": (folder / "int8.onnx", {}),
        "onnx int8 (per-channel)": (folder / "int8-pc.onnx", {"per_channel": True, "reduce_range": True}),
        "onnx int8 (per-channel, weight MatMuls only)": (
            folder / "int8-pc-constb.onnx",
            {"per_channel": True, "op_types_to_quantize": ["MatMul"], "extra_options": {"MatMulConstBOnly": True}}),
    }
    out = {}
    for name, spec in variants.items():
        if isinstance(spec, Path):
            out[name] = spec
            continue
        path, kwargs = spec
        if not path.exists():
            quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, **kwargs)
        out[name] = path
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.embedding_backends", description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=WORK / "onnx")
    ap.add_argument("--out", type=Path, default=RESULTS / "embedding_backends.json")
    args = ap.parse_args(argv)

    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from ingest_platform.models import resolve_model_path

    path = resolve_model_path("all-MiniLM-L6-v2")
    tok = AutoTokenizer.from_pretrained(path)
    docs = [f"{r['title']}\n\n{r['text']}" for r in read_jsonl(SCIFACT / "corpus.jsonl")]
    random.Random(0).shuffle(docs)
    texts = docs[: args.texts]
    st = SentenceTransformer(path, device="cpu")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

    def ort_encode(session, batch: list[str]) -> np.ndarray:
        enc = tok(batch, padding=True, truncation=True, max_length=st.max_seq_length, return_tensors="np")
        hidden = session.run(None, {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")})[0]
        mask = enc["attention_mask"][..., None].astype(np.float32)
        v = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    fns = {"torch fp32 (sentence-transformers)": lambda b: st.encode(b, batch_size=64, normalize_embeddings=True)}
    for name, model in export(args.work).items():
        session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        fns[name] = lambda b, s=session: ort_encode(s, b)
    # Same length-sorted batches of 64 for every backend, as the platform's embedder makes them.
    ordered = sorted(texts, key=len, reverse=True)
    batches = [ordered[i:i + 64] for i in range(0, len(ordered), 64)]
    for fn in fns.values():
        fn(batches[-1][:8])
    seconds = {k: 0.0 for k in fns}
    vectors: dict[str, list[np.ndarray]] = {k: [] for k in fns}
    for rnd in range(args.rounds):
        for bi, batch in enumerate(batches):
            names = list(fns) if (rnd + bi) % 2 == 0 else list(fns)[::-1]
            for name in names:
                t = time.perf_counter()
                v = fns[name](batch)
                seconds[name] += time.perf_counter() - t
                if rnd == 0:
                    vectors[name].append(np.asarray(v, dtype=np.float32))
    ref = np.concatenate(vectors["torch fp32 (sentence-transformers)"])
    rows, out = [], {}
    base = seconds["torch fp32 (sentence-transformers)"]
    for name in fns:
        cos = (np.concatenate(vectors[name]) * ref).sum(1)
        out[name] = {"texts_per_s": args.rounds * len(texts) / seconds[name], "speedup": base / seconds[name],
                     "cosine_to_torch_mean": float(cos.mean()), "cosine_to_torch_min": float(cos.min())}
        rows.append([name, out[name]["texts_per_s"], out[name]["speedup"], out[name]["cosine_to_torch_mean"],
                     out[name]["cosine_to_torch_min"]])
    print_table(["backend", "texts/s", "speed-up", "cos mean", "cos min"], rows,
                title=f"{len(texts)} SciFact abstracts (title + text, truncated at {st.max_seq_length} word pieces), "
                      f"{args.rounds} interleaved rounds; ship only at speed-up >= 2")
    result = {"texts": len(texts), "rounds": args.rounds, "backends": out,
              "passes_speed_bar": [n for n, v in out.items() if v["speedup"] >= 2.0], "machine": machine()}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
