"""The one door to production.

Every move of the ``production`` tag goes through this module: the pipeline's promotion asset,
``ingest-platform promote`` / ``rollback``, ``pipeline.run_all`` and the security fast path. It knows
which gates the current settings require, refuses a version without a passing verdict for each
(unless forced, with a reason that is logged), holds a sudden mass deletion until an operator
confirms it, never lets a version re-expose a revoked or deleted document, and after a rollback
lets no run promote until an operator does (a rollback asked for while a run holds the home is
handed to that run).

Why revocations bypass the gates: a version that only removes rows from production, or narrows the
groups that may read them, cannot lower retrieval quality for anyone still entitled to see those
rows, so there is nothing for a quality gate to protect. Waiting for the gates instead keeps revoked
text served for as long as an unrelated check keeps failing.

Example
-------
>>> from ingest_platform import promotion
>>> promotion.required_gates(settings)
['embeddings_quality', 'index_quality', 'eval_gate']
>>> promotion.promote(settings, "candidate", why="release 42")
PromotionEvent(action='promote', from_version=7, to_version=9, ...)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc

from ingest_platform import gates, state
from ingest_platform import manifest as mf
from ingest_platform.config import Settings
from ingest_platform.errors import HomeLocked, PromotionRefused
from ingest_platform.heap import release_free_heap
from ingest_platform.index import CANDIDATE, PRODUCTION, PROMOTED_PREFIX, IndexError_, IndexStore, PromotionEvent, whoami
from ingest_platform.locking import file_lock, holder, writer_lock

log = logging.getLogger(__name__)

EVAL_GATE = "eval_gate"
# The quality checks that judge a built candidate version (the chunk and manifest suites run before
# a version exists and stop the run instead).
VERSION_CHECKS = ("embeddings_quality", "index_quality")


# ---- what the current settings require ----------------------------------------------------------


def required_gates(settings: Settings) -> list[str]:
    """The gates a version needs a passing recorded verdict for, under ``settings``: the blocking
    version-level quality checks, and the eval gate whenever a golden set is configured."""
    required = [name for name in VERSION_CHECKS if settings.quality.is_blocking(name)]
    if settings.eval.golden_file:
        required.append(EVAL_GATE)
    return required


def check_gates(settings: Settings, version: int) -> dict[str, dict]:
    """The recorded verdicts of ``version``'s required gates; raises if one is missing or failed."""
    recorded = gates.results(settings.state, version)
    missing = [g for g in required_gates(settings) if g not in recorded]
    failed = sorted(g for g, r in recorded.items() if not r.get("passed"))
    if missing or failed:
        parts = []
        if failed:
            parts.append(f"failed: {', '.join(failed)}")
        if missing:
            parts.append(f"no verdict recorded: {', '.join(missing)} (run the pipeline's checks on it)")
        raise PromotionRefused(f"index version {version} cannot be promoted ({'; '.join(parts)}); "
                               "`promote --force --reason TEXT` overrides, and is logged")
    return recorded


def judge(settings: Settings, version: int) -> dict[str, bool]:
    """Run the version-level gates in this process and record their verdicts for ``version``:
    what the Dagster checks on ``candidate_index`` and ``index_eval`` do, for callers without
    Dagster (``pipeline.run_all``). Returns gate -> passed."""
    from ingest_platform import evaluation, quality

    verdicts: dict[str, bool] = {}
    for check in (quality.check_embeddings, quality.check_index):
        result = check(settings, version)
        # A non-blocking check records a pass (with what it found): a warning never holds promotion.
        passed = result.passed or not result.blocking
        gates.record(settings.state, version, result.name, passed, {"check_passed": result.passed})
        verdicts[result.name] = passed
        release_free_heap()
    if settings.eval.golden_file:
        candidate, production = evaluation.evaluate_candidate_and_production(settings)
        evaluation.save_reports(settings, candidate, production)
        evaluation.record_history(settings, [r for r in (candidate, production) if r is not None])
        verdict = evaluation.compare(candidate, production, evaluation.floors(settings), settings.eval.max_regression)
        gates.record(settings.state, version, EVAL_GATE, verdict.passed, {"reasons": "; ".join(verdict.reasons)})
        verdicts[EVAL_GATE] = verdict.passed
    return verdicts


# ---- what may be served ----------------------------------------------------------------------------


@dataclass
class Exposure:
    """What a version would serve that the sources no longer allow."""

    version: int
    deleted: list[str] = field(default_factory=list)  # documents gone from their source
    narrowed: dict[str, list[str]] = field(default_factory=dict)  # doc -> groups it may keep

    def __bool__(self) -> bool:
        return bool(self.deleted or self.narrowed)

    def describe(self, limit: int = 10) -> str:
        parts = []
        if self.deleted:
            more = f" (+{len(self.deleted) - limit} more)" if len(self.deleted) > limit else ""
            parts.append(f"{len(self.deleted)} deleted document(s): {', '.join(self.deleted[:limit])}{more}")
        if self.narrowed:
            docs = sorted(self.narrowed)
            more = f" (+{len(docs) - limit} more)" if len(docs) > limit else ""
            parts.append(f"{len(docs)} document(s) with revoked groups: {', '.join(docs[:limit])}{more}")
        return "; ".join(parts) or "nothing"


def allowed_access(settings: Settings) -> dict[str, set[str]]:
    """Per document still present in its source, the groups the source grants it now.

    A source that could not be listed keeps its documents' last good rows in the manifest, and a
    deletion held for confirmation keeps its documents' groups here, so neither an outage nor an
    unconfirmed mass deletion removes anything from production."""
    present = mf.load_manifest(settings.state, ["doc_id", "status", "access_groups"])
    present = present.filter(pc.not_equal(present["status"], "deleted"))
    allowed = {doc_id: set(groups or []) for doc_id, groups in
               zip(present["doc_id"].to_pylist(), present["access_groups"].to_pylist())}
    del present
    for doc_id, groups in held_deletions(settings).items():
        allowed.setdefault(doc_id, set(groups))
    seen = revoked_since_scan(settings)  # newer than the manifest: only ever takes away
    for doc_id in seen["deleted"]:
        allowed.pop(doc_id, None)
    for doc_id, groups in seen["narrowed"].items():
        if doc_id in allowed:
            allowed[doc_id] &= set(groups)
    return allowed


def exposure(settings: Settings, store: IndexStore, version: int) -> Exposure:
    """What ``version`` serves beyond what the sources allow now (deleted docs, revoked groups)."""
    served = store.served_access(version)
    allowed = allowed_access(settings)
    out = Exposure(version)
    for doc_id, groups in sorted(served.items()):
        if doc_id not in allowed:
            out.deleted.append(doc_id)
        elif groups - allowed[doc_id]:
            out.narrowed[doc_id] = sorted(groups & allowed[doc_id])
    return out


# ---- revocations seen between scans (``ingest_platform.revocation_check``) ---------------------------


def revoked_since_scan(settings: Settings) -> dict:
    """What the sources stopped allowing since the last scan, as seen by the checks of a long run:
    ``{"deleted": [doc ids], "narrowed": {doc id: the groups it keeps}, "checked_at": ISO time of
    the last check}``. Kept until the next scan writes the same into the manifest, so the run's own
    candidate cannot bring it back."""
    path = state.revoked_since_scan(settings.state)
    if not path.exists():
        return {"deleted": [], "narrowed": {}, "checked_at": None}
    return json.loads(path.read_text())


def record_revoked_since_scan(settings: Settings, deleted: list[str], narrowed: dict[str, list[str]]) -> None:
    """Add to what the sources stopped allowing, and note the check's time (the caller holds the
    writer lock)."""
    from ingest_platform.storage import atomic_write_text

    seen = revoked_since_scan(settings)
    seen["deleted"] = sorted(set(seen["deleted"]) | set(deleted))
    for doc_id, groups in narrowed.items():
        seen["narrowed"][doc_id] = sorted(set(groups) & set(seen["narrowed"].get(doc_id, groups)))
    seen["checked_at"] = datetime.now(UTC).isoformat()
    atomic_write_text(json.dumps(seen, indent=1), state.revoked_since_scan(settings.state))


def forget_revoked_since_scan(settings: Settings) -> None:
    """The scan that just saved the manifest saw all of it (and whatever changed back since)."""
    path = state.revoked_since_scan(settings.state)
    if path.exists():
        path.unlink()


# ---- held mass deletions ----------------------------------------------------------------------------


def _hold_path(settings: Settings) -> Path:
    return state.deletion_hold(settings.state)


def held_deletions(settings: Settings) -> dict[str, list[str]]:
    """Documents whose deletion waits for confirmation: doc id -> the groups it had."""
    path = _hold_path(settings)
    if not path.exists():
        return {}
    return {d["doc_id"]: d["access_groups"] for d in json.loads(path.read_text())["documents"]}


def hold_report(settings: Settings) -> dict | None:
    """The pending hold (sources, counts, documents), or None."""
    path = _hold_path(settings)
    return json.loads(path.read_text()) if path.exists() else None


def hold_deletions(settings: Settings, source: str, before: int, gone: list[dict]) -> None:
    """Record that ``gone`` (manifest rows) left ``source`` in one scan of ``before`` documents."""
    from ingest_platform.storage import atomic_write_text

    path = _hold_path(settings)
    with _hold_lock(path):
        data = json.loads(path.read_text()) if path.exists() else {"sources": {}, "documents": []}
        data["sources"][source] = {"documents_before": before, "documents_gone": len(gone),
                                   "at": datetime.now(UTC).isoformat(timespec="seconds")}
        known = {d["doc_id"] for d in data["documents"]}
        data["documents"] += [{"doc_id": r["doc_id"], "source": source, "source_uri": r["source_uri"],
                               "access_groups": list(r["access_groups"] or [])}
                              for r in gone if r["doc_id"] not in known]
        atomic_write_text(json.dumps(data, indent=1), path)
    log.warning("source %r: %d of %d documents gone in one scan: deletion held until "
                "`ingest-platform promote --confirm-deletions`", source, len(gone), before)


def _hold_lock(path: Path):
    """The scan that records a hold holds the home's writer lock; locally a file lock as well
    (several sources' holds are recorded by one scan, one after another)."""
    from contextlib import nullcontext

    from ingest_platform.storage import is_remote

    return nullcontext() if is_remote(path) else file_lock(path.with_suffix(".lock"))


def release_hold(settings: Settings) -> list[str]:
    """Release the hold: the held documents count as deleted from now on. Returns their ids."""
    docs = sorted(held_deletions(settings))
    _hold_path(settings).unlink(missing_ok=True)
    return docs


# ---- moving the production tag ---------------------------------------------------------------------


def _store(settings: Settings) -> IndexStore:
    return IndexStore(settings.lancedb_uri, settings.index.table, home=settings.state)


def _sanitised(settings: Settings, store: IndexStore, version: int) -> tuple[int, Exposure]:
    """``version``, or a new version derived from it with the current revocations applied."""
    exp = exposure(settings, store, version)
    if not exp:
        return version, exp
    derived = store.derive(version, delete=exp.deleted, narrow=exp.narrowed,
                           retention=timedelta(days=settings.index.retention_days))
    _log_revocations(settings, exp)
    return derived, exp


def rolled_back(store: IndexStore) -> PromotionEvent | None:
    """The rollback that holds a run's promotion: set while the last promotion or rollback in the
    history is a rollback (revocations applied since derive from the same release and keep it),
    ended by the next promotion an operator makes.

    Why: an operator rolls back because a release is bad in a way no gate saw. The candidate the
    runs build is that release, or that release plus whatever changed since, so the next scheduled
    or sensor run promoting it would quietly undo the rollback within the hour."""
    for event in reversed(store.history()):
        if event.action in ("promote", "rollback"):
            return event if event.action == "rollback" else None
    return None


def held_by(rollback_event: PromotionEvent) -> str:
    """Why a run promotes nothing while ``rolled_back`` holds, in one line."""
    e = rollback_event
    return (f"production was rolled back to v{e.to_version} at {e.at[:19]}Z by {e.who} ({e.why}): runs build and "
            "check candidates but promote none until an operator promotes one (`ingest-platform promote`)")


def promote(settings: Settings, ref: str | int = CANDIDATE, *, why: str, who: str | None = None,
            force_reason: str | None = None, confirm_deletions: bool = False, by_run: bool = False,
            store: IndexStore | None = None) -> PromotionEvent:
    """Move ``production`` to ``ref`` if every required gate passed for that exact version.

    Parameters
    ----------
    settings:
        The platform settings; decide the required gates and the deletion hold.
    ref:
        A tag (``"candidate"``) or a version number.
    why, who:
        Recorded in the promotion history.
    force_reason:
        Promote despite missing or failing gates; the reason is recorded and logged at WARNING.
    confirm_deletions:
        Release a held mass deletion (``promote --confirm-deletions``).
    by_run:
        The promotion a pipeline run makes of its own candidate: refused while a rollback holds
        (``rolled_back``), which only an operator's promotion ends.

    Returns
    -------
    PromotionEvent
        The recorded move. If ``ref`` holds documents that have since been deleted or had groups
        revoked, the version promoted is derived from it with those applied (``to_version`` differs
        from ``ref`` and ``why`` says so): no promotion re-exposes revoked content.

    Raises
    ------
    PromotionRefused
        A required gate is missing or failed, the version drops documents whose deletion is
        held for confirmation, or (``by_run``) production was rolled back.
    """
    store = store or _store(settings)
    with writer_lock(settings.home, what="promote"):
        if by_run and (rollback_event := rolled_back(store)) is not None:
            raise PromotionRefused(held_by(rollback_event))
        version = store.version_of(ref)
        if force_reason:
            log.warning("forced promotion of version %s: %s", version, force_reason)
            why = f"{why} (FORCED: {force_reason})"
        else:
            check_gates(settings, version)
        if confirm_deletions or settings.safety.confirm_deletions:
            confirmed = release_hold(settings)
            if confirmed:
                why = f"{why} (confirmed deletion of {len(confirmed)} documents)"
        held = held_deletions(settings)
        production = store.tags().get(PRODUCTION)
        if held and production is not None:
            # Only documents production serves are protected by the hold (a bulk upload that never
            # reached production and is withdrawn again drops nothing anyone relies on).
            was_served = store.served_access(production)
            held = {d for d in held if d in was_served}
            if not held:
                release_hold(settings)
            served = store.served_access(version)
            dropping = sorted(d for d in held if d not in served)
            if dropping:
                raise PromotionRefused(
                    f"version {version} drops {len(dropping)} documents whose deletion is held "
                    f"(a sudden drop in one scan): {', '.join(dropping[:10])}"
                    f"{' ...' if len(dropping) > 10 else ''}; confirm with "
                    "`ingest-platform promote --confirm-deletions` or set [safety] confirm_deletions = true")
        target, exp = _sanitised(settings, store, version)
        if exp:
            why = f"{why} (from v{version} with revocations applied: {exp.describe()})"
        current = store.tags().get(PRODUCTION)
        if current == target:
            return PromotionEvent("promote", current, target, datetime.now(UTC).isoformat(), who or "", why + " (already production)")
        return store.move_production(target, "promote", why=why, who=who, based_on=version)


def rollback(settings: Settings, *, why: str, who: str | None = None, wait_s: float = 0.0,
             store: IndexStore | None = None) -> PromotionEvent:
    """Move ``production`` back to the previous production version, with the current revocations
    and deletions applied on top (a new version derived from it when needed). Until an operator
    promotes again, runs promote nothing (``rolled_back``).

    Parameters
    ----------
    why, who:
        Recorded in the promotion history.
    wait_s:
        While a run holds the home's writer lock (a re-parse or re-embed can hold it for hours), the
        rollback is handed to that run, which carries it out at its next revocation check (every
        ``[safety] revocation_check_s`` while it parses or embeds) or when it ends; this waits up
        to ``wait_s`` for that, or for the lock to come free and rolls back itself.

    Raises
    ------
    HomeLocked
        Neither happened within ``wait_s``; the message says the request is with the run
        (``rollback_request``; it lapses if the run ends without carrying it out).
    IndexError_
        No earlier production version is kept.

    Example
    -------
    >>> promotion.rollback(settings, why="answers cite the wrong price list", wait_s=120)
    PromotionEvent(action='rollback', from_version=9, to_version=7, ...)
    """
    store = store or _store(settings)
    deadline = time.monotonic() + wait_s
    request: dict | None = None
    while True:
        try:
            with writer_lock(settings.home, what="rollback"):
                if request is not None:  # handed over earlier: done by the run meanwhile, or withdrawn now
                    done = _close_rollback_request(settings, request["id"])
                    if done is not None:
                        return PromotionEvent(**done)
                return _rollback(settings, store, why, who)
        except HomeLocked as locked:
            if request is None:
                request = _request_rollback(settings, why, who)
            seen = rollback_request(settings) or {}
            if seen.get("id") == request["id"] and seen["status"] == "applied":
                return PromotionEvent(**seen["event"])
            if seen.get("id") == request["id"] and seen["status"] == "failed":
                raise IndexError_(seen["error"]) from None
            if time.monotonic() >= deadline:
                raise HomeLocked(
                    f"{locked}; the rollback is handed to it: it rolls back at its next check (every "
                    f"{settings.safety.revocation_check_s:g} s while it parses or embeds) or when it ends, "
                    "and `status` shows the request until then") from None
            time.sleep(0.2)


def _rollback(settings: Settings, store: IndexStore, why: str, who: str | None) -> PromotionEvent:
    previous = store.rollback_target()
    target, exp = _sanitised(settings, store, previous)
    if exp:
        why = f"{why} (v{previous} with revocations applied: {exp.describe()})"
    return store.move_production(target, "rollback", why=why, who=who, based_on=previous)


# ---- a rollback asked for while a run holds the home ------------------------------------------------


def rollback_request(settings: Settings) -> dict | None:
    """The last rollback handed to a run: ``{"id", "why", "who", "at", "status"}``, status
    ``pending``, ``applied`` (with the ``event``), ``failed`` (with the ``error``) or ``lapsed``
    (the run ended, or the next one scanned, without carrying it out)."""
    path = state.rollback_request(settings.state)
    return json.loads(path.read_text()) if path.exists() else None


def _write_rollback_request(settings: Settings, request: dict) -> None:
    from ingest_platform.storage import atomic_write_text

    atomic_write_text(json.dumps(request, indent=1), state.rollback_request(settings.state))


def _request_rollback(settings: Settings, why: str, who: str | None) -> dict:
    import uuid

    request = {"id": uuid.uuid4().hex, "why": why, "who": who or whoami(),
               "at": datetime.now(UTC).isoformat(timespec="milliseconds"), "status": "pending"}
    _write_rollback_request(settings, request)
    log.warning("rollback handed to the run that holds %s: %s", settings.home, why)
    return request


def _close_rollback_request(settings: Settings, request_id: str) -> dict | None:
    """Under the writer lock: the event if the run carried the request out, else it is withdrawn
    (the caller rolls back itself) and None."""
    seen = rollback_request(settings)
    if seen is None or seen["id"] != request_id:
        return None
    if seen["status"] == "applied":
        return seen["event"]
    path = state.rollback_request(settings.state)
    if path.exists():
        path.unlink()
    return None


def apply_requested_rollback(settings: Settings, store: IndexStore | None = None) -> PromotionEvent | None:
    """Carry out a pending rollback request; a run calls this at its revocation checks and when it
    ends (it holds the writer lock). Returns the event, or None when nothing was pending."""
    seen = rollback_request(settings)
    if seen is None or seen["status"] != "pending":
        return None
    with writer_lock(settings.home, what="rollback"):
        try:
            event = _rollback(settings, store or _store(settings),
                              f"{seen['why']} (asked for at {seen['at']} while a run held the home)", seen["who"])
        except IndexError_ as exc:
            _write_rollback_request(settings, {**seen, "status": "failed", "error": str(exc)})
            return None
        _write_rollback_request(settings, {**seen, "status": "applied", "event": event.__dict__})
        return event


def lapse_rollback_request(settings: Settings) -> None:
    """A run's scan starts: a request made before this run took the writer lock was handed to
    another holder that never carried it out (it failed or ended first), and is not this run's to
    carry out hours later; it is marked lapsed, and ``status`` says so."""
    seen = rollback_request(settings)
    since = (holder(settings.home) or {}).get("since")
    if seen is not None and seen["status"] == "pending" and since and seen["at"] < since:
        _write_rollback_request(settings, {**seen, "status": "lapsed"})


@dataclass
class RevocationResult:
    from_version: int
    to_version: int
    deleted: list[str]
    narrowed: dict[str, list[str]]


def apply_revocations(settings: Settings, *, why: str = "", who: str | None = None,
                      store: IndexStore | None = None) -> RevocationResult | None:
    """The security fast path: remove deleted documents from production and narrow revoked
    groups, now, whatever the quality gates say. Recorded in the promotion history as ``revoke``.
    Returns None when production already matches the sources (or there is no production)."""
    store = store or _store(settings)
    with writer_lock(settings.home, what="revoke"):
        production = store.tags().get(PRODUCTION)
        if production is None:
            return None
        exp = exposure(settings, store, production)
        if not exp:
            return None
        derived = store.derive(production, delete=exp.deleted, narrow=exp.narrowed,
                               retention=timedelta(days=settings.index.retention_days))
        _log_revocations(settings, exp)
        store.move_production(derived, "revoke", why=f"{why or 'fast path'}: {exp.describe()}", who=who,
                              based_on=production)
        log.warning("production v%s -> v%s: revoked %s", production, derived, exp.describe())
        return RevocationResult(production, derived, exp.deleted, exp.narrowed)


# ---- retention of revoked text -----------------------------------------------------------------------


def _revocations_path(settings: Settings) -> Path:
    return state.revocations(settings.state)


def _log_revocations(settings: Settings, exp: Exposure) -> None:
    from ingest_platform.storage import append_text

    append_text(_revocations_path(settings), json.dumps({"at": datetime.now(UTC).isoformat(), "from_version": exp.version,
                                                         "deleted": exp.deleted, "narrowed": sorted(exp.narrowed)}) + "\n")


def purge_revoked(settings: Settings, *, now: datetime | None = None,
                  store: IndexStore | None = None) -> dict:
    """Remove old versions that still hold revoked or deleted text, once they are older than
    ``[index] revoked_retention_hours`` (default 24) after the revocation.

    Every pipeline run calls this. For each revocation whose window has passed: the rollback tags
    of versions created before it are removed (rollback could only have served them with the
    revocation applied anyway), the candidate tag too if it still exposes revoked content, and
    every untagged version older than the revocation is pruned. Returns what was freed."""
    store = store or _store(settings)
    path = _revocations_path(settings)
    if not path.exists() or not store.exists():
        return {"untagged": [], "versions_pruned": 0}
    now = now or datetime.now(UTC)
    window = timedelta(hours=settings.index.revoked_retention_hours)
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    due = [e for e in entries if datetime.fromisoformat(e["at"]) + window <= now]
    if not due:
        return {"untagged": [], "versions_pruned": 0}
    cutoff = max(datetime.fromisoformat(e["at"]) for e in due)
    with writer_lock(settings.home, what="purge"):
        table = store.open()
        created = {v["version"]: v["timestamp"] for v in table.list_versions()}
        keep = {store.tags().get(PRODUCTION)}
        untagged = []
        for name, info in table.tags.list().items():
            v = info["version"]
            if v in keep or name == PRODUCTION:
                continue
            stamp = created.get(v)
            old = stamp is not None and _aware(stamp) < cutoff
            if (name.startswith(PROMOTED_PREFIX) and old) or (name == CANDIDATE and exposure(settings, store, v)):
                table.tags.delete(name)
                untagged.append(name)
        before = len(created)
        store.prune(older_than=max(now - cutoff, timedelta(0)))
        after = len(store.open().list_versions())
        remaining = [e for e in entries if e not in due]
        from ingest_platform.storage import atomic_write_text

        atomic_write_text("".join(json.dumps(e) + "\n" for e in remaining), path)
    log.info("purged revoked text: untagged %s, pruned %d versions", untagged, before - after)
    return {"untagged": untagged, "versions_pruned": before - after}


def _aware(ts: datetime) -> datetime:
    # lancedb reports naive local times
    return ts.astimezone(UTC) if ts.tzinfo is None else ts


__all__ = ["EVAL_GATE", "Exposure", "RevocationResult", "required_gates", "check_gates", "exposure",
           "promote", "rollback", "apply_revocations", "purge_revoked", "held_deletions", "hold_report",
           "hold_deletions", "release_hold", "revoked_since_scan", "record_revoked_since_scan",
           "forget_revoked_since_scan"]
