"""``ingest-platform``: run the pipeline headlessly through Dagster, inspect it, query, promote.

Exit codes: 0 done; 1 the command could not complete (an error, said on stderr); 2 bad usage or
nothing to act on (e.g. querying before any index exists); 3 ``run`` completed but a blocking check
failed, so the new index was not promoted (or ``eval``: the candidate fails the eval gate).

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

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BLOCKED = 0, 1, 2, 3


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

    p = sub.add_parser("status", help="documents by status and the failures with reasons")
    _common(p)

    p = sub.add_parser("query", help="search the production index")
    _common(p)
    p.add_argument("text")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--mode", choices=["hybrid", "vector", "keyword"], default="hybrid")
    p.add_argument("--groups", default=None, help="caller's access groups, comma-separated (default: public)")
    p.add_argument("--version", dest="ref", default="production", help="tag or version number to read")
    p.add_argument("--filter", action="append", default=[], metavar="COLUMN=VALUE",
                   help="metadata filter, e.g. format=pdf (repeatable)")

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
    p.add_argument("--force", action="store_true", help="promote even without passing recorded checks")

    p = sub.add_parser("rollback", help="move the production tag back to the previous production version")
    _common(p)
    p.add_argument("--reason", default="manual rollback")
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
        overrides["sources"] = args.source
    if args.default_groups is not None:
        overrides["default_access_groups"] = [g for g in args.default_groups.split(",") if g]
    result = execute_run(config_file=args.config, home=str(settings.home), overrides=overrides or None)
    summary = _run_summary(result, settings)
    code = EXIT_OK if result.success else (EXIT_BLOCKED if summary["blocked_by"] else EXIT_ERROR)
    summary["exit_code"] = code
    lines = [
        f"run {summary['run_id']}: {'succeeded' if result.success else 'did not complete'}",
        f"documents: {summary['documents']['total']} {summary['documents']['by_status']}",
    ]
    lines += [f"  failed: {f['doc_id']}: {f['reason']}" for f in summary["failures"][:20]]
    for step, meta in summary["assets"].items():
        shown = {k: v for k, v in meta.items() if not isinstance(v, str) or len(v) < 60}
        lines.append(f"{step}: {shown}")
    if summary["invisible_chunks"]:
        lines.append(f"note: {summary['invisible_chunks']} chunks have no access groups and are visible to "
                     "nobody (default deny); grant groups with access_groups / access_rules / sidecars or "
                     "--default-groups")
    if summary["blocked_by"]:
        lines.append(f"NOT PROMOTED: blocking checks failed: {', '.join(summary['blocked_by'])}")
    lines.append(f"production version: {summary['production_version']}")
    _print(args, summary, "\n".join(lines))
    return code


def _metadata_value(v: Any) -> Any:
    return getattr(v, "value", v)


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
    checks, blocked = {}, []
    for event in result.get_asset_check_evaluations():
        checks[event.check_name] = {"passed": event.passed,
                                    **{k: _metadata_value(v) for k, v in event.metadata.items()}}
        if not event.passed:
            blocked.append(event.check_name)
    docs = mf.summarize(mf.load_manifest(settings.state))
    tags = index_store(settings).tags()
    enriched = load_enriched(settings)
    invisible = sum(1 for g in enriched["access_groups"].to_pylist() if not g)
    return {
        "invisible_chunks": invisible,
        "run_id": result.run_id, "success": result.success,
        "documents": {"total": docs["total"], "by_status": docs["by_status"]},
        "failures": docs["failures"], "assets": assets, "checks": checks, "blocked_by": blocked,
        "candidate_version": tags.get("candidate"), "production_version": tags.get("production"),
        "promoted": "production_index" in assets and bool(assets["production_index"].get("promoted")),
    }


def cmd_status(args) -> int:
    from ingest_platform import manifest as mf
    from ingest_platform.pipeline import index_store

    settings = _settings(args)
    docs = mf.summarize(mf.load_manifest(settings.state))
    store = index_store(settings)
    payload = {
        "home": str(settings.home),
        "documents": {"total": docs["total"], "by_status": docs["by_status"]},
        "failures": docs["failures"],
        "index": {"tags": store.tags(), "history": [e.__dict__ for e in store.history()[-10:]]},
    }
    human = [f"documents: {docs['total']}  " + "  ".join(f"{k}={v}" for k, v in docs["by_status"].items())]
    human += [f"  failed: {f['doc_id']}: {f['reason']}" for f in docs["failures"]]
    human.append(f"index tags: {payload['index']['tags'] or 'none (run `ingest-platform run`)'}")
    _print(args, payload, "\n".join(human))
    return EXIT_OK


def cmd_query(args) -> int:
    from ingest_platform.index import IndexError_
    from ingest_platform.query import QueryError, Retriever

    settings = _settings(args)
    filters: dict[str, list[str]] = {}
    for f in args.filter:
        col, sep, val = f.partition("=")
        if not sep:
            print(f"--filter needs COLUMN=VALUE, got {f!r}", file=sys.stderr)
            return EXIT_USAGE
        filters.setdefault(col, []).append(val)
    ref = int(args.ref) if args.ref.isdigit() else args.ref
    try:
        retriever = Retriever(settings=settings, ref=ref)
        result = retriever.search(args.text, args.k, mode=args.mode, filters=filters or None,
                                  groups=args.groups.split(",") if args.groups else None)
    except (IndexError_, QueryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    payload = result.to_json()
    human = [f"index version {result.index_version} ({result.mode}, {result.timings_ms.get('total', 0):.0f} ms)"]
    for i, h in enumerate(result.hits, 1):
        where = h.citation.heading_path or h.citation.title or ""
        page = f" p.{h.citation.page}" if h.citation.page else ""
        human.append(f"{i}. [{h.score:.4f}] {h.doc_id}{page} — {where}\n   {h.text[:300]}")
    if not result.hits:
        human.append("no results")
    _print(args, payload, "\n".join(human))
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
    """``dagster dev`` with a persistent DAGSTER_HOME under the state directory."""
    import subprocess

    settings = _settings(args)
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(Path(settings.home).resolve() / "dagster")
    if args.config:
        env["INGEST_PLATFORM_CONFIG"] = str(Path(args.config).resolve())
    from definitions import instance_for  # writes dagster.yaml on first use

    instance_for(settings.home)
    dagster = Path(sys.executable).with_name("dagster")
    cmd = [str(dagster), "dev", "-w", str(root / "workspace.yaml"), "-h", args.host, "-p", str(args.port)]
    print(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={env['DAGSTER_HOME']})", file=sys.stderr)
    return subprocess.call(cmd, env=env, cwd=root)


def cmd_promote(args) -> int:
    from ingest_platform import gates
    from ingest_platform.index import IndexError_
    from ingest_platform.pipeline import index_store

    settings = _settings(args)
    store = index_store(settings)
    try:
        version = store.version_of(int(args.ref) if args.ref.isdigit() else args.ref)
        if not args.force:
            gates.require_passed(settings.state, version)
        event = store.promote(version, why=args.reason)
    except (IndexError_, gates.GateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _print(args, event.__dict__, f"production: {event.from_version} -> {event.to_version}")
    return EXIT_OK


def cmd_rollback(args) -> int:
    from ingest_platform.index import IndexError_
    from ingest_platform.pipeline import index_store

    store = index_store(_settings(args))
    try:
        event = store.rollback(why=args.reason)
    except IndexError_ as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _print(args, event.__dict__, f"production: {event.from_version} -> {event.to_version}")
    return EXIT_OK


COMMANDS = {"run": cmd_run, "status": cmd_status, "query": cmd_query, "eval": cmd_eval, "ui": cmd_ui,
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
    try:
        return COMMANDS[args.command](args)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
