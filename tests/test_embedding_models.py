"""The bundled embedding models: the default (bge-small-en-v1.5, int8 ONNX run by ONNX Runtime),
all-MiniLM-L6-v2 (torch), and a user's own ONNX export. Indexes built under the old default name
keep being queried with the model that built them; a model change rebuilds the index."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ingest_platform import pipeline
from ingest_platform.embedding import Embedder
from ingest_platform.models import (BUNDLED, DEFAULT_MODEL, model_id, onnx_weights, pooling, resolve_model_path)
from ingest_platform.query import Retriever

from .conftest import make_corpus, make_settings

PASSAGES = [
    "The Zephyr K7 lantern emits 1200 lumens and runs for 40 hours on one charge.",
    "Annual plans can be refunded within 30 days of purchase.",
    "Parental leave is sixteen weeks at full pay. " * 60,  # longer than the model reads
]


@pytest.fixture(scope="module")
def default_embedder() -> Embedder:
    return Embedder(DEFAULT_MODEL)


def test_the_default_model_is_the_bundled_onnx_export(default_embedder):
    assert DEFAULT_MODEL in BUNDLED and onnx_weights(DEFAULT_MODEL) is not None
    assert model_id(DEFAULT_MODEL) == "BAAI/bge-small-en-v1.5" and pooling(DEFAULT_MODEL) == "cls"
    vecs = default_embedder.encode(PASSAGES)
    assert vecs.shape == (3, default_embedder.dim) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    q = default_embedder.encode_query("how long does the Zephyr lantern last")
    assert int(np.argmax(vecs @ q)) == 0
    q = default_embedder.encode_query("can I get my money back on a yearly subscription")
    assert int(np.argmax(vecs @ q)) == 1


def test_a_text_gets_the_same_vector_whatever_it_is_embedded_with(default_embedder):
    """The int8 model quantises activations per run: a text must not be batched with others, or its
    vector would depend on them (and the embedding cache, incremental runs and parallel workers
    would disagree with a full build)."""
    alone = np.stack([default_embedder.encode([p])[0] for p in PASSAGES])
    together = default_embedder.encode(PASSAGES[::-1] + ["another text entirely " * 30])[:3][::-1]
    np.testing.assert_array_equal(alone, together)


def test_the_onnx_query_encoder_gives_the_embedders_vectors(default_embedder, tmp_path):
    from ingest_platform.query_encoder import OnnxQueryEncoder, prepare

    prepare(DEFAULT_MODEL, "onnx")  # nothing to export: the model is ONNX already
    enc = OnnxQueryEncoder(DEFAULT_MODEL, cache_dir=tmp_path / "models")
    assert enc.model_path == onnx_weights(DEFAULT_MODEL) and not (tmp_path / "models").exists()
    for text in ("refund window", "x", "parental leave " * 400):
        assert float(enc.encode_query(text) @ default_embedder.encode_query(text)) >= 0.9999


def test_a_local_onnx_export_is_a_model_too(tmp_path):
    """A directory with model.onnx, tokenizer.json and config.json (here all-MiniLM-L6-v2's own
    transformer exported by the query encoder) embeds as the torch model does."""
    from ingest_platform.query_encoder import export_onnx

    src = Path(resolve_model_path("all-MiniLM-L6-v2"))
    local = tmp_path / "my-minilm-onnx"
    export_onnx("all-MiniLM-L6-v2", local)
    for name in ("tokenizer.json", "config.json", "sentence_bert_config.json"):
        shutil.copy(src / name, local / name)
    (local / "1_Pooling").mkdir()
    shutil.copy(src / "1_Pooling" / "config.json", local / "1_Pooling" / "config.json")
    assert onnx_weights(str(local)) is not None and pooling(str(local)) == "mean"
    ours, torch_ = Embedder(str(local)), Embedder("all-MiniLM-L6-v2")
    cos = (ours.encode(PASSAGES) * torch_.encode(PASSAGES)).sum(axis=1)
    assert cos.min() >= 0.999, cos


def test_an_index_built_under_the_old_default_name_keeps_its_model_and_a_change_rebuilds(tmp_path):
    corpus = make_corpus(tmp_path / "src")
    old = make_settings(tmp_path, corpus, embedding={"model": "default"})
    pipeline.run_all(old)
    store = pipeline.index_store(old)
    assert store.model() == ("sentence-transformers/all-MiniLM-L6-v2", "default")

    # Served with today's settings (the new default model), it is still queried with all-MiniLM-L6-v2.
    new = make_settings(tmp_path, corpus)
    assert new.embedding.model == DEFAULT_MODEL
    r = Retriever(settings=new, trace=False, cache_size=0)
    assert r._pin().model_spec == "default"
    hits = r.search("how bright is the Zephyr K7 lantern", 3, mode="vector").hits
    assert hits[0].doc_id == "docs:products/lanterns.md"

    # The next run with the new default re-embeds everything into a rebuilt table and promotes it.
    pipeline.run_all(new)
    assert pipeline.index_store(new).model() == ("BAAI/bge-small-en-v1.5", DEFAULT_MODEL)
    r.refresh()
    assert r._pin().model_spec == DEFAULT_MODEL
    hits = r.search("how bright is the Zephyr K7 lantern", 3, mode="vector").hits
    assert hits[0].doc_id == "docs:products/lanterns.md"


def test_chunk_size_is_capped_at_what_the_model_reads_and_more_is_a_config_error(tmp_path):
    """``[chunking] max_tokens`` unset is 254 tokens, or less where the model reads less of a
    passage (its window less special tokens and document prompt). A value the model cannot read
    to the end would leave the end of long chunks unembedded, so it is refused in one line that
    names the key; up to the model's window it is the user's choice."""
    from ingest_platform.config import DEFAULT_CHUNK_TOKENS, load_settings
    from ingest_platform.errors import ConfigError
    from ingest_platform.models import load_tokenizer, passage_tokens

    reads = BUNDLED[DEFAULT_MODEL].max_seq_length - 2
    assert passage_tokens(DEFAULT_MODEL) == reads > DEFAULT_CHUNK_TOKENS
    assert load_settings(None).chunking.max_tokens == DEFAULT_CHUNK_TOKENS
    assert load_settings(None, chunking={"max_tokens": reads}).chunking.max_tokens == reads
    minilm = load_settings(None, embedding={"model": "all-MiniLM-L6-v2"})
    assert minilm.chunking.max_tokens == BUNDLED["all-MiniLM-L6-v2"].max_seq_length - 2

    config = tmp_path / "ingest-platform.toml"
    config.write_text(f'[chunking]\nmax_tokens = {reads + 1}\n')
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    message = str(err.value)
    assert "\n" not in message and str(config) in message and f"max_tokens = {reads + 1}" in message
    assert f"({reads} tokens)" in message

    # A real pipeline run at the model's whole window: every chunk within it, counted in its tokens.
    corpus = tmp_path / "src"
    corpus.mkdir()
    (corpus / "long.md").write_text("# Leave\n\n" + " ".join(f"Rule {i} of parental leave applies to staff." for i in range(200)))
    s = make_settings(tmp_path, corpus, chunking={"max_tokens": reads})
    pipeline.run_all(s)
    table = pipeline.index_store(s).checkout("production").search().select(["text", "token_count"]).limit(100).to_arrow()
    counts = table["token_count"].to_pylist()
    tok = load_tokenizer(DEFAULT_MODEL)
    assert DEFAULT_CHUNK_TOKENS < max(counts) <= reads
    assert all(len(tok(t, add_special_tokens=False)["input_ids"]) <= reads for t in table["text"].to_pylist())
