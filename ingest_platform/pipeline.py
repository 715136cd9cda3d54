"""The pipeline's stages as plain functions over the state directory.

Each stage reads what the previous one left under ``settings.home`` and reconciles its own output
against the manifest's ``doc_version``s: output for a document is redone only when that document's
version changed, and output for a document that is gone is dropped. Because stages compare state
rather than trusting "what changed in this run", a run killed at any point is finished by the next.
Dagster assets, the CLI and the benchmarks all call these same functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ingest_platform import faults, revocation_check, state
from ingest_platform import manifest as mf
from ingest_platform.changes import manifest_changes
from ingest_platform.config import Settings
from ingest_platform.progress import Progress
from ingest_platform.schemas import CHUNKS, ELEMENTS, ENRICHED, MANIFEST, conform
from ingest_platform.shards import ShardedTable, shard_of, split_by_shard
from ingest_platform.sources import RECORD_FORMAT, is_outage, make_source, unreadable
from ingest_platform.storage import (SegmentStore, append_text, atomic_write_parquet, atomic_write_text, fingerprint,
                                     read_parquet, read_table)

log = logging.getLogger(__name__)

ProgressFn = Callable[[int], None] | None

# Keyed by ``parse_key``: content hash and the parser that parsed it (``Settings.parser_version``).
PARSED_SCHEMA = pa.schema([("parse_key", pa.string()), ("content_sha256", pa.string()), *ELEMENTS])
FAILURE_SCHEMA = pa.schema([("cache_key", pa.string()), ("reason", pa.string())])
# One row per attempt that is to be tried again; ``at`` (null in stores written before it) times the wait.
ATTEMPT_SCHEMA = pa.schema([*FAILURE_SCHEMA, ("at", pa.timestamp("us", tz="UTC"))])


# ---- locations ----------------------------------------------------------------------------------


# ``write``: opened by the stage that writes the folder, which alone lays it out again for another
# shard count; every other opening reads the folder as it was written (``shards.ShardedTable``).


def chunk_table(s: Settings, *, write: bool = False) -> ShardedTable:
    return ShardedTable(state.chunks(s.state), CHUNKS, s.scale.shards, write=write)


def enriched_table(s: Settings, *, write: bool = False) -> ShardedTable:
    return ShardedTable(state.enriched(s.state), ENRICHED, s.scale.shards, write=write)


def indexable_table(s: Settings, *, write: bool = False) -> ShardedTable:
    """The enriched chunks after the corpus-wide guardrails (``dedupe.finalize_shards``): what is
    embedded and indexed."""
    return ShardedTable(state.indexable(s.state), ENRICHED, s.scale.shards, write=write)


def corpus_report_path(s: Settings) -> Path:
    return state.corpus_report(s.state)


def scans_log(s: Settings) -> Path:
    return state.scans(s.state)


def parsed_store(s: Settings) -> SegmentStore:
    return SegmentStore(state.parsed_elements(s.state), PARSED_SCHEMA, "parse_key")


def parse_key(content_sha256: str, version: str) -> str:
    """The parse caches' key: elements by ``Settings.parser_version``, failures by ``parse_fingerprint``."""
    return f"{content_sha256}:{version}"


def failure_store(s: Settings) -> SegmentStore:
    return SegmentStore(state.parse_failures(s.state), FAILURE_SCHEMA, "cache_key")


def attempt_store(s: Settings) -> SegmentStore:
    """Parses that timed out or lost their worker, not cached as failures yet: one row per attempt,
    keyed like ``failure_store``."""
    return SegmentStore(state.parse_attempts(s.state), ATTEMPT_SCHEMA, "cache_key")


def next_try_at(s: Settings, attempts_so_far: int, last: datetime | None) -> datetime | None:
    """When a parse tried ``attempts_so_far`` times, the last at ``last``, may be tried again:
    ``[parsing] retry_after_s`` doubled after each attempt. None: at once (no time recorded)."""
    if last is None:
        return None
    return last + timedelta(seconds=s.parsing.retry_after_s * 2 ** (attempts_so_far - 1))


def parse_fingerprint(s: Settings) -> str:
    """Parse failures are cached per content hash *and* the parser and its limits: raising a limit retries."""
    payload = {**s.parsing.model_dump(exclude={"workers", "attempts", "retry_after_s"}), "parser": s.parser_version()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


# ---- scan ---------------------------------------------------------------------------------------


def scan(settings: Settings, now: datetime | None = None) -> mf.ScanSummary:
    """List every source, reconcile with the previous manifest, save it, log the scan per source.

    A source that cannot be listed is *unavailable*: its documents keep their last good rows (an
    outage never reads as a deletion) and the scan log says why. A source that lost more than
    ``[safety] max_deletion_ratio`` of its documents in one scan has the deletion held until an
    operator confirms it (``ingest_platform.promotion``)."""
    from ingest_platform import promotion
    from ingest_platform.errors import SourceUnavailable

    started = time.perf_counter()
    now = now or datetime.now(UTC)
    settings.state.mkdir(parents=True, exist_ok=True)
    promotion.lapse_rollback_request(settings)
    previous = mf.load_manifest(settings.state)
    items, unavailable, scanned = [], {}, []
    for cfg in settings.sources:
        try:
            # Listed completely before anything is used: a listing that fails halfway must not
            # leave half the documents looking deleted.
            items.extend(list(make_source(cfg, settings.default_access_groups).scan()))
            scanned.append(cfg.name)
        except (SourceUnavailable, OSError, ValueError, ImportError) as exc:
            why = str(exc) if isinstance(exc, SourceUnavailable) else f"{type(exc).__name__}: {exc}"
            unavailable[cfg.name] = f"source {cfg.name!r} could not be listed: {why}"
            log.warning("%s: its documents keep their last good state", unavailable[cfg.name])
    # Documents of a source that could not be listed are kept; of one no longer configured
    # (``--source`` replaces the configured sources), reported deleted.
    table, hashed = mf.reconcile(
        previous, items, pipeline_fingerprint=settings.pipeline_fingerprint(), now=now,
        unscanned_sources=set(unavailable),
    )
    table = mf.mark_failed(table, known_parse_failures(settings, table))
    _hold_sudden_drops(settings, previous, table, promotion.hold_deletions)
    faults.point("scan:before_save")
    mf.save_manifest(settings.state, table)
    revocation_check.scanned(settings)  # the manifest now knows what the checks between scans saw
    summary = mf.summarize(table)
    append_text(scans_log(settings), "".join(
        [json.dumps({"source": name, "at": now.isoformat(), "ok": True}) + "\n" for name in scanned]
        + [json.dumps({"source": name, "at": now.isoformat(), "ok": False, "error": error}) + "\n"
           for name, error in unavailable.items()]))
    return mf.ScanSummary(summary["by_status"], summary["failures"], scanned,
                          time.perf_counter() - started, hashed, list(unavailable.values()), unavailable,
                          changes=manifest_changes(previous, table))


def _hold_sudden_drops(settings: Settings, previous: pa.Table, current: pa.Table, hold) -> None:
    before: dict[str, int] = {}
    for row in previous.select(["source", "status"]).to_pylist():
        if row["status"] != "deleted":
            before[row["source"]] = before.get(row["source"], 0) + 1
    gone: dict[str, list[dict]] = {}
    for row in current.select(["doc_id", "source", "source_uri", "status", "access_groups"]).to_pylist():
        if row["status"] == "deleted":
            gone.setdefault(row["source"], []).append(row)
    for source, rows in gone.items():
        n = before.get(source, 0)
        if n and settings.safety.holds_deletion(n, len(rows)):
            hold(settings, source, n, rows)


def unavailable_sources(settings: Settings) -> dict[str, str]:
    """Sources whose most recent scan could not list them: name -> why. Those of the last scan
    count whether or not these settings configure them (a run given its sources with ``--source``,
    read by ``status`` with the project's config); a source no longer scanned does not."""
    latest: dict[str, dict] = {}
    path = scans_log(settings)
    if path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            latest[rec["source"]] = rec
    configured = {c.name for c in settings.sources}
    last = max((rec["at"] for rec in latest.values()), default=None)
    return {name: rec.get("error", "could not be listed") for name, rec in latest.items()
            if not rec.get("ok") and (name in configured or rec["at"] == last)}



def known_parse_failures(settings: Settings, manifest) -> dict[str, str]:
    """doc_id -> reason for live documents whose content already failed to parse with these parse
    settings: the scan marks them failed at once, so the manifest and the parse step report the same
    failures (the parse stage would re-mark them from its cache anyway)."""
    fp = parse_fingerprint(settings)
    rows = [r for r in manifest.select(["doc_id", "status", "content_sha256"]).to_pylist()
            if r["status"] in mf.LIVE and r["content_sha256"]]
    failures = failure_store(settings)
    known = failures.keys()
    wanted = {parse_key(r["content_sha256"], fp) for r in rows} & set(known)
    if not wanted:
        return {}
    ftab = failures.read(sorted(wanted))
    reasons = dict(zip(ftab["cache_key"].to_pylist(), ftab["reason"].to_pylist()))
    return {r["doc_id"]: reasons[k] for r in rows if (k := parse_key(r["content_sha256"], fp)) in reasons}


def last_scans(settings: Settings) -> dict[str, datetime]:
    """Per source, when it was last listed successfully (for freshness checks)."""
    out: dict[str, datetime] = {}
    path = scans_log(settings)
    if path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("ok"):
                out[rec["source"]] = max(out.get(rec["source"], datetime.min.replace(tzinfo=UTC)),
                                         datetime.fromisoformat(rec["at"]))
    return out


# ---- parse --------------------------------------------------------------------------------------


@dataclass
class ParseSummary:
    parsed: int = 0  # documents parsed in this run
    cached: int = 0  # documents whose parse was already cached
    failed: int = 0
    elements: int = 0
    seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)  # every failed document: doc_id, source_uri, reason
    new_failures: list[dict] = field(default_factory=list)  # those that failed in this run
    stale: list[dict] = field(default_factory=list)  # live documents serving their last good version, and why


def record_elements(payload: bytes) -> pa.Table:
    """A record's title becomes a Title element; its text, one element per paragraph. The
    language is unstructured's detector's on the whole record, as its partitioners give a file's
    elements (so a ``language`` filter treats records and files alike)."""
    from unstructured.partition.common.lang import detect_languages

    data = json.loads(payload)
    rows = []
    if data.get("title", "").strip():
        rows.append({"type": "Title", "text": data["title"].strip(), "category_depth": 0})
    for para in (p.strip() for p in data.get("text", "").split("\n\n")):
        if para:
            rows.append({"type": "NarrativeText", "text": para})
    languages = detect_languages("\n\n".join(r["text"] for r in rows)) if rows else None
    for i, row in enumerate(rows):
        row["element_index"] = i
        row["languages"] = languages
    return conform(pa.Table.from_pylist(rows), ELEMENTS) if rows else ELEMENTS.empty_table()


PARSE_DOCS_PER_EXTRA_WORKER = 32


@dataclass
class ShardParse:
    """What parsing some shards did: counts, and the documents that failed for a reason that is not
    cached (vanished, unreadable, changed since the scan)."""

    parsed: int = 0
    cached: int = 0
    elements: int = 0
    tried: list[str] = field(default_factory=list)  # documents sent to a parser
    transient: dict[str, str] = field(default_factory=dict)
    # doc_id -> why its newest content could not be read for the storage's reasons (an outage, a
    # save during the run): its last good chunks keep serving (``chunk_shard``).
    stale: dict[str, str] = field(default_factory=dict)
    # content hash -> why its parse is to be tried again (a timeout, a dead worker; ``[parsing] attempts``)
    retrying: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def parse(settings: Settings, progress: ProgressFn = None, pool=None, shards: list[str] | None = None) -> ParseSummary:
    """Parse every live document (of ``shards``, default all) whose content hash is not in the
    parse cache yet, then record the failures in the manifest: ``parse_shards`` + ``finish_parse``."""
    return finish_parse(settings, [parse_shards(settings, shards, progress=progress, pool=pool)])


def parse_shards(settings: Settings, shards: list[str] | None = None, *, progress: ProgressFn = None,
                 pool=None) -> ShardParse:
    """Parse what the cache lacks among the live documents of ``shards`` (all when None). Writes
    only the content-keyed caches, so shards can be parsed at once in separate processes. ``pool``
    is a ``ParserPool`` or a function that returns one (started only if something needs parsing).

    The parser worker processes live exactly as long as this call (unless the caller passes its own
    ``pool``): a pool left for ``atexit`` outlived Dagster run workers, which do not run it, by
    minutes at about 0.8 GB each."""
    from ingest_platform.parsing import ParseError, ParserPool, parse_many

    started = time.perf_counter()
    result = ShardParse()
    manifest = mf.load_manifest(settings.state)
    fp, pv = parse_fingerprint(settings), settings.parser_version()
    elements, failures = parsed_store(settings), failure_store(settings)
    done, failed_keys = elements.keys(), failures.keys()
    wanted = set(shards) if shards is not None else None
    rows = [r for r in _live_rows(manifest) if wanted is None or shard_of(r["doc_id"], settings.scale.shards) in wanted]
    todo: dict[str, dict] = {}
    for r in rows:
        h = r["content_sha256"]
        if parse_key(h, pv) in done or parse_key(h, fp) in failed_keys:
            result.cached += 1
        else:
            todo.setdefault(h, r)
    if todo:
        own = pool is None

        def parse_files(jobs, ps):  # the pool is started only when there are files to parse
            nonlocal pool
            if callable(pool) and not isinstance(pool, ParserPool):
                pool = pool()  # a pool shared by the run's shard steps
            if pool is None:
                # A worker costs seconds to start (it imports unstructured): a second one pays off
                # only for a batch of some size.
                workers = max(1, min(settings.parsing.workers, len(todo) // PARSE_DOCS_PER_EXTRA_WORKER))
                pool = ParserPool(settings.parsing.model_copy(update={"workers": workers}))
            return parse_many(jobs, ps, pool=pool)

        try:
            result.transient = _parse_todo(settings, todo, fp, pv, elements, failures, result, progress, ParseError,
                                           parse_files)
        finally:
            if own and isinstance(pool, ParserPool):
                pool.close()
    result.tried = [r["doc_id"] for r in rows if r["content_sha256"] in todo]
    result.seconds = time.perf_counter() - started
    return result


def finish_parse(settings: Settings, results: list[ShardParse]) -> ParseSummary:
    """The fan-in after parsing: every live document whose content failed to parse (now or in an
    earlier run, from the failure cache) or failed for a transient reason is marked failed in the
    manifest, in one write. Returns the summary the asset and the CLI report."""
    started = time.perf_counter()
    summary = ParseSummary(parsed=sum(r.parsed for r in results), cached=sum(r.cached for r in results),
                           elements=sum(r.elements for r in results))
    manifest = mf.load_manifest(settings.state)
    fp = parse_fingerprint(settings)
    failures = failure_store(settings)
    rows = _live_rows(manifest)
    doc_failures: dict[str, str] = {}
    stale: dict[str, str] = {}
    retrying = {h: why for r in results for h, why in r.retrying.items()}
    for r in results:
        doc_failures.update(r.transient)
        stale.update(r.stale)
    stale.update({r["doc_id"]: retrying[r["content_sha256"]] for r in rows if r["content_sha256"] in retrying})
    served = _chunked_documents(settings, stale)
    for doc_id in [d for d in stale if d not in served]:  # no last good version to serve: failed
        doc_failures[doc_id] = stale.pop(doc_id)
    all_failed = failures.keys()
    failed_hashes = {r["content_sha256"] for r in rows if parse_key(r["content_sha256"], fp) in all_failed}
    cached_reasons = {}
    if failed_hashes:
        ftab = failures.read([parse_key(h, fp) for h in failed_hashes])
        cached_reasons = {k.split(":")[0]: v for k, v in zip(ftab["cache_key"].to_pylist(), ftab["reason"].to_pylist())}
    for r in rows:
        reason = doc_failures.get(r["doc_id"]) or cached_reasons.get(r["content_sha256"])
        if reason:
            doc_failures[r["doc_id"]] = reason
    manifest = mf.mark_stale(mf.mark_failed(manifest, doc_failures), stale)
    mf.save_manifest(settings.state, manifest)
    # Every failed document (listing or parsing, this run or before): the same count the manifest
    # and the checks report. ``new_failures``: the ones that failed in this run.
    docs = mf.summarize(manifest)
    summary.failures, summary.stale = docs["failures"], docs["stale"]
    summary.failed = len(summary.failures)
    tried = {d for r in results for d in r.tried}
    summary.new_failures = [f for f in summary.failures if f["doc_id"] in tried]
    summary.seconds = sum(r.seconds for r in results) + time.perf_counter() - started
    return summary


def _chunked_documents(settings: Settings, doc_ids) -> set[str]:
    """Which of ``doc_ids`` have chunks (of any version): a last good version to keep serving."""
    table, wanted = chunk_table(settings), set(doc_ids)
    n = table.shards
    out: set[str] = set()
    for shard in {shard_of(d, n) for d in wanted} & set(table.written()):
        out |= set(table.doc_versions(shard)) & wanted
    return out


def _live_rows(manifest: pa.Table) -> list[dict]:
    return [r for r in manifest.select(["doc_id", "source", "relpath", "format", "size", "content_sha256", "status"])
            .to_pylist() if r["status"] in mf.LIVE and r["content_sha256"]]


def _parse_todo(settings, todo, fp, pv, elements, failures, summary: ShardParse, progress, ParseError,
                parse_many) -> dict[str, str]:
    """Read and parse ``todo`` (content hash -> manifest row); returns doc_id -> transient reason.

    Streams: each source is listed once, a document is read only when a parser is ready for it
    (``parse_many`` keeps a bounded window in flight) and a record is parsed in place, so memory
    holds a window of documents and one batch of elements per shard, never the corpus. Elements
    are written in segments tagged with their document's shard, which is what the chunk step of
    that shard reads."""
    configs = {c.name: c for c in settings.sources}
    wanted = {r["doc_id"]: h for h, r in todo.items()}
    transient: dict[str, str] = {}
    batches: dict[str, list[pa.Table]] = defaultdict(list)
    fail_rows: list[dict] = []
    report = Progress("parsing", len(wanted), revocation_check.checking(settings, "parse", progress), unit="doc")
    limit = settings.parsing.max_file_bytes
    seen: set[str] = set()
    shard_of_hash: dict[str, str] = {}
    attempts, attempt_rows = attempt_store(settings), []
    allowed = settings.parsing.attempts
    history = attempts.read({parse_key(h, fp) for h in todo}).to_pylist()
    tried_before = Counter(r["cache_key"] for r in history)
    last_try = {r["cache_key"]: r for r in sorted(history, key=lambda r: r["at"] or datetime.min.replace(tzinfo=UTC))}

    buffered = 0

    def done(key: str, result) -> None:
        nonlocal buffered
        if isinstance(result, ParseError):
            row = {"cache_key": parse_key(key, fp), "reason": result.reason}
            n = tried_before[row["cache_key"]] + 1
            if result.retried and n < allowed:  # maybe the machine's fault: a later run tries again
                now = datetime.now(UTC)
                attempt_rows.append({**row, "at": now})
                summary.retrying[key] = mf.retry_note(result.reason, n, allowed, next_try_at(settings, n, now))
            else:
                fail_rows.append({**row, "reason": f"{result.reason} ({n} attempts)"} if result.retried and n > 1 else row)
        else:
            shard = shard_of_hash[key]
            batch = batches[shard]
            batch.append(_tag(result, key, pv))
            if len(batch) >= 64:  # a small table costs kilobytes of its own: fold them as they come
                batches[shard] = [pa.concat_tables(batch).combine_chunks()]
            summary.parsed += 1
            summary.elements += result.num_rows
            buffered += result.num_rows
            if buffered > 100_000:
                flush()
        report(1)
        faults.point("parse:document")

    def flush() -> None:
        nonlocal buffered
        for shard, batch in sorted(batches.items()):
            elements.append(pa.concat_tables(batch), tag=shard)
        batches.clear()
        buffered = 0

    def jobs():
        for name in sorted({r["source"] for r in todo.values()}):
            if name not in configs:
                continue
            try:  # one source that cannot be listed now must not stop the others
                for item in make_source(configs[name], settings.default_access_groups).scan():
                    h = wanted.get(item.doc_id)
                    if h is None or item.doc_id in seen:
                        continue
                    seen.add(item.doc_id)
                    row = todo[h]
                    last = last_try.get(parse_key(h, fp))
                    if last is not None:  # tried before and failed for the machine: wait before the next try
                        due = next_try_at(settings, tried_before[last["cache_key"]], last["at"])
                        if due is not None and due > datetime.now(UTC):
                            summary.retrying[h] = mf.retry_note(last["reason"], tried_before[last["cache_key"]],
                                                                allowed, due)
                            continue
                    if item.read is None:
                        transient[item.doc_id] = "vanished: deleted or renamed between scan and parse"
                        continue
                    if row["size"] > limit:  # records too: one huge record once made 12,510 chunks
                        what = "record" if row["format"] == RECORD_FORMAT else "file"
                        fail_rows.append({"cache_key": parse_key(h, fp),
                                          "reason": f"{what} exceeds max_file_bytes ({row['size']} > {limit})"})
                        continue
                    try:
                        data = item.read()
                    except OSError as exc:
                        (summary.stale if is_outage(exc) else transient)[item.doc_id] = unreadable(exc)
                        continue
                    if hashlib.sha256(data).hexdigest() != h:  # saved during the run
                        summary.stale[item.doc_id] = "changed between scan and parse: the next run picks up the new content"
                        continue
                    shard_of_hash[h] = shard_of(item.doc_id, settings.scale.shards)
                    if row["format"] == RECORD_FORMAT:  # records need no parser process
                        table = record_elements(data)
                        done(h, table if table.num_rows else ParseError("empty record: no title or text"))
                        continue
                    yield h, data, row["relpath"].rsplit("/", 1)[-1], row["format"]
            except (OSError, ValueError, ImportError) as exc:
                log.warning("source %r unavailable while parsing: %s", name, exc)
                for doc_id, h in wanted.items():  # an outage, not a deletion
                    if todo[h]["source"] == name and doc_id not in seen:
                        summary.stale.setdefault(doc_id, f"source {name!r} unavailable while parsing: {exc}")

    files = (r["format"] != RECORD_FORMAT for r in todo.values())
    if any(files):
        for key, result in parse_many(jobs(), settings.parsing):
            done(key, result)
    else:  # records only: no parser process to start
        for _ in jobs():
            pass
    for doc_id in wanted.keys() - seen - summary.stale.keys():
        transient[doc_id] = "vanished: deleted or renamed between scan and parse"
    report.close()
    flush()
    if fail_rows:
        failures.append(pa.Table.from_pylist(fail_rows, schema=FAILURE_SCHEMA))
    if attempt_rows:
        attempts.append(pa.Table.from_pylist(attempt_rows, schema=ATTEMPT_SCHEMA))
    return transient


def _tag(table: pa.Table, content_sha256: str, version: str) -> pa.Table:
    table = conform(table, ELEMENTS)
    table = table.add_column(0, "content_sha256", pa.array([content_sha256] * table.num_rows, pa.string()))
    return table.add_column(0, "parse_key", pa.array([parse_key(content_sha256, version)] * table.num_rows, pa.string()))


# ---- chunk & enrich -----------------------------------------------------------------------------


@dataclass
class StageSummary:
    documents: int  # documents (re)processed in this run
    kept: int  # documents whose output was already current
    dropped: int  # documents whose output was removed
    rows: int  # rows in the stage's full output
    seconds: float


def _reconcile_output(previous: pa.Table, live: dict[str, str]) -> tuple[pa.Table, list[str], int]:
    """Split a stage's previous output into still-current rows and the documents to redo."""
    prev_versions = dict(zip(previous["doc_id"].to_pylist(), previous["doc_version"].to_pylist()))
    current = [d for d, v in prev_versions.items() if live.get(d) == v]
    keep = previous.filter(pc.is_in(previous["doc_id"], pa.array(current, pa.string())))
    todo = sorted(d for d, v in live.items() if prev_versions.get(d) != v)
    dropped = len(set(prev_versions) - set(live))
    return keep, todo, dropped


def _live_by_shard(settings: Settings) -> dict[str, pa.Table]:
    """The manifest's live documents grouped by shard."""
    return split_by_shard(mf.live_documents(mf.load_manifest(settings.state)), settings.scale.shards)


def _summed(parts: list[StageSummary], table: ShardedTable, started: float) -> StageSummary:
    rows = sum(table.rows(sh) for sh in table.written())
    return StageSummary(sum(p.documents for p in parts), sum(p.kept for p in parts), sum(p.dropped for p in parts),
                        rows, time.perf_counter() - started)


def pending_shards(settings: Settings, stage: str) -> list[str]:
    """The shards whose ``stage`` output is not current: what a run (or Dagster's fan-out) must
    redo. Compares state, not statuses, so a run killed halfway is finished by the next.

    ``parse``: live documents whose content is in neither parse cache. ``chunk``: a shard whose
    chunks are not of its live documents' current versions. ``enrich``: a shard whose enriched
    chunks are not of its current chunks. ``embed``: a shard with indexable text not embedded yet
    by the configured model."""
    n = settings.scale.shards
    if stage == "parse":
        fp, pv = parse_fingerprint(settings), settings.parser_version()
        known = {k.split(":")[0] for k in parsed_store(settings).keys() if k and k.endswith(f":{pv}")} | {
            k.split(":")[0] for k in failure_store(settings).keys() if k.endswith(f":{fp}")}
        return sorted({shard_of(r["doc_id"], n) for r in _live_rows(mf.load_manifest(settings.state))
                       if r["content_sha256"] not in known})
    if stage in ("chunk", "enrich"):
        out = []
        source = _live_by_shard(settings) if stage == "chunk" else None
        upstream = None if stage == "chunk" else chunk_table(settings).require(n)
        target = chunk_table(settings, write=True) if stage == "chunk" else enriched_table(settings, write=True)
        live_shards = set(source) if source is not None else set(upstream.written())
        for shard in sorted(live_shards | set(target.written())):
            if source is not None:
                t = source.get(shard)
                want = dict(zip(t["doc_id"].to_pylist(), t["doc_version"].to_pylist())) if t is not None else {}
            else:
                want = upstream.doc_versions(shard)
            try:
                current = target.doc_versions(shard)
            except (OSError, pa.ArrowException):  # unreadable output: the shard's own step redoes
                current = None                     # it, or fails named, not the whole plan
            if current != want:
                out.append(shard)
        return out
    if stage == "embed":
        from ingest_platform.embedding import EmbeddingCache
        from ingest_platform.models import model_dim, model_id

        cache = EmbeddingCache(settings.state, model_id(settings.embedding.model), model_dim(settings.embedding.model))
        known = cache.keys()
        return [shard for shard, t in indexable_table(settings).iter(["text_sha256"])
                if set(t["text_sha256"].to_pylist()) - known]
    raise ValueError(f"unknown stage {stage!r}")


def chunk(settings: Settings, progress: ProgressFn = None, shards: list[str] | None = None) -> StageSummary:
    """Chunk the live documents of ``shards`` (default: every shard whose chunks are stale)."""
    started = time.perf_counter()
    for old in state.legacy(settings.state):  # the whole-corpus files of an older layout
        old.unlink(missing_ok=True)
    live = _live_by_shard(settings)
    table = chunk_table(settings, write=True)
    todo = pending_shards(settings, "chunk") if shards is None else shards
    parts = [chunk_shard(settings, shard, live.get(shard), table, progress) for shard in todo]
    parts.append(StageSummary(0, sum(t.num_rows for sh, t in live.items() if sh not in set(todo)), 0, 0, 0.0))
    return _summed(parts, table, started)


def chunk_shard(settings: Settings, shard: str, live_rows: pa.Table | None = None, table: ShardedTable | None = None,
                progress: ProgressFn = None) -> StageSummary:
    """One shard's chunks: documents whose version changed are re-chunked from the parse cache
    (paged formats reconstructed first), the rest kept, the gone dropped; written only if changed."""
    from ingest_platform.chunking import chunk_elements
    from ingest_platform.models import load_tokenizer
    from ingest_platform.parsing import classify_paragraph
    from ingest_platform.reconstruct import PAGED_FORMATS, reconstruct

    started = time.perf_counter()
    table = table or chunk_table(settings, write=True)
    if live_rows is None:
        live_rows = _live_by_shard(settings).get(shard, mf.live_documents(MANIFEST.empty_table()))
    live = dict(zip(live_rows["doc_id"].to_pylist(), live_rows["doc_version"].to_pylist()))
    previous = table.read(shard)
    keep, todo, dropped = _reconcile_output(previous, live)
    if not todo and not dropped:
        return StageSummary(0, len(live), 0, previous.num_rows, time.perf_counter() - started)
    hashes = dict(zip(live_rows["doc_id"].to_pylist(), live_rows["content_sha256"].to_pylist()))
    pv = settings.parser_version()
    elements = parsed_store(settings).read({parse_key(hashes[d], pv) for d in todo}, tag=shard)
    by_hash = _group_rows(elements, "content_sha256")
    # A parse always yields elements or a recorded failure (then the document is not live), so one
    # without elements could not be read this run (``ShardParse.stale``): its last good chunks stay.
    unread = [d for d in todo if hashes[d] not in by_hash]
    redo = [d for d in todo if hashes[d] in by_hash]
    if not redo and not dropped:
        return StageSummary(0, len(live), 0, previous.num_rows, time.perf_counter() - started)
    tokenizer = load_tokenizer(settings.embedding.model)
    vocab = tokenizer.get_vocab()
    formats = dict(zip(live_rows["doc_id"].to_pylist(), live_rows["format"].to_pylist()))
    c = settings.chunking
    parts = [keep, previous.filter(pc.is_in(previous["doc_id"], pa.array(unread, pa.string())))]
    for doc_id in redo:
        els = by_hash[hashes[doc_id]]
        if formats.get(doc_id) in PAGED_FORMATS:  # printed lines back into paragraphs
            els = reconstruct(els, is_word=vocab.__contains__, classify=classify_paragraph)
        parts.append(chunk_elements(
            els, doc_id=doc_id, doc_version=live[doc_id], tokenizer=tokenizer,
            max_tokens=c.max_tokens, overlap_tokens=c.overlap_tokens, min_tokens=c.min_tokens,
        ))
        if progress:
            progress(1)
    out = pa.concat_tables([conform(p, CHUNKS) for p in parts])
    faults.point("chunk:before_write")
    table.write(shard, out)
    return StageSummary(len(redo), len(live) - len(redo), dropped, out.num_rows, time.perf_counter() - started)


def _group_rows(table: pa.Table, key: str) -> dict[str, pa.Table]:
    """Rows grouped by ``key``, each group sorted by element_index with duplicates removed."""
    if table.num_rows == 0:
        return {}
    table = table.sort_by([(key, "ascending"), ("element_index", "ascending")])
    keys = table[key].to_numpy(zero_copy_only=False)
    out: dict[str, pa.Table] = {}
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            group = table.slice(start, i - start).drop_columns([key])
            idx = group["element_index"].to_numpy()
            if len(idx) and (idx[1:] == idx[:-1]).any():  # a duplicated segment; keep one copy
                mask = pa.array([True] + list(idx[1:] != idx[:-1]))
                group = group.filter(mask)
            out[keys[start]] = group
            start = i
    return out


def enrich(settings: Settings, shards: list[str] | None = None) -> StageSummary:
    """Enrich the chunks of ``shards`` (default: every shard whose enriched chunks are stale),
    then apply the corpus-wide guardrails when anything changed (``finalize_corpus``)."""
    started = time.perf_counter()
    chunk_table(settings).require(settings.scale.shards)  # before anything is laid out again
    table = enriched_table(settings, write=True)
    todo = pending_shards(settings, "enrich") if shards is None else shards
    live = _live_by_shard(settings) if todo else {}
    parts = [enrich_shard(settings, shard, table, live.get(shard)) for shard in todo]
    finalize_corpus(settings)
    return _summed(parts, table, started)


def enrich_shard(settings: Settings, shard: str, table: ShardedTable | None = None,
                 live_rows: pa.Table | None = None) -> StageSummary:
    """One shard's enriched chunks: document metadata, access groups, sensitive-data and risk
    flags, for the chunks whose document version changed; written only if changed."""
    from ingest_platform.enrichment import enrich_chunks
    from ingest_platform.models import load_tokenizer

    started = time.perf_counter()
    table = table or enriched_table(settings, write=True)
    chunks = chunk_table(settings).require(settings.scale.shards).read(shard)
    if live_rows is None:
        live_rows = _live_by_shard(settings).get(shard, mf.live_documents(MANIFEST.empty_table()))
    live = dict(zip(live_rows["doc_id"].to_pylist(), live_rows["doc_version"].to_pylist()))
    # Only chunks made from the current version of a live document count.
    chunk_live = {d: v for d, v in zip(chunks["doc_id"].to_pylist(), chunks["doc_version"].to_pylist()) if live.get(d) == v}
    previous = table.read(shard)
    keep, todo, dropped = _reconcile_output(previous, chunk_live)
    if not todo and not dropped:
        return StageSummary(0, len(chunk_live), 0, previous.num_rows, time.perf_counter() - started)
    fresh = chunks.filter(pc.is_in(chunks["doc_id"], pa.array(todo, pa.string())))
    docs = live_rows.filter(pc.is_in(live_rows["doc_id"], pa.array(todo, pa.string())))
    enriched = enrich_chunks(
        fresh, docs, redact=settings.redact_sensitive, tokenizer=load_tokenizer(settings.embedding.model),
        max_tokens=settings.chunking.max_tokens, risk_policy=risk_policies(settings),
    ) if fresh.num_rows else ENRICHED.empty_table()
    out = pa.concat_tables([conform(keep, ENRICHED), conform(enriched, ENRICHED)])
    table.write(shard, out)
    return StageSummary(len(todo), len(chunk_live) - len(todo), dropped, out.num_rows, time.perf_counter() - started)


def load_enriched(settings: Settings, columns: list[str] | None = None) -> pa.Table:
    """The chunks as indexed, every shard in one table (quarantined chunks out, boilerplate
    handled, near-duplicate and superseded links set). For reports and small corpora: the stages
    themselves read one shard at a time."""
    return indexable_table(settings).read_all(columns)


def load_enriched_documents(settings: Settings, columns: list[str] | None = None) -> pa.Table:
    """The per-document enriched chunks, quarantined ones included (what the guardrails found)."""
    return enriched_table(settings).read_all(columns)


def risk_policies(settings: Settings) -> dict[str, str]:
    """Guardrail policy per source name (``risk_policy``, else ``[guardrails] policy``)."""
    return {c.name: c.risk_policy or settings.guardrails.policy for c in settings.sources}


def finalize_corpus(settings: Settings, *, force: bool = False):
    """The indexable shards and the corpus report from the enriched shards (``dedupe.finalize_shards``),
    when the enriched or the indexable shards changed since the last time (or ``force``). An
    indexable shard is rewritten only when its content changed. Returns the ``CorpusReport`` (None
    when current).

    Both listings count: the indexable folder can change while the enriched one stays as it was
    (laid out again for another shard count, or altered by hand), and an indexable folder read as
    current then would index an empty corpus."""
    from ingest_platform.chunking import count_tokens
    from ingest_platform.dedupe import finalize_shards
    from ingest_platform.models import load_tokenizer

    enriched = enriched_table(settings).require(settings.scale.shards)
    indexable = indexable_table(settings, write=True)
    digest = _listing_digest(enriched)
    marker = state.finalized(settings.state)
    if (not force and marker.exists()
            and json.loads(marker.read_text()) == {"enriched": digest, "indexable": _listing_digest(indexable)}):
        return None
    sig_path = state.minhash(settings.state)
    signatures = _read_signatures(sig_path) if sig_path.exists() else {}
    shards = enriched.written()

    def write(shard: str, table: pa.Table) -> None:
        old = indexable.read(shard, ["chunk_id", "doc_version", "text_sha256"]) if indexable.exists(shard) else None
        new = table.select(["chunk_id", "doc_version", "text_sha256"])
        if old is None or not old.equals(new) or table.num_rows == 0:
            indexable.write(shard, table)

    report = finalize_shards(
        enriched.read, write, shards, settings.guardrails,
        lambda texts: count_tokens(load_tokenizer(settings.embedding.model), texts), signatures,
    )
    for gone in set(indexable.written()) - set(shards):
        indexable.write(gone, ENRICHED.empty_table())
    _write_signatures(signatures, sig_path)
    atomic_write_text(json.dumps(report.to_dict(), indent=1, sort_keys=True), corpus_report_path(settings))
    atomic_write_text(json.dumps({"enriched": digest, "indexable": _listing_digest(indexable)}), marker)
    return report


def _read_signatures(path) -> dict:
    """The MinHash signatures cache: text key -> uint32 signature (None: too short to compare).
    Converted through numpy in one piece (a Python int per value took 30 bytes each)."""
    import numpy as np

    table = read_table(path)
    keys = table["key"].to_pylist()
    values = table["hashvalues"].combine_chunks()
    flat = values.flatten().to_numpy(zero_copy_only=False).astype(np.uint32)
    offsets = values.offsets.to_numpy()
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    return {k: (flat[offsets[i]:offsets[i + 1]] if valid[i] else None) for i, k in enumerate(keys)}


def _write_signatures(signatures: dict, path) -> None:
    import numpy as np

    lengths = [0 if v is None else len(v) for v in signatures.values()]
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    flat = (np.concatenate([v for v in signatures.values() if v is not None]).astype(np.uint32)
            if any(lengths) else np.zeros(0, dtype=np.uint32))
    mask = pa.array([v is None for v in signatures.values()], pa.bool_())
    values = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(flat, pa.uint32()), mask=mask)
    atomic_write_parquet(pa.table({"key": pa.array(list(signatures), pa.string()), "hashvalues": values}), path)


def _listing_digest(table: ShardedTable) -> str:
    """What the enriched shards are now: names, sizes and modification times."""
    entries = [f"{shard}:{fingerprint(table.path(shard))}" for shard in table.written()]
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]


# ---- embed & index ------------------------------------------------------------------------------


def embed(settings: Settings, embedder=None, progress: ProgressFn = None, shards: list[str] | None = None):
    """Embed the indexable texts of ``shards`` (default all) the cache lacks, one shard's texts in
    memory at a time."""
    from ingest_platform.embedding import EmbeddingCache, embed_missing, get_embedder

    e = settings.embedding
    embedder = embedder or get_embedder(e.model, e.device, e.batch_size)
    cache = EmbeddingCache(settings.state, embedder.model_id, embedder.dim)
    table = indexable_table(settings) if shards is None else indexable_table(settings).require(settings.scale.shards)
    return embed_missing(_ShardTables(table, ["text", "text_sha256"], shards), embedder, cache,
                         revocation_check.checking(settings, "embed", progress))


class _ShardTables:
    """The (shard, table) pairs of a table, read afresh each time it is iterated (one in memory at
    a time)."""

    def __init__(self, table: ShardedTable, columns: list[str] | None = None, shards: list[str] | None = None):
        self.table, self.columns, self.shards = table, columns, shards

    def __iter__(self):
        return self.table.iter(self.columns, self.shards)


class _ShardSource:
    """The indexable shards as the index sync reads them (``index.ChunkSource``)."""

    def __init__(self, table: ShardedTable):
        self.table = table

    def doc_versions(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for shard in self.table.written():
            out.update(self.table.doc_versions(shard))
        return out

    def rows(self, docs: set[str] | None = None, columns: list[str] | None = None):
        """(shard, chunks) of ``docs``: only the shards those documents hash to are read."""
        read = None if columns is None else sorted(set(columns) | {"doc_id"})
        wanted = pa.array(sorted(docs), pa.string()) if docs is not None else None
        shards = None if docs is None else sorted({shard_of(d, self.table.shards) for d in docs})
        for shard, t in self.table.iter(read, shards):
            if wanted is not None:
                t = t.filter(pc.is_in(t["doc_id"], wanted))
            if t.num_rows:
                yield shard, (t if columns is None else t.select(columns))


def build_index(settings: Settings, embedder=None):
    from ingest_platform.embedding import EmbeddingCache, get_embedder

    e = settings.embedding
    embedder = embedder or get_embedder(e.model, e.device, e.batch_size)
    cache = EmbeddingCache(settings.state, embedder.model_id, embedder.dim)
    store = index_store(settings)
    from ingest_platform.query_encoder import prepare

    try:  # the query encoder's export, before any query needs it
        prepare(e.model, settings.query.encoder)
    except Exception as exc:  # noqa: BLE001 - serving's concern: the index is still right to build
        log.warning("could not prepare the %s query encoder (the first query will try again): %s",
                    settings.query.encoder, exc)
    return store.sync(
        _ShardSource(indexable_table(settings)), cache.vectors_for, dim=embedder.dim, model_id=embedder.model_id,
        model_spec=e.model, vector_index_min_rows=settings.index.vector_index_min_rows,
        retention=timedelta(days=settings.index.retention_days), max_deltas=settings.index.max_deltas,
    )


def index_store(settings: Settings):
    from ingest_platform.index import IndexStore

    return IndexStore(settings.lancedb_uri, settings.index.table, home=settings.state)


_POOL: dict = {}


def process_pool(settings: Settings):
    """One parser pool per process for ``run_all`` (notebooks, benchmarks, tests call it again and
    again; a worker costs seconds to start), replaced when the parse settings change and stopped at
    exit. Dagster runs never use it: their pool is a run resource (``resources.ParserPoolResource``),
    stopped when the run's resources are torn down."""
    import atexit

    from ingest_platform.parsing import ParserPool

    key = settings.parsing.model_dump_json()
    pool = _POOL.get("pool")
    if pool is not None and _POOL.get("key") == key:
        return pool
    if pool is not None:
        pool.close()
    else:
        atexit.register(lambda: _POOL["pool"].close() if _POOL.get("pool") is not None else None)
    _POOL.update(pool=ParserPool(settings.parsing), key=key)
    return _POOL["pool"]


def run_all(settings: Settings, *, promote: bool = True, embedder=None) -> dict:
    """Every stage in order without Dagster (benchmarks, notebooks). Returns per-stage summaries.

    Holds the home's writer lock. Revocations and deletions reach production right after the scan
    (the fast path); with ``promote`` the candidate is judged by the same gates the Dagster checks
    record and goes through the one promotion door, which may refuse (``out["promotion"]`` says why).
    """
    from ingest_platform import promotion
    from ingest_platform.errors import PromotionRefused
    from ingest_platform.locking import writer_lock
    from ingest_platform.stages import STAGES

    out: dict = {}
    with writer_lock(settings.home, what="run_all"):
        for stage in STAGES:
            t = time.perf_counter()
            result = stage.run(settings, embedder)
            out[stage.name] = {**(asdict(result) if result is not None else {}), "wall_s": time.perf_counter() - t}
        promotion.apply_requested_rollback(settings)  # asked for while this run held the home
        t = time.perf_counter()
        tags = index_store(settings).tags()
        if promote and tags.get("candidate") != tags.get("production"):
            version = tags["candidate"]
            try:
                promotion.judge(settings, version)
                event = promotion.promote(settings, version, why="run_all", by_run=True)
                out["promotion"] = {"promoted": True, **asdict(event)}
            except PromotionRefused as exc:
                log.warning("not promoted: %s", exc)
                out["promotion"] = {"promoted": False, "reason": str(exc)}
            out["promotion"]["wall_s"] = time.perf_counter() - t
        t = time.perf_counter()
        out["purge"] = {**promotion.purge_revoked(settings), "wall_s": time.perf_counter() - t}
    return out
