"""Typed settings, in one place, shared by the CLI, the Dagster resources and serving apps.

Precedence (highest first): explicit overrides (CLI flags, resource config) > environment variables
(``INGEST_PLATFORM_HOME``, nested keys with ``__``, e.g. ``INGEST_PLATFORM_EMBEDDING__DEVICE=cuda``)
> the TOML file (``INGEST_PLATFORM_CONFIG`` or ``./ingest-platform.toml``) > defaults.
Relative paths in the TOML file are resolved against the file's folder, so a config works from any
working directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ingest_platform.models import DEFAULT_MODEL

# The platform's own parsing code (``ingest_platform.parsing``, ``pipeline.record_elements``): bump it
# when that code changes what it makes of the same bytes, so parses cached by the older code are not
# reused. 2: records get their language detected. 3: a web page's own banner, footer and navigation
# are not its content (``hidden_html``); an e-mail opens with its subject as a Title, and the
# headings guessed from plain text (a .txt file, a message's body) pass the heading guard; a Word
# document's headings set in the Normal style are Titles where they head body text. 4: a web page's
# table of nothing but links (a layout table's site menu) is navigation.
PARSER_REVISION = 4

CONFIG_ENV = "INGEST_PLATFORM_CONFIG"
DEFAULT_CONFIG_NAME = "ingest-platform.toml"
PUBLIC_GROUP = "public"


_FILE_DATA: ContextVar[dict[str, Any]] = ContextVar("ingest_platform_file_settings", default={})


class _FileSource(PydanticBaseSettingsSource):
    """The TOML file's values, lowest precedence; set per ``load_settings`` call."""

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ is used instead
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_DATA.get())


class _Strict(BaseModel):
    """Every settings model refuses keys it does not know: a misspelled key must not silently
    fall back to a default (``acess_groups`` would hand documents to the default groups)."""

    model_config = ConfigDict(extra="forbid")


class AccessRule(_Strict):
    """Documents whose path (relative to the source root) matches ``pattern`` get ``groups``."""

    pattern: str
    groups: list[str]


class SourceConfig(_Strict):
    name: str
    # directory: a local folder tree; records: a JSONL or Parquet file (or folder of them), one
    # document per record; fsspec: any fsspec URI of a folder (file://, memory://, s3://...).
    kind: Literal["directory", "records", "fsspec"] | None = None
    path: str
    include: list[str] = Field(default_factory=lambda: ["**/*"])
    exclude: list[str] = Field(default_factory=list)
    # The source-level default; ``None`` means the platform-wide ``default_access_groups``.
    access_groups: list[str] | None = None
    access_rules: list[AccessRule] = Field(default_factory=list)
    # What to do with chunks the guardrails flag (``ingest_platform.guardrails``): None means
    # ``[guardrails] policy``.
    risk_policy: Literal["flag", "strip", "quarantine"] | None = None

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, v: str) -> str:
        if not v or any(c in v for c in ":/\\\n") or v != v.strip():
            raise ValueError(f"source name {v!r} must be non-empty and contain no ':', '/', '\\' or newline")
        return v

    def resolved_kind(self) -> str:
        if self.kind:
            return self.kind
        if self.path.endswith((".jsonl", ".parquet", ".ndjson")):
            return "records"
        return "fsspec" if "://" in self.path else "directory"


class ParsingSettings(_Strict):
    max_file_bytes: int = 50 * 1024 * 1024
    timeout_s: float = 120.0
    # Address-space cap for a parser worker (MiB); bounds decompression bombs. 0 disables it.
    max_memory_mb: int = 4096
    pdf_strategy: Literal["fast"] = "fast"
    # Parser worker processes. Parsing is CPU-bound and single-threaded per document, and runs
    # before embedding needs the cores: one per core (up to 4) parsed SciFact rendered as PDFs at
    # 1.9x the documents/s of one on 2 cores (benchmarks/README.md).
    workers: int = Field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)), ge=1)
    # How many runs may try a document whose parse timed out or whose worker died before that is
    # cached as its failure (``ParseError.retried``); meanwhile a live document keeps serving its
    # last good version. Other parse failures are the document's own and are cached at once.
    attempts: int = Field(default=3, ge=1)
    # The wait before the next attempt, doubled after each one (300: 5 min, then 10 min), so a
    # load spike of a few minutes cannot use up every attempt and make its failure stick.
    retry_after_s: float = Field(default=300.0, ge=0)


# Chunk size when ``[chunking] max_tokens`` is unset: all-MiniLM-L6-v2's whole window, the first
# default model's. On SciFact train, 510 (bge-small-en-v1.5's whole window) was no better once the
# fusion was chosen by the same cross-validation (benchmarks/README.md, "Chunk size").
DEFAULT_CHUNK_TOKENS = 254


def default_chunk_tokens(model: str) -> int:
    """``[chunking] max_tokens`` when unset: ``DEFAULT_CHUNK_TOKENS``, capped at what ``model`` reads."""
    from ingest_platform.models import passage_tokens

    return min(DEFAULT_CHUNK_TOKENS, passage_tokens(model))


class ChunkingSettings(_Strict):
    # In the embedding model's own word pieces. Unset: ``DEFAULT_CHUNK_TOKENS``, or less where the
    # model reads less of a passage (``models.passage_tokens``); more than it reads is a
    # configuration error, since the model would not embed a chunk's end.
    max_tokens: int | None = Field(default=None, ge=16)
    overlap_tokens: int = Field(default=32, ge=0)
    # No chunk is smaller, except a whole document that is (``chunking._merge_small``); capped at
    # half of max_tokens. benchmarks/README.md reports the sensitivity of retrieval to it.
    min_tokens: int = Field(default=64, ge=0)


class EmbeddingSettings(_Strict):
    # A bundled model (ingest_platform.models.BUNDLED: "bge-small-en-v1.5", the default, or
    # "all-MiniLM-L6-v2"), a local sentence-transformers directory or a local ONNX export
    # (model.onnx, tokenizer.json, config.json). Changing it rebuilds the index on the next run.
    model: str = DEFAULT_MODEL
    device: str = "cpu"
    batch_size: int = Field(default=64, ge=1)


class IndexSettings(_Strict):
    # Where the LanceDB database lives: default ``<home>/lancedb``; any LanceDB URI works, e.g.
    # ``s3://bucket/ingest/lancedb`` (credentials from the usual AWS environment variables).
    uri: str | None = None
    table: str = "chunks"
    # Brute-force search is exact and fast enough below this; past it an IVF_PQ index is built.
    vector_index_min_rows: int = 100_000
    # Writes a table takes as delta fragments and index segments before they are compacted
    # (``ingest_platform.index.settle``). Fewer: each compaction rewrites the small tier and merges
    # the segments, so more disk churn. More: queries search every segment, so slower keyword and
    # hybrid queries just before a compaction (``benchmarks/segments.py`` measures it).
    max_deltas: int = Field(default=8, ge=1)
    # Untagged versions older than this are removed by cleanup; tagged versions are always kept.
    retention_days: float = 7.0
    # Versions that still hold revoked or deleted text (rollback targets, old candidates) are
    # untagged and pruned this long after the revocation reached production (every run checks).
    revoked_retention_hours: float = Field(default=24.0, ge=0.0)
    # Rollback targets maintenance keeps tagged (``ingest_platform.maintenance``); older ones are
    # untagged, and every untagged version is pruned.
    keep_promoted: int = Field(default=5, ge=1)


class QuerySettings(_Strict):
    # How hybrid search merges the vector and keyword lists (``query.fuse``): "zscore" adds the
    # weighted per-query z-scores of cosine similarity and BM25, "minmax" their min-max scaled
    # values, "rrf" is reciprocal rank fusion. The defaults (z-score, equal weights, 100 candidates
    # per list, chunk-level) were chosen by 5-fold cross-validation on SciFact train among all
    # three methods, both aggregates and a grid of weights and depths: the simplest choice less
    # than two standard errors behind the best (benchmarks/fusion_cv.py, benchmarks/README.md),
    # with the default embedding model (with all-MiniLM-L6-v2 the same method picked 50).
    fusion: Literal["zscore", "minmax", "rrf"] = "zscore"
    # What a chunk missing from one retriever's list gets from it: "chunk" nothing (its list's
    # floor), "document" the best contribution of a chunk of its document (query.fuse).
    aggregate: Literal["chunk", "document"] = "chunk"
    rrf_k: int = 60
    vector_weight: float = 0.5
    keyword_weight: float = 0.5
    # Chunks each retriever returns for hybrid fusion (the z-scores are taken over these); a query
    # asking for more hits than this gets as many candidates as hits.
    candidates: int = Field(default=100, ge=1)
    cache_size: int = 1024
    trace: bool = True
    max_k: int = 1000
    max_query_chars: int = 4096
    reranker_model: str | None = None
    # Who may read an explicit (non-production) version, e.g. ``query --version 3``: these OS user
    # names, and always the owner of the state folder. Serving callers read ``production`` only.
    operators: list[str] = Field(default_factory=list)
    # A synonyms file (Solr format: "a, b, c" or "a => b, c") whose expansions are added to the
    # keyword side of a query (``ingest_platform/rewrite.py``); relative to the config file.
    glossary: str | None = None
    # The query encoder: "onnx" (the embedding model's weights exported to ONNX Runtime once per
    # machine at build time, cosine 1.0 to torch on SciFact's queries, a third of torch's time at
    # batch size 1) or "torch" (sentence-transformers); see ``ingest_platform/query_encoder.py``.
    encoder: Literal["torch", "onnx"] = "onnx"
    # Candidates the vector side fetches in hybrid mode (None: ``candidates``).
    vector_candidates: int | None = Field(default=None, ge=1)
    # A served version with at most this many chunks is searched by vector in memory (exact cosine
    # over its vectors, the prefilter still evaluated by LanceDB), since a disk scan per query costs
    # tens of milliseconds; larger ones use LanceDB's search and its vector index. The vectors cost
    # about 1.5 KB a chunk in each serving process (75 MB at the default). 0 turns it off.
    memory_search_max_rows: int = Field(default=50_000, ge=0)
    # How often a Retriever reads the production tag from the index (seconds): a serving replica
    # on another host follows a promotion within this. 0 reads it on every query.
    refresh_interval_s: float = Field(default=1.0, ge=0.0)
    # Semantic cache: a query whose embedding is within this cosine of a cached query's (same index
    # version, k, mode, groups, filters) gets the cached answer. None turns it off.
    semantic_cache_threshold: float | None = Field(default=None, gt=0.0, le=1.0)


class EvalSettings(_Strict):
    golden_file: str | None = None
    # Golden entries grown from production feedback (``ingest-platform golden add-feedback``),
    # scored beside the curated set; default ``<home>/golden/production.jsonl`` when it exists.
    production_golden_file: str | None = None
    k: int = 10
    # Absolute floors a candidate must reach, and the allowed drop against production.
    min_recall_at_k: float = 0.6
    min_mrr_at_10: float = 0.4
    max_regression: float = 0.02


class MonitoringSettings(_Strict):
    """The production loop: the daily review sample and the (warning) checks over query traces."""

    # Queries in the daily review sample, stratified: no hits, low top score, slow, random.
    review_size: int = Field(default=20, ge=1)
    review_cron: str = "0 6 * * *"
    # A query whose best vector candidate has a cosine similarity below this has a "low top score".
    # Cosines mean different things for different models; unset, it is the embedding model's own
    # (``ingest_platform.models.low_similarity``, calibrated per bundled model).
    low_similarity: float | None = Field(default=None, ge=-1.0, le=1.0)
    # p95 latency budget (ms) of answered, uncached queries; also the review's "slow" line.
    latency_budget_ms: float = Field(default=60.0, gt=0)
    max_no_hit_share: float = Field(default=0.05, ge=0.0, le=1.0)
    max_low_score_share: float = Field(default=0.25, ge=0.0, le=1.0)
    max_error_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    # Drift: growth, week over week, of the share of query terms the corpus has no word for.
    max_unseen_term_increase: float = Field(default=0.10, ge=0.0, le=1.0)
    window_days: int = Field(default=7, ge=1)
    # Query trace files older than this are removed by maintenance.
    trace_retention_days: int = Field(default=30, ge=1)
    # Fewer queries than this in the window: the checks pass with "not enough traffic".
    min_queries: int = Field(default=20, ge=1)


class FreshnessSettings(_Strict):
    max_source_scan_age_hours: float = 24.0
    max_index_lag_hours: float = 24.0


class GuardrailSettings(_Strict):
    """Injection / hidden-text detection, boilerplate, near-duplicates and superseded versions
    (``ingest_platform.guardrails`` and ``ingest_platform.dedupe``)."""

    # flag: keep the text, record risk_flags; strip: also remove hidden/invisible parts before
    # embedding; quarantine: keep flagged chunks out of the index and list them. Per source:
    # ``[[sources]] risk_policy``.
    policy: Literal["flag", "strip", "quarantine"] = "flag"
    # A line of at least ``boilerplate_min_chars`` found in at least ``boilerplate_min_docs``
    # documents is boilerplate. keep_once: kept in one document (the first by id), removed from
    # the others; drop: removed everywhere; keep: left as it is.
    boilerplate: Literal["keep_once", "drop", "keep"] = "keep_once"
    boilerplate_min_docs: int = Field(default=5, ge=2)
    boilerplate_min_chars: int = Field(default=40, ge=1)
    # Documents whose word-shingle Jaccard similarity (MinHash estimate) reaches this are linked.
    near_duplicate_threshold: float = Field(default=0.7, gt=0.0, le=1.0)
    minhash_permutations: int = Field(default=128, ge=16)
    shingle_words: int = Field(default=3, ge=1)
    # Near-duplicates whose dates differ by at least this: the older is superseded by the newest.
    superseded_min_age_days: float = Field(default=1.0, ge=0.0)
    # Query defaults (overridable per call): one hit per near-duplicate group, superseded left out.
    collapse_near_duplicates: bool = True
    include_superseded: bool = False
    # The guardrails check warns when flagged chunks appear, or grow by more than this many since
    # the last run; it blocks promotion only if ``[quality] blocking.guardrails = true``.
    max_flagged_increase: int = Field(default=0, ge=0)


def _default_blocking() -> dict[str, bool]:
    # A failing blocking check stops the run before promotion; a non-blocking one only warns.
    # Parse failures are listed per document and their effect on retrieval is judged by the eval
    # gate, so a few broken uploads do not freeze the index for everyone.
    return {"manifest_quality": False, "chunks_quality": True, "embeddings_quality": True,
            "index_quality": True, "guardrails": False}


class QualitySettings(_Strict):
    """Thresholds of the great-expectations suites, and which checks block promotion."""

    # Share of a scan's documents (deleted ones excluded) that failed to be read or parsed.
    max_parse_failure_rate: float = Field(default=0.2, ge=0.0, le=1.0)
    min_documents: int = Field(default=1, ge=0)
    # Share of chunks whose (whitespace-normalised, lower-cased) text repeats another chunk's.
    max_duplicate_text_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    # Stored vectors must have an L2 norm within this of 1 (the model's output is normalised).
    norm_tolerance: float = Field(default=1e-3, gt=0.0)
    # Failing rows shown in a check's metadata.
    max_examples: int = Field(default=5, ge=0)
    blocking: dict[str, bool] = Field(default_factory=_default_blocking)

    def is_blocking(self, check: str) -> bool:
        return self.blocking.get(check, _default_blocking().get(check, True))


class AutomationSettings(_Strict):
    # The sensor is cheap (a listing compared with the manifest) and triggers only on change, so it
    # starts switched on; the schedule is a safety net for sources whose changes a listing cannot
    # see (e.g. an object store without reliable mtimes) and starts off.
    sensor_enabled: bool = True
    sensor_interval_s: int = Field(default=60, ge=10)
    schedule_enabled: bool = False
    schedule_cron: str = "0 * * * *"


class DagsterSettings(_Strict):
    """How Dagster runs the pipeline: the executor of ``index_job`` and where Dagster keeps its
    run history (``definitions.py`` reads these)."""

    # in_process: one process for the whole run (the model loads once; the default on one
    # machine). multiprocess: each step, every shard step too, in its own process, up to
    # max_concurrent at once. celery: steps go to Celery workers (dagster-celery) through the
    # broker; k8s: each step a Kubernetes Job (dagster-k8s, installed in the deployment's image).
    executor: Literal["in_process", "multiprocess", "celery", "k8s"] = "in_process"
    # 0: one per core.
    max_concurrent: int = Field(default=0, ge=0)
    celery_broker: str = "pyamqp://guest@127.0.0.1:5672//"
    celery_backend: str = "rpc://"
    # The queue steps are sent to: start workers with `-Q <queue>`.
    celery_queue: str = "dagster"
    # Run, event and schedule storage: "sqlite" (files under <home>/dagster) or a PostgreSQL URL
    # (postgresql://user:password@host:5432/database), for a daemon, workers and a UI on several
    # machines or a home on object storage.
    storage: str = "sqlite"

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str) -> str:
        if v != "sqlite" and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"storage must be 'sqlite' or a postgresql:// URL, not {v!r}")
        return v


class MaintenanceSettings(_Strict):
    """When ``ingest_platform.maintenance`` frees what the state no longer needs."""

    schedule_enabled: bool = True
    cron: str = "30 3 * * *"


class SafetySettings(_Strict):
    """Guards against outages and mistakes that would look like deletions."""

    # More than this share of a source's documents gone in one scan holds the deletion (and any
    # promotion that would drop them) until `ingest-platform promote --confirm-deletions`.
    max_deletion_ratio: float = Field(default=0.3, ge=0.0, le=1.0)
    # Sources smaller than this are not held (removing 2 of 5 files is an ordinary edit).
    deletion_hold_min_documents: int = Field(default=10, ge=1)
    # true: never hold; every deletion is applied as soon as it is seen.
    confirm_deletions: bool = False
    # A long run (a full re-parse or re-embed after an upgrade) lists the sources again at most this
    # often while it parses and embeds, so a deletion or a revoked group made meanwhile leaves
    # production within about this long instead of waiting for the next run's scan.
    revocation_check_s: float = Field(default=60.0, gt=0)

    def holds_deletion(self, documents_before: int, documents_gone: int) -> bool:
        """Whether losing ``documents_gone`` of a source's ``documents_before`` in one listing is
        held for an operator's confirmation (an unmounted share, a bad sync) rather than applied."""
        return (not self.confirm_deletions and documents_before >= self.deletion_hold_min_documents
                and documents_gone / documents_before > self.max_deletion_ratio)


class ScaleSettings(_Strict):
    """How work is divided (``ingest_platform.shards``)."""

    # Documents fall into this many shards by a stable hash of their id; every stage from parse
    # to embed reads and writes one shard at a time, and Dagster fans the shards out over
    # processes (or machines). Memory follows a shard: a corpus N times larger wants N times the
    # shards. Changing it re-chunks from the caches; nothing is parsed or embedded again.
    shards: int = Field(default=16, ge=1, le=4096)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="INGEST_PLATFORM_", env_nested_delimiter="__", extra="forbid"
    )

    # A local folder, or an fsspec URI (``s3://bucket/prefix``: state and index on object storage,
    # credentials and endpoint from the standard AWS environment variables).
    home: str = ".ingest-state"
    sources: list[SourceConfig] = Field(default_factory=list)
    # Chunks with no groups from any rule get these; empty means they are visible to nobody.
    default_access_groups: list[str] = Field(default_factory=list)
    redact_sensitive: bool = False
    parsing: ParsingSettings = Field(default_factory=ParsingSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    query: QuerySettings = Field(default_factory=QuerySettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    freshness: FreshnessSettings = Field(default_factory=FreshnessSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    automation: AutomationSettings = Field(default_factory=AutomationSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    safety: SafetySettings = Field(default_factory=SafetySettings)
    guardrails: GuardrailSettings = Field(default_factory=GuardrailSettings)
    scale: ScaleSettings = Field(default_factory=ScaleSettings)
    maintenance: MaintenanceSettings = Field(default_factory=MaintenanceSettings)
    dagster: DagsterSettings = Field(default_factory=DagsterSettings)

    @field_validator("home", mode="before")
    @classmethod
    def _home_text(cls, v: Any) -> Any:
        return os.fspath(v) if isinstance(v, os.PathLike) else v

    @model_validator(mode="after")
    def _model_defaults(self) -> Settings:
        """Settings whose right value depends on the embedding model, filled in from it."""
        from ingest_platform.models import low_similarity, passage_tokens

        if self.monitoring.low_similarity is None:
            self.monitoring.low_similarity = low_similarity(self.embedding.model)
        reads = passage_tokens(self.embedding.model)
        if self.chunking.max_tokens is None:
            self.chunking.max_tokens = default_chunk_tokens(self.embedding.model)
        elif self.chunking.max_tokens > reads:
            raise ValueError(f"[chunking] max_tokens = {self.chunking.max_tokens} is more than the embedding model "
                             f"{self.embedding.model!r} reads of a passage ({reads} tokens): the end of a "
                             f"longer chunk would not be embedded")
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return init_settings, env_settings, _FileSource(settings_cls)

    # ---- derived locations under home -------------------------------------------------------
    @property
    def state(self) -> Path:
        """``home`` as a path object (``Path`` locally, ``UPath`` for a URI): ``ingest_platform.state``."""
        from ingest_platform import state

        return state.root(self.home)

    @property
    def lancedb_uri(self) -> str:
        from ingest_platform import state

        return self.index.uri or str(state.lancedb(self.state))

    def parser_version(self) -> str:
        """What, besides a document's own bytes, decides its parsed elements: the unstructured
        release, the parse settings that change its output and ``PARSER_REVISION``. The parse cache
        is keyed by it and ``pipeline_fingerprint`` contains it, so an upgraded parser re-parses and
        re-chunks every document on the next run (vectors of unchanged text are reused)."""
        from importlib.metadata import version

        payload = {"unstructured": version("unstructured"), "pdf_strategy": self.parsing.pdf_strategy,
                   "revision": PARSER_REVISION}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    def pipeline_fingerprint(self) -> str:
        """What, besides a document's own bytes, decides its chunks: changing it re-chunks everything."""
        payload = {
            "parser": self.parser_version(),
            "chunking": self.chunking.model_dump(),
            "redact": self.redact_sensitive,
            "default_groups": self.default_access_groups,
            # 2: paged formats are reconstructed (lines joined into paragraphs) before chunking.
            # 3: running heads that alternate between pages are furniture, and a numbered line
            # standing alone between paragraphs is a heading (``reconstruct``).
            # 4: numbered headings of paged formats nest by their numbers (the heading path).
            # 5: unnumbered headings among numbered ones are placed by their printed size, Roman
            # section numbers (II. > A.) nest like dotted ones, and a document's title is the
            # heading it opens with (enrichment).
            # 6: a running head printed once that carries its page's number is furniture, and the
            # cells of a table row the partitioner did not see are never headings.
            # 7: a table row too long to fit beside its header is written as named cells
            # (``column: value``), and so is every row of a table whose header cannot be repeated.
            # 8: a PDF list item holding further bullets is one item each, and a bulleted item
            # never continues the line before it.
            "pipeline": 8,
            # The per-document guardrail policy decides the enriched text (corpus-wide settings,
            # boilerplate and near-duplicates, are applied after enrichment and need no re-chunk).
            "guardrails": {"policy": self.guardrails.policy,
                           "sources": {s.name: s.risk_policy for s in self.sources if s.risk_policy}},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    if "home" in data and "://" not in str(data["home"]) and not Path(data["home"]).is_absolute():
        data["home"] = str(base / data["home"])
    for src in data.get("sources", []) or []:
        path = src.get("path", "")
        if "://" not in path and path and not Path(path).is_absolute():
            src["path"] = str(base / path)
    ev = data.get("eval") or {}
    for key in ("golden_file", "production_golden_file"):
        if ev.get(key) and not Path(ev[key]).is_absolute():
            ev[key] = str(base / ev[key])
    q = data.get("query") or {}
    if q.get("glossary") and not Path(q["glossary"]).is_absolute():
        q["glossary"] = str(base / q["glossary"])
    return data


def find_config_file(explicit: str | os.PathLike | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    candidate = Path.cwd() / DEFAULT_CONFIG_NAME
    return candidate if candidate.exists() else None


def load_settings(config_file: str | os.PathLike | None = None, **overrides: Any) -> Settings:
    """Build Settings: ``overrides`` (None values ignored) > environment > TOML file > defaults.

    Raises
    ------
    ConfigError
        One line naming the file, the key and what is wrong (malformed TOML with its line; an
        unknown key with the closest known one; a value of the wrong type).
    """
    from ingest_platform.errors import ConfigError

    data: dict[str, Any] = {}
    path = find_config_file(config_file)
    if path is not None:
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = _resolve_paths(tomllib.loads(path.read_text()), path.resolve().parent)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    token = _FILE_DATA.set(data)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(_explain(exc, path)) from None
    finally:
        _FILE_DATA.reset(token)


def _explain(exc: ValidationError, path: Path | None) -> str:
    """The first validation error as one line: where, which key, what is wrong, what was meant."""
    import difflib

    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc)
    where = f"{path}: " if path is not None else ""
    if not loc:  # a check across settings (``Settings._model_defaults``): its message names the keys
        return f"{where}{err['msg'].removeprefix('Value error, ')}"
    if err["type"] == "extra_forbidden":
        model: Any = Settings
        for part in loc[:-1]:
            if part.isdigit():
                continue
            field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
            ann = getattr(field, "annotation", None)
            args = getattr(ann, "__args__", ()) or (ann,)
            model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
            if model is None:
                break
        known = list(model.model_fields) if model is not None else []
        guess = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f" (did you mean {guess[0]!r}?)" if guess else (f" (known keys: {', '.join(known)})" if known else "")
        return f"{where}unknown setting {key!r}{hint}"
    return f"{where}setting {key!r}: {err['msg']} (got {err.get('input')!r})"
