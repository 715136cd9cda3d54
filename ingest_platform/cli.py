"""``ingest-platform``: run the pipeline headlessly through Dagster, inspect it, query, promote.

Exit codes: 0 done (warnings, e.g. a non-blocking check or an unavailable source, are reported but
do not change it); 1 the command could not complete (an error, said on stderr); 2 bad usage, bad
configuration or input (one line saying which file, line or key), or nothing to act on; 3 ``run``
completed but a blocking check failed or promotion was refused, so the new index was not promoted
(``eval``: the candidate fails the eval gate; ``promote``: refused); 4 another writer holds the
state folder (``--wait SECONDS`` waits for it).

The Dagster-facing commands (``run``, ``ui``) import the top-level ``definitions`` module lazily:
this package itself never imports Dagster, so serving apps that import it stay light.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ingest_platform.config import load_settings

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BLOCKED, EXIT_LOCKED = 0, 1, 2, 3, 4


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", help="state directory (default: from config / INGEST_PLATFORM_HOME)")
    p.add_argument("--config", help="TOML config file (default: ./ingest-platform.toml)")
    p.add_argument("--json", action="store_true", help="print a machine-readable JSON result")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ingest-platform", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="scan, parse, chunk, enrich, embed, index, check, promote")
    _common(p)
    p.add_argument("--source", action="append", metavar="PATH_OR_URI",
                   help="a folder, record file (.jsonl/.parquet) or fsspec URI; repeatable; "
                        "replaces the configured sources (NAME=PATH names it)")
    p.add_argument("--default-groups", metavar="A,B",
                   help="access groups for documents no rule or sidecar grants (default: none, "
                        "i.e. visible to nobody); e.g. --default-groups public")
    p.add_argument("--golden", metavar="FILE",
                   help="golden set JSONL that gates this run (default: [eval] golden_file, which "
                        "--source leaves out: it asks about the configured sources)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another run on the same home to finish (default: exit 4 at once)")

    p = sub.add_parser("status", help="documents by status and the failures with reasons")
    _common(p)

    p = sub.add_parser("query", help="search the production index")
    _common(p)
    p.add_argument("text")
    p.add_argument("--k", type=int, default=None, help="hits (default 5; with --context: hits to pack from, default 20)")
    p.add_argument("--mode", choices=["hybrid", "vector", "keyword"], default="hybrid")
    p.add_argument("--groups", default=None, help="caller's access groups, comma-separated (default: public)")
    p.add_argument("--version", dest="ref", default="production",
                   help="tag or version number to read; anything but production needs --operator")
    p.add_argument("--operator", action="store_true",
                   help="read an explicit old version (allowed for the owner of the home and [query] operators)")
    p.add_argument("--filter", action="append", default=[], metavar="COLUMN=VALUE",
                   help="metadata filter, e.g. format=pdf (repeatable)")
    p.add_argument("--include-superseded", action="store_true",
                   help="also return documents a newer near-duplicate version supersedes")
    p.add_argument("--all-duplicates", action="store_true",
                   help="return every near-duplicate document, not one hit per group")
    p.add_argument("--context", type=int, metavar="N", default=None,
                   help="print the hits packed into N tokens with citations, ready for a model "
                        "(--k then sets how many hits to choose from; default 20)")

    p = sub.add_parser("feedback", help="judge whether a document answers a traced query")
    _common(p)
    p.add_argument("trace_id", metavar="TRACE_ID", help="the trace_id of a query's answer")
    p.add_argument("--doc", required=True, metavar="DOC_ID", help="the judged document's doc_id")
    p.add_argument("--relevant", required=True, choices=["yes", "no"])
    p.add_argument("--note", default=None, metavar="TEXT")
    p.add_argument("--judge", default=None, help="who judged (default: $INGEST_PLATFORM_JUDGE or the OS user)")

    p = sub.add_parser("review", help="a stratified sample of the last day's production queries to look at")
    _common(p)
    p.add_argument("--n", type=int, default=None, help="queries in the sample (default [monitoring] review_size)")
    p.add_argument("--days", type=float, default=1.0, help="how far back to sample (default 1 day)")

    p = sub.add_parser("golden", help="grow the golden set: from feedback, or a synthetic starter set")
    gsub = p.add_subparsers(dest="golden_command", required=True)
    g = gsub.add_parser("add-feedback", help="judged feedback -> golden entries tagged production")
    _common(g)
    g.add_argument("--out", help="file to merge into (default [eval] production_golden_file or "
                                 "<home>/golden/production.jsonl)")
    g = gsub.add_parser("bootstrap", help="a starter set from titles and headings, tagged synthetic")
    _common(g)
    g.add_argument("--out", help="file to write (default <home>/golden/synthetic.jsonl)")
    g.add_argument("--n", type=int, default=50, help="entries at most (default 50)")
    g.add_argument("--version", dest="ref", default="production", help="index tag or version to derive it from")

    p = sub.add_parser("eval", help="score the golden set on the candidate (or --version) and production")
    _common(p)
    p.add_argument("--golden", help="golden set JSONL (default: [eval] golden_file)")
    p.add_argument("--version", dest="ref", default="candidate", help="tag or version number to evaluate")

    p = sub.add_parser("ui", help="start the Dagster UI (dagster dev) on this project's workspace")
    _common(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)

    p = sub.add_parser("promote", help="move the production tag to the candidate (or --version)")
    _common(p)
    p.add_argument("--version", dest="ref", default="candidate")
    p.add_argument("--reason", default="manual promotion")
    p.add_argument("--force", action="store_true",
                   help="promote despite missing or failing gates (needs --reason; recorded and logged)")
    p.add_argument("--confirm-deletions", action="store_true",
                   help="confirm a held mass deletion (see `status`) and promote")

    p = sub.add_parser("rollback", help="move the production tag back to the previous production version")
    _common(p)
    p.add_argument("--reason", default="manual rollback")
    p.add_argument("--wait", type=float, default=120.0, metavar="SECONDS",
                   help="while a run holds the home, it carries the rollback out at its next check; wait "
                        "this long for that (default 120; exit 4 after, the request stays with the run)")

    p = sub.add_parser("maintain", help="free what the state no longer needs: old index versions, cache rows, traces")
    _common(p)
    return parser


def _print(args, payload: dict, human: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if args.json else human)


def _settings(args):
    return load_settings(args.config, home=args.home)


# ---- commands -----------------------------------------------------------------------------------


def cmd_run(args) -> int:
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    settings = _settings(args)
    if not settings.sources and not args.source:
        print("no sources configured: add [[sources]] to ingest-platform.toml or pass --source PATH",
              file=sys.stderr)
        return EXIT_USAGE
    from definitions import execute_run  # Dagster is imported only here
    from ingest_platform.progress import enable_bars

    enable_bars(sys.stderr.isatty() and not args.json)

    overrides: dict = {}
    if args.source:
        from ingest_platform.errors import ConfigError
        from ingest_platform.sources import sources_from_paths

        given = sources_from_paths(args.source)
        for cfg in given:
            if cfg.resolved_kind() == "directory" and Path(cfg.path).is_file():
                raise ConfigError(f"--source {cfg.path} is a file: a source is a folder of documents, a .jsonl / "
                                  ".parquet record file or a URI (give the file's folder)")
        overrides["sources"] = [cfg.model_dump() for cfg in given]
    if args.default_groups is not None:
        overrides["default_access_groups"] = [g for g in args.default_groups.split(",") if g]
    # The configured golden set asks about the configured sources: judged on other documents it
    # scores 0 and blocks every build of them, so ``--source`` leaves it out unless asked for.
    golden = args.golden or (None if args.source else settings.eval.golden_file)
    notes = []
    if golden != settings.eval.golden_file:
        overrides["eval"] = {**settings.eval.model_dump(), "golden_file": golden}
        if golden is None:
            notes.append(f"note: no golden set gates this run: the configured one ({settings.eval.golden_file}) asks "
                         "about the configured sources, which --source replaces; pass --golden FILE to gate on "
                         "one (`ingest-platform golden bootstrap` writes a starter set)")
    if golden:  # a bad golden line is an input error, said before any work
        from ingest_platform.evaluation import load_golden

        load_golden(golden)
    settings = load_settings(args.config, home=args.home, **overrides)  # what the run runs with
    # Dagster's console logger already prints the platform's lines (and puts them in the run's
    # event log); propagating them to the root handler too printed every line twice.
    platform_log = logging.getLogger("ingest_platform")
    platform_log.propagate = False
    try:
        result = execute_run(config_file=args.config, home=str(settings.home), overrides=overrides or None,
                             lock_wait_s=args.wait)
    finally:
        platform_log.propagate = True
    summary = _run_summary(result, settings)
    if summary["blocked_by"] or summary["promotion_refused"]:
        code = EXIT_BLOCKED
    else:
        code = EXIT_OK if result.success else EXIT_ERROR
    summary["exit_code"] = code
    lines = [
        f"run {summary['run_id']}: {'succeeded' if result.success else 'did not complete'}",
        f"documents: {summary['documents']['total']} {summary['documents']['by_status']}",
    ]
    lines += [f"  failed: {f['doc_id']}: {f['reason']}" for f in summary["failures"][:20]]
    lines += [f"  WARNING stale: {f['doc_id']}: {f['reason']}" for f in summary["stale"][:20]]
    if summary["noop"]:
        lines.append(summary["noop"])
    lines += [f"  {c['status']}: {c['document']}" + (f" ({c['reason']})" if c.get("reason") else "")
              for c in summary["changes"][:20] if c["status"] != "failed"]
    for step, meta in summary["assets"].items():
        shown = {k: v for k, v in meta.items() if isinstance(v, int | float) or isinstance(v, str) and len(v) < 60}
        lines.append(f"{step}: {shown}")
    if summary["invisible_chunks"]:
        lines.append(f"note: {summary['invisible_chunks']} chunks have no access groups and are visible to "
                     "nobody (default deny); grant groups with access_groups / access_rules / sidecars or "
                     "--default-groups")
    summary["notes"] = notes
    lines += notes
    for name, why in summary["unavailable_sources"].items():
        lines.append(f"WARNING source unavailable, its documents kept as they were: {why}")
    if summary["revoked"]:
        lines.append(f"revocations applied to production: {summary['revoked']}")
    if summary["deletions_held"]:
        lines.append(f"WARNING {len(summary['deletions_held'])} deletions held (a sudden drop): "
                     f"{', '.join(summary['deletions_held'][:10])}; confirm with `ingest-platform promote --confirm-deletions`")
    for name in summary["warnings"]:
        lines.append(f"warning: {name}: {summary['checks'][name].get('description') or 'failed'}")
    for name in summary["blocked_by"]:
        lines.append(f"blocking check failed: {name}: {summary['checks'][name].get('description') or 'failed'}")
    if summary["blocked_by"]:
        lines.append(f"NOT PROMOTED: blocking checks failed: {', '.join(summary['blocked_by'])}")
    if summary["promotion_refused"]:
        lines.append(f"NOT PROMOTED: {summary['promotion_refused']}")
    lines.append(f"production version: {summary['production_version']}")
    _print(args, summary, "\n".join(lines))
    return code


def _metadata_value(v: Any) -> Any:
    v = getattr(v, "value", v)
    if hasattr(v, "records") and hasattr(v, "schema"):  # a table: its rows
        return [r.data for r in v.records]
    return v


def _run_summary(result, settings) -> dict:
    from ingest_platform import manifest as mf
    from ingest_platform.pipeline import index_store, load_enriched

    assets: dict[str, dict] = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        assets[mat.asset_key.to_user_string()] = {
            k: _metadata_value(v) for k, v in mat.metadata.items()
            if not isinstance(_metadata_value(v), str) or "\n" not in _metadata_value(v)
        }
    import dagster as dg

    from ingest_platform import promotion
    from ingest_platform.pipeline import unavailable_sources

    checks, blocked, warnings = {}, [], []
    for event in result.get_asset_check_evaluations():
        blocking = event.severity == dg.AssetCheckSeverity.ERROR
        checks[event.check_name] = {"passed": event.passed, "blocking": blocking,
                                    "description": event.description,
                                    **{k: _metadata_value(v) for k, v in event.metadata.items()}}
        if not event.passed:
            (blocked if blocking else warnings).append(event.check_name)
    refused = None
    for event in result.all_events:
        if event.is_step_failure and event.step_key == "production_index":
            refused = event.event_specific_data.error.message.strip().splitlines()[0] if event.event_specific_data.error else "refused"
            data = event.event_specific_data
            if getattr(data, "user_failure_data", None) and data.user_failure_data.description:
                refused = data.user_failure_data.description
    if assets.get("production_index", {}).get("held_by_rollback"):  # the run succeeded, promoted nothing
        refused = assets["production_index"]["reason"]
    docs = mf.summarize(mf.load_manifest(settings.state))
    tags = index_store(settings).tags()
    enriched = load_enriched(settings, ["access_groups"])
    invisible = sum(1 for g in enriched["access_groups"].to_pylist() if not g)
    manifest = assets.get("document_manifest", {})
    noop = next((e.event_specific_data.asset_observation.metadata["outcome"].value for e in result.all_events
                 if e.event_type_value == "ASSET_OBSERVATION"
                 and "outcome" in e.event_specific_data.asset_observation.metadata), None)
    return {
        "noop": noop,
        "changes": manifest.get("changes") or [],
        "invisible_chunks": invisible,
        "run_id": result.run_id, "success": result.success,
        "documents": {"total": docs["total"], "by_status": docs["by_status"]},
        "failures": docs["failures"], "stale": docs["stale"], "assets": assets, "checks": checks, "blocked_by": blocked,
        "warnings": warnings, "promotion_refused": refused,
        "unavailable_sources": unavailable_sources(settings),
        "deletions_held": sorted(promotion.held_deletions(settings)),
        "revoked": {k: v for k, v in assets.get("production_revocations", {}).items()
                    if k.startswith("documents_") and v},
        "candidate_version": tags.get("candidate"), "production_version": tags.get("production"),
        "promoted": "production_index" in assets and bool(assets["production_index"].get("promoted")),
    }


def cmd_status(args) -> int:
    from ingest_platform import manifest as mf
    from ingest_platform.pipeline import index_store

    settings = _settings(args)
    docs = mf.summarize(mf.load_manifest(settings.state))
    store = index_store(settings)
    from ingest_platform import promotion
    from ingest_platform.pipeline import unavailable_sources

    down = unavailable_sources(settings)
    hold = promotion.hold_report(settings)
    revoked = {k: v for k, v in promotion.revoked_since_scan(settings).items() if k != "checked_at"}
    rolled_back = promotion.rolled_back(store)
    request = promotion.rollback_request(settings)
    payload = {
        "home": str(settings.home),
        "documents": {"total": docs["total"], "by_status": docs["by_status"]},
        "failures": docs["failures"],
        "stale": docs["stale"],
        "unavailable_sources": down,
        "deletions_held": hold,
        "revoked_since_scan": revoked,
        "rollback_hold": rolled_back.__dict__ if rolled_back else None,
        "rollback_request": request,
        "index": {"tags": store.tags(), "history": [e.__dict__ for e in store.history()[-10:]]},
    }
    human = [f"documents: {docs['total']}  " + "  ".join(f"{k}={v}" for k, v in docs["by_status"].items())]
    human += [f"  failed: {f['doc_id']}: {f['reason']}" for f in docs["failures"]]
    human += [f"  WARNING stale: {f['doc_id']}: {f['reason']}" for f in docs["stale"]]
    human += [f"WARNING source unavailable (documents kept): {why}" for why in down.values()]
    if hold:
        human.append(f"WARNING {len(hold['documents'])} deletions held: "
                     + ", ".join(d["doc_id"] for d in hold["documents"][:10])
                     + "; confirm with `ingest-platform promote --confirm-deletions`")
    if revoked["deleted"] or revoked["narrowed"]:  # the manifest above does not know them yet
        human.append("revoked during the last run, after its scan (out of production; the next scan records them): "
                     + "; ".join([*(f"deleted {d}" for d in revoked["deleted"]),
                                  *(f"narrowed {d} to {g or 'no groups'}" for d, g in revoked["narrowed"].items())]))
    if request and request["status"] in ("pending", "lapsed", "failed"):
        human.append(f"{'WARNING ' if request['status'] != 'pending' else ''}rollback asked for at {request['at']} by "
                     f"{request['who']} ({request['why']}): {request['status']}"
                     + {"pending": " (the run that holds the home carries it out at its next check or when it ends)",
                        "lapsed": " (the run it was handed to ended first; roll back again if still wanted)",
                        "failed": f": {request.get('error')}"}[request["status"]])
    if rolled_back:
        human.append(f"WARNING production rolled back to v{rolled_back.to_version} at {rolled_back.at[:19]}Z by "
                     f"{rolled_back.who} ({rolled_back.why}): runs do not promote until an operator does "
                     "(`ingest-platform promote`)")
    human.append(f"index tags: {payload['index']['tags'] or 'none (run `ingest-platform run`)'}")
    _print(args, payload, "\n".join(human))
    return EXIT_OK


def cmd_query(args) -> int:
    from ingest_platform.errors import PlatformError
    from ingest_platform.index import IndexError_
    from ingest_platform.query import QueryError, Retriever
    from ingest_platform.rewrite import GlossaryError

    settings = _settings(args)
    filters: dict[str, list[str]] = {}
    for f in args.filter:
        col, sep, val = f.partition("=")
        if not sep:
            print(f"--filter needs COLUMN=VALUE, got {f!r}", file=sys.stderr)
            return EXIT_USAGE
        filters.setdefault(col, []).append(val)
    ref = int(args.ref) if args.ref.isdigit() else args.ref
    groups = args.groups.split(",") if args.groups else None
    try:
        retriever = Retriever(settings=settings, ref=ref, operator=args.operator)
        if args.context is not None:
            ctx = retriever.context(args.text, args.context, k=20 if args.k is None else args.k, mode=args.mode,
                                    filters=filters or None, groups=groups)
            _print(args, ctx.to_json(), ctx.text or "no results")
            return EXIT_OK
        result = retriever.search(args.text, 5 if args.k is None else args.k, mode=args.mode, filters=filters or None,
                                  groups=groups, collapse_duplicates=False if args.all_duplicates else None,
                                  include_superseded=True if args.include_superseded else None)
    except (IndexError_, QueryError, GlossaryError, PlatformError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    payload = result.to_json()
    human = [f"index version {result.index_version} ({result.mode}, {result.timings_ms.get('total', 0):.0f} ms)"
             + (f"  trace {result.trace_id}" if result.trace_id else "")]
    for i, h in enumerate(result.hits, 1):
        where = h.citation.heading_path or h.citation.title or ""
        page = f" p.{h.citation.page}" if h.citation.page else ""
        risk = f" RISK: {', '.join(h.risk_flags)}" if h.risk_flags else ""
        text = "\n".join(f"   {line}" for line in h.text[:300].splitlines())  # a table's rows stay under their hit
        human.append(f"{i}. [{h.score:.4f}] {h.doc_id}{page} — {where}{risk}\n{text}")
    if not result.hits:
        human.append("no results")
    _print(args, payload, "\n".join(human))
    return EXIT_OK


def cmd_feedback(args) -> int:
    from ingest_platform.feedback import FeedbackError
    from ingest_platform.query import Retriever

    retriever = Retriever(settings=_settings(args), trace=False)
    try:
        item = retriever.feedback(args.trace_id, doc_id=args.doc, relevant=args.relevant == "yes",
                                  note=args.note, judge=args.judge)
    except FeedbackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _print(args, item.to_json(), f"recorded: {item.doc_id} is {'relevant' if item.relevant else 'not relevant'} "
                                 f"to {item.query!r} (judge {item.judge}, {item.at})")
    return EXIT_OK


def cmd_review(args) -> int:
    from ingest_platform.reporting import md_table
    from ingest_platform.review import review_queue

    if args.n is not None and args.n < 1:
        print(f"error: --n must be at least 1 (got {args.n})", file=sys.stderr)
        return EXIT_USAGE
    queue = review_queue(_settings(args), n=args.n, days=args.days)
    rows = [{"stratum": i.stratum, "query": i.query[:80], "asked": i.asked, "hits": i.hits,
             "top_similarity": i.top_similarity, "ms": i.latency_ms, "trace_id": i.trace_id} for i in queue.items]
    human = (f"{queue.queries} queries ({queue.distinct} distinct) from {queue.start[:16]} to {queue.end[:16]}; "
             f"by stratum: {queue.strata}\n" + (md_table(rows) if rows else "no traced queries in this window"))
    _print(args, queue.to_json(), human)
    return EXIT_OK


def cmd_golden(args) -> int:
    from ingest_platform.evaluation import GoldenSetError
    from ingest_platform.index import IndexError_

    settings = _settings(args)
    try:
        if args.golden_command == "add-feedback":
            from ingest_platform.golden import add_feedback

            r = add_feedback(settings, args.out)
            human = (f"{r.path}: {r.added} added, {r.updated} updated, {r.unchanged} unchanged, {r.entries} entries"
                     + "".join(f"\n  skipped {s['query']!r}: {s['reason']}" for s in r.skipped))
        else:
            from ingest_platform.golden_bootstrap import bootstrap

            if args.n < 1:
                print(f"error: --n must be at least 1 (got {args.n})", file=sys.stderr)
                return EXIT_USAGE
            r = bootstrap(settings, args.out, args.n, ref=int(args.ref) if args.ref.isdigit() else args.ref)
            human = (f"{r.path}: {r.entries} synthetic entries covering {r.covered} of {r.documents} documents "
                     f"(index version {r.index_version}); skipped: {r.skipped or 'none'}\n"
                     f"gate on it with [eval] golden_file = \"{r.path}\"")
    except (GoldenSetError, IndexError_) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _print(args, r.to_json(), human)
    return EXIT_OK


def cmd_eval(args) -> int:
    from ingest_platform import evaluation
    from ingest_platform.index import IndexError_
    from ingest_platform.reporting import md_table

    settings = _settings(args)
    golden = args.golden or settings.eval.golden_file
    if not golden:
        print("no golden set: pass --golden FILE or set [eval] golden_file", file=sys.stderr)
        return EXIT_USAGE
    ref = int(args.ref) if args.ref.isdigit() else args.ref
    try:
        payload = evaluation.cli_payload(settings, golden=golden, ref=ref)
    except (IndexError_, evaluation.GoldenSetError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    rows = [{"metric": payload["labels"][m], "candidate": v,
             "production": (payload["production"] or {}).get("metrics", {}).get(m)}
            for m, v in payload["metrics"].items()]
    verdict = payload["verdict"]
    human = (f"version {payload['version']} on {payload['queries']} queries ({payload['golden_file']})\n"
             + md_table(rows) + f"\n\ngate: {'passed' if verdict['passed'] else 'FAILED'}"
             + "".join(f"\n- {r}" for r in verdict.get("reasons", [])))
    _print(args, payload, human)
    return EXIT_OK if verdict["passed"] else EXIT_BLOCKED


def cmd_ui(args) -> int:
    """``dagster dev`` with a persistent DAGSTER_HOME under the state directory. The code location
    gets the same home (``INGEST_PLATFORM_HOME``), so the UI's run history, the sensor and every run
    launched from the UI all use the one state directory the user named."""
    import signal
    import subprocess
    import threading

    settings = _settings(args)
    root = Path(__file__).resolve().parent.parent
    from ingest_platform import state

    home = Path(settings.home).resolve() if state.is_local(settings.home) else settings.home
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(state.dagster_home(home))
    env["INGEST_PLATFORM_HOME"] = str(home)
    if args.config:
        env["INGEST_PLATFORM_CONFIG"] = str(Path(args.config).resolve())
    from definitions import instance_for  # writes dagster.yaml on first use

    instance_for(home, settings)
    dagster = Path(sys.executable).with_name("dagster")
    cmd = [str(dagster), "dev", "-w", str(root / "workspace.yaml"), "-h", args.host, "-p", str(args.port)]
    print(f"Dagster UI on http://{args.host}:{args.port} (home {home}, DAGSTER_HOME={env['DAGSTER_HOME']})",
          file=sys.stderr)
    # Its own process group: whatever dagster dev started (webserver, daemon, code server, run
    # workers) is stopped with it, even when a code server outlives dagster dev's own shutdown.
    proc = subprocess.Popen(cmd, env=env, cwd=root, process_group=0)
    stopping = threading.Event()

    def forward(signum, _frame):  # Ctrl-C or a SIGTERM to this process: dagster dev shuts down first
        proc.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        while proc.poll() is None:
            if stopping.wait(0.5):
                # dagster dev waits for its code server, which can wait for a run in progress:
                # give it UI_STOP_GRACE_S, then stop what is left of the group ourselves.
                try:
                    return proc.wait(timeout=UI_STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    return 128 + signal.SIGTERM
        return proc.returncode
    finally:
        _stop_group(proc.pid, grace_s=10.0)


UI_STOP_GRACE_S = 20.0


def _stop_group(pgid: int, grace_s: float = 15.0) -> None:
    """SIGTERM what is left of the process group ``pgid``, then SIGKILL it after ``grace_s``."""
    import signal
    import time

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def cmd_promote(args) -> int:
    from ingest_platform import promotion
    from ingest_platform.errors import PromotionRefused
    from ingest_platform.index import IndexError_

    settings = _settings(args)
    if args.force and args.reason == "manual promotion":
        print("--force needs --reason TEXT: the reason is recorded in the promotion history", file=sys.stderr)
        return EXIT_USAGE
    try:
        event = promotion.promote(settings, int(args.ref) if args.ref.isdigit() else args.ref, why=args.reason,
                                  force_reason=args.reason if args.force else None,
                                  confirm_deletions=args.confirm_deletions)
    except PromotionRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_BLOCKED
    except IndexError_ as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _print(args, event.__dict__, f"production: {event.from_version} -> {event.to_version} ({event.why})")
    return EXIT_OK


def cmd_rollback(args) -> int:
    from ingest_platform import promotion
    from ingest_platform.index import IndexError_

    try:
        event = promotion.rollback(_settings(args), why=args.reason, wait_s=args.wait)
    except IndexError_ as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _print(args, event.__dict__, f"production: {event.from_version} -> {event.to_version} ({event.why})")
    return EXIT_OK


def cmd_maintain(args) -> int:
    from ingest_platform.maintenance import maintain

    report = maintain(_settings(args))
    d = report.to_dict()
    human = (f"freed {d['bytes_freed'] / 2**20:.1f} MiB ({d['bytes_before'] / 2**20:.1f} -> {d['bytes_after'] / 2**20:.1f}): "
             f"{d['index_versions_removed']} index versions, rollback tags {d['rollback_tags_removed'] or 'none'}, "
             f"cache rows {d['cache_rows_dropped']}, {d['version_records_removed']} version records, "
             f"{d['trace_files_removed']} trace files")
    _print(args, d, human)
    return EXIT_OK


COMMANDS = {"maintain": cmd_maintain, "run": cmd_run, "status": cmd_status, "query": cmd_query, "feedback": cmd_feedback, "review": cmd_review,
            "golden": cmd_golden, "eval": cmd_eval, "ui": cmd_ui,
            "promote": cmd_promote, "rollback": cmd_rollback}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=os.environ.get("INGEST_PLATFORM_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The top-level Dagster modules (definitions, assets, ...) live beside the config file.
    root = Path(args.config).resolve().parent if getattr(args, "config", None) else Path.cwd()
    for candidate in (root, Path(__file__).resolve().parent.parent):
        if (candidate / "definitions.py").exists() and str(candidate) not in sys.path:
            sys.path.insert(0, str(candidate))
    from ingest_platform.errors import HomeLocked, PlatformError
    from ingest_platform.evaluation import GoldenSetError

    try:
        return COMMANDS[args.command](args)
    except HomeLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except (PlatformError, GoldenSetError) as exc:  # bad config or input: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
