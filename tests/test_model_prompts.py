"""A model that configures prompts (e5 / bge style: "query: ", "passage: ") keeps them: documents
go through sentence-transformers' ``encode_document``, queries through ``encode_query``, in the
torch and the ONNX query encoders alike, and the prompts are part of the model id (other prompts,
other vectors: nothing cached under the old ones is reused)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ingest_platform import pipeline
from ingest_platform.embedding import Embedder
from ingest_platform.models import model_id, resolve_model_path
from ingest_platform.query import Retriever

from .conftest import make_corpus, make_settings

PROMPTS = {"query": "query: ", "document": "passage: "}


@pytest.fixture(scope="module")
def prompted_model(tmp_path_factory) -> Path:
    """The bundled all-MiniLM-L6-v2 weights (linked, not copied) with prompts configured."""
    src = Path(resolve_model_path("all-MiniLM-L6-v2"))
    dst = tmp_path_factory.mktemp("models") / "minilm-with-prompts"
    dst.mkdir()
    for p in src.iterdir():
        if p.name != "config_sentence_transformers.json":
            (dst / p.name).symlink_to(p)
    (dst / "config_sentence_transformers.json").write_text(json.dumps({"prompts": PROMPTS, "default_prompt_name": None}))
    return dst


@pytest.fixture(scope="module")
def bare():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu")
    return lambda texts: model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)


def test_documents_and_queries_get_their_prompts(prompted_model, bare, tmp_path):
    embedder = Embedder(str(prompted_model))
    doc = "The Zephyr K7 lantern emits 1200 lumens and runs for 40 hours."
    query = "how bright is the Zephyr K7"
    vec = embedder.encode([doc])[0]
    np.testing.assert_allclose(vec, bare(["passage: " + doc])[0], atol=1e-5)
    assert float(vec @ bare([doc])[0]) < 0.999  # the prompt changed the vector
    np.testing.assert_allclose(embedder.encode_query(query), bare(["query: " + query])[0], atol=1e-5)

    assert model_id(str(prompted_model)).startswith("minilm-with-prompts+prompts-")
    assert model_id("default") == "sentence-transformers/all-MiniLM-L6-v2"  # no prompts: unchanged

    from ingest_platform.query_encoder import OnnxQueryEncoder

    onnx = OnnxQueryEncoder(str(prompted_model), cache_dir=tmp_path / "models")
    assert float(onnx.encode_query(query) @ bare(["query: " + query])[0]) >= 0.999


def test_an_index_built_with_a_prompted_model_serves_prompted_queries(prompted_model, bare, tmp_path):
    corpus = make_corpus(tmp_path / "src")
    s = make_settings(tmp_path, corpus, embedding={"model": str(prompted_model)})
    pipeline.run_all(s)
    store = pipeline.index_store(s)
    assert store.model()[0] == model_id(str(prompted_model))
    row = store.checkout("production").search().select(["text", "vector"]).limit(1).to_arrow().to_pylist()[0]
    np.testing.assert_allclose(np.asarray(row["vector"]), bare(["passage: " + row["text"]])[0], atol=1e-5)

    r = Retriever(settings=s, trace=False)
    hits = r.search("how bright is the Zephyr K7 lantern", 3, mode="vector").hits
    assert hits[0].doc_id == "docs:products/lanterns.md"


def test_a_chunk_of_the_default_size_is_embedded_to_its_last_token(prompted_model, tmp_path):
    """The document prompt takes room in the model's window, so the default chunk size leaves it
    that room (256 word pieces, less [CLS]/[SEP] and the prompt): the last word of a chunk of
    exactly ``max_tokens`` tokens still changes its vector."""
    from ingest_platform.models import load_tokenizer

    s = make_settings(tmp_path, tmp_path / "src", embedding={"model": str(prompted_model)})
    tok = load_tokenizer(str(prompted_model))
    prompt = len(tok(PROMPTS["document"], add_special_tokens=False)["input_ids"])
    assert prompt > 0 and s.chunking.max_tokens == 256 - 2 - prompt
    words = ["lantern"] * (s.chunking.max_tokens - 1)
    full, cut = " ".join([*words, "year"]), " ".join(words)
    assert len(tok(full, add_special_tokens=False)["input_ids"]) == s.chunking.max_tokens
    vectors = Embedder(str(prompted_model)).encode([full, cut])
    assert float(vectors[0] @ vectors[1]) < 0.9999
