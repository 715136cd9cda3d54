"""Fusion and aggregation chosen by cross-validation on a BEIR train split, then checked on test.

    python -m benchmarks.fusion_cv [DATASET_DIR] [--folds 5] [--out FILE.json] [--work DIR]
                                   [--limit-queries N]

Why: a default tuned on one split of one corpus does not carry to the next (z-score fusion at
0.6 / 0.4, picked as the best grid point on SciFact train, lost to plain whole-document RRF on a
held-out biomedical corpus). So every family the query function can run (``ingest_platform.query.
fuse``: reciprocal rank fusion, min-max convex combination, z-score; chunk-level or
document-level aggregation) is scored the same way:

1. **Cross-validation on train.** The judged train queries are split into ``--folds`` folds; for
   each fold, the family's parameters (weights, candidate depth, RRF's k) are chosen on the other
   folds and scored on it. A family's CV score is the mean over all train queries of those
   held-out scores, so a family with a bigger grid gains nothing from having more chances.
2. **Noise.** Families are compared by the paired per-query difference of their CV scores, with
   its standard error (SE). A family less than two SE behind the best (the 95% level) is as good
   as the data can tell; of those the simplest ships (the fewest moving parts: chunk lists before
   document aggregation, no extra index), and within it the most neutral grid point less than two
   SE from its best (equal weights, the smallest depth, RRF's customary k = 60).
3. **Sensitivity.** For each family, the train score of every grid point: how much a parameter
   matters, and how flat the optimum is.
4. **Test, once.** The chosen default, the previous one and the references (plain RRF of the
   chunk lists, the naive whole-document RRF script of ``benchmarks.naive``, BM25 over whole
   documents) are scored on the test split, which took no part in any choice.

Candidate lists come from the index the BEIR benchmark builds (``benchmarks.beir.build``) and the
same LanceDB calls the query function makes (``benchmarks.tune.collect``, cached), so re-scoring is
offline and every variant runs the shipped ``fuse``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks import tune
from benchmarks.beir import build, ndcg_at, recall_at, mrr_at
from benchmarks.common import (REPO, RESULTS, SCIFACT, WORK, load_qrels, load_queries, machine, print_table,
                               read_jsonl, source_name, write_json)
from benchmarks.naive import record_text

DEPTHS = (50, 100, 200)
VECTOR_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)
RRF_KS = (10, 30, 60, 100)
NOISE_SE = 2.0  # differences smaller than this many standard errors are noise (95% level)


@dataclass(frozen=True)
class Family:
    """One way of fusing: a ``fuse`` method and aggregate, its grid, and its simplicity rank."""

    name: str
    method: str
    aggregate: str
    simplicity: int  # lower is simpler (fewer or more neutral parameters)
    keyword: str = "chunks"  # "chunks" (the index) or "documents" (BM25 over whole documents)

    def grid(self) -> list[dict]:
        ks = RRF_KS if self.method == "rrf" else (60,)
        return [{"depth": d, "vector_weight": w, "rrf_k": k}
                for d, w, k in itertools.product(DEPTHS, VECTOR_WEIGHTS, ks)]


FAMILIES = [
    Family("rrf / chunk", "rrf", "chunk", 0),
    Family("rrf / document", "rrf", "document", 1),
    Family("zscore / chunk", "zscore", "chunk", 2),
    Family("zscore / document", "zscore", "document", 3),
    Family("minmax / chunk", "minmax", "chunk", 4),
    Family("minmax / document", "minmax", "document", 5),
    Family("zscore / document, BM25 over whole documents", "zscore", "document", 6, keyword="documents"),
]


def ranking(lists: dict, family: Family, params: dict, prefix: str, doc_keyword: list[dict] | None = None) -> list[str]:
    """Documents in the order of their best hit under ``fuse`` (the shipped code)."""
    from ingest_platform.query import fuse

    depth = params["depth"]
    keyword = doc_keyword if family.keyword == "documents" else lists["keyword"]
    ranked = {"vector": [tune._row(r) for r in lists["vector"][:depth]],
              "keyword": [tune._row(r) for r in (keyword or [])[:depth]]}
    w = params["vector_weight"]
    hits = fuse(ranked, {"vector": w, "keyword": 1.0 - w}, params["rrf_k"], 1000, method=family.method,
                aggregate=family.aggregate)
    return tune.docs_of([{"doc_id": h.doc_id} for h in hits], prefix)


def per_query(run: dict[str, list[str]], qrels: dict, qids: list[str]) -> dict[str, float]:
    return {q: ndcg_at(run.get(q, []), qrels[q]) for q in qids}


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else 0.0


def paired(a: dict[str, float], b: dict[str, float]) -> tuple[float, float]:
    """Mean of a - b over the shared queries, and its standard error."""
    diffs = [a[q] - b[q] for q in a]
    m = mean(diffs)
    sd = math.sqrt(sum((d - m) ** 2 for d in diffs) / max(1, len(diffs) - 1))
    return m, sd / math.sqrt(max(1, len(diffs)))


def simplest_best(grid_scores: list[tuple[dict, float]], se: float) -> dict:
    """Of the grid points less than ``se`` below the best, the most neutral: equal weights first,
    then the smallest depth, then RRF's customary k = 60."""
    best = max(s for _, s in grid_scores)
    near = [p for p, s in grid_scores if s > best - se or s == best]
    return min(near, key=lambda p: (abs(p["vector_weight"] - 0.5), p["depth"], abs(p["rrf_k"] - 60)))


def cross_validate(family: Family, scores: dict[str, dict[str, float]], qids: list[str], folds: int,
                   seed: int = 13) -> tuple[dict[str, float], list[dict]]:
    """Held-out per-query nDCG@10 of ``family`` (parameters chosen on the other folds)."""
    order = list(qids)
    random.Random(seed).shuffle(order)
    fold_of = {q: i % folds for i, q in enumerate(order)}
    held: dict[str, float] = {}
    chosen = []
    for f in range(folds):
        train = [q for q in qids if fold_of[q] != f]
        keys = list(scores)
        best = max(keys, key=lambda key: (mean(scores[key][q] for q in train), -keys.index(key)))
        chosen.append(_params(best))
        for q in qids:
            if fold_of[q] == f:
                held[q] = scores[best][q]
    return held, chosen


def _key(params: dict) -> str:
    return f"depth={params['depth']} wv={params['vector_weight']} k={params['rrf_k']}"


def _params(key: str) -> dict:
    parts = dict(p.split("=") for p in key.split())
    return {"depth": int(parts["depth"]), "vector_weight": float(parts["wv"]), "rrf_k": int(parts["k"])}


def doc_bm25(settings, corpus: Path, prefix: str, texts: dict[str, str], work: Path, depth: int) -> dict[str, list[dict]]:
    """BM25 over whole documents (title and text), with the index's own full-text options."""
    import lancedb
    import pyarrow as pa

    from benchmarks.ablations import FTS_OPTIONS
    from ingest_platform.query import keyword_query

    docs = list(read_jsonl(corpus))
    db = lancedb.connect(str(work / "fusion-cv-lancedb"))
    table = db.create_table("wholedoc", pa.table({
        "chunk_id": [str(d["_id"]) for d in docs], "doc_id": [prefix + str(d["_id"]) for d in docs],
        "text": [record_text(d) for d in docs]}), mode="overwrite")
    table.create_fts_index("text", **FTS_OPTIONS)
    out = {}
    for qid, text in texts.items():
        try:
            out[qid] = (table.search(keyword_query(text), query_type="fts").select(["chunk_id", "doc_id", "_score"])
                        .limit(depth).to_arrow().to_pylist())
        except ValueError:
            out[qid] = []
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fusion_cv", description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, nargs="?", default=SCIFACT)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--work", type=Path, help="work folder (default benchmarks/.work/beir-<dataset>, shared "
                                              "with benchmarks.beir)")
    ap.add_argument("--out", type=Path, default=RESULTS / "fusion-cv.json")
    ap.add_argument("--limit-queries", type=int, help="use only the first N judged queries of each split")
    ap.add_argument("--no-naive", action="store_true", help="skip the whole-document naive baseline "
                                                            "(it embeds every document once)")
    args = ap.parse_args(argv)

    from ingest_platform.query import _clean_query

    dataset = args.dataset.resolve()
    name = source_name(dataset)
    prefix = f"{name}:"
    work = (args.work or WORK / f"beir-{name}").resolve()
    settings, _, _ = build(dataset, work, name)
    queries = load_queries(dataset)
    depth = max(DEPTHS)
    split_data = {}
    for split in ("train", "test"):
        qrels = {q: r for q, r in load_qrels(dataset, split).items() if q in queries and any(v > 0 for v in r.values())}
        qids = list(qrels)[: args.limit_queries]
        texts = {q: _clean_query(queries[q], settings.query.max_query_chars) for q in qids}
        lists = tune.collect(settings, {q: queries[q] for q in qrels}, depth, work / f"tune-lists-{split}-{depth}.pkl")
        whole = doc_bm25(settings, dataset / "corpus.jsonl", prefix, texts, work, depth)
        split_data[split] = (qids, qrels, lists, whole, texts)

    # ---- every grid point of every family, per query, on both splits ----
    # (train only: the test split takes part in no choice)
    scores: dict[str, dict[str, dict[str, dict[str, float]]]] = {"train": {}}  # family -> key -> q -> ndcg
    qids, qrels, lists, whole, _ = split_data["train"]
    for fam in FAMILIES:
        scores["train"][fam.name] = {
            _key(p): per_query({q: ranking(lists[q], fam, p, prefix, whole[q]) for q in qids}, qrels, qids)
            for p in fam.grid()}
        print(f"scored {fam.name} on train ({len(qids)} queries, {len(fam.grid())} grid points)", flush=True)

    train_qids = split_data["train"][0]
    cv = {}
    for fam in FAMILIES:
        held, chosen = cross_validate(fam, scores["train"][fam.name], train_qids, args.folds)
        cv[fam.name] = {"held_out": held, "chosen_per_fold": chosen, "cv_ndcg@10": mean(held.values())}
    best = max(FAMILIES, key=lambda f: cv[f.name]["cv_ndcg@10"])
    comparisons = {}
    for fam in FAMILIES:
        d, se = paired(cv[fam.name]["held_out"], cv[best.name]["held_out"])
        comparisons[fam.name] = {"delta_vs_best": d, "se": se}
    tied = [f for f in FAMILIES if comparisons[f.name]["delta_vs_best"] > -NOISE_SE * comparisons[f.name]["se"]
            or f is best]
    chosen_family = min(tied, key=lambda f: f.simplicity)
    # Its parameters: on all of train, the most neutral grid point within one standard error of the best.
    fam_scores = scores["train"][chosen_family.name]
    grid_means = [(_params(k), mean(v.values())) for k, v in fam_scores.items()]
    top_key = max(fam_scores, key=lambda k: mean(fam_scores[k].values()))
    spread = []
    for k, v in fam_scores.items():
        spread.append(paired(v, fam_scores[top_key])[1])
    se = max(spread) if spread else 0.0
    chosen_params = simplest_best(grid_means, NOISE_SE * se)

    # ---- sensitivity: the train score across each family's grid ----
    sensitivity = {}
    for fam in FAMILIES:
        grid = [(_params(k), mean(v.values())) for k, v in scores["train"][fam.name].items()]
        per_param = {}
        for param in ("depth", "vector_weight", "rrf_k"):
            values = sorted({p[param] for p, _ in grid})
            if len(values) > 1:
                per_param[param] = {str(v): round(mean(s for p, s in grid if p[param] == v), 4) for v in values}
        sensitivity[fam.name] = {"min": round(min(s for _, s in grid), 4), "max": round(max(s for _, s in grid), 4),
                                 "mean_over_the_other_parameters": per_param}

    # ---- test, once ----
    test_qids, test_qrels, test_lists, test_whole, test_texts = split_data["test"]
    q = settings.query
    previous = Family("previous default: zscore / chunk 0.6/0.4, depth 200", "zscore", "chunk", 99)

    def test_run(fam: Family, params: dict) -> dict[str, list[str]]:
        return {qq: ranking(test_lists[qq], fam, params, prefix, test_whole[qq]) for qq in test_qids}

    def metrics(run) -> dict:
        n = len(test_qids)
        return {"ndcg@10": sum(ndcg_at(run.get(x, []), test_qrels[x]) for x in test_qids) / n,
                "recall@100": sum(recall_at(run.get(x, []), test_qrels[x]) for x in test_qids) / n,
                "mrr@10": sum(mrr_at(run.get(x, []), test_qrels[x]) for x in test_qids) / n}

    test_rows = {
        f"chosen: {chosen_family.name} {_key(chosen_params)}": metrics(test_run(chosen_family, chosen_params)),
        previous.name: metrics(test_run(previous, {"depth": 200, "vector_weight": 0.6, "rrf_k": 60})),
        "plain RRF of the chunk lists (k=60, equal weights, depth 200)": metrics(
            test_run(FAMILIES[0], {"depth": 200, "vector_weight": 0.5, "rrf_k": 60})),
        "vector only": metrics({x: tune.docs_of(test_lists[x]["vector"], prefix) for x in test_qids}),
        "keyword only (BM25 over chunks)": metrics({x: tune.docs_of(test_lists[x]["keyword"], prefix) for x in test_qids}),
    }
    naive = None
    if not args.no_naive:
        from benchmarks.naive import NaiveIndex

        docs = list(read_jsonl(dataset / "corpus.jsonl"))
        index = NaiveIndex([str(d["_id"]) for d in docs], [record_text(d) for d in docs], work / "naive")
        runs = index.runs(test_texts)
        naive = {mode: metrics(run) for mode, run in runs.items()}
        test_rows["naive whole-document RRF script (k=60)"] = naive["hybrid"]

    print_table(["family", "CV nDCG@10 (train)", "vs best", "SE", "train grid min..max"],
                [[f.name, cv[f.name]["cv_ndcg@10"], f"{comparisons[f.name]['delta_vs_best']:+.4f}",
                  comparisons[f.name]["se"], f"{sensitivity[f.name]['min']:.4f}..{sensitivity[f.name]['max']:.4f}"]
                 for f in FAMILIES],
                title=f"{args.folds}-fold cross-validation on {name} train ({len(train_qids)} queries)")
    print(f"\nchosen: {chosen_family.name} ({_key(chosen_params)}): the simplest family less than {NOISE_SE:g} SE "
          f"behind the best ({best.name}); parameters the most neutral less than {NOISE_SE:g} SE from the family's best")
    print_table(["system", "nDCG@10", "recall@100", "MRR@10"],
                [[k, v["ndcg@10"], v["recall@100"], v["mrr@10"]] for k, v in test_rows.items()],
                title=f"{name} test ({len(test_qids)} queries), scored once")
    out = {
        "dataset": name, "folds": args.folds, "train_queries": len(train_qids), "test_queries": len(test_qids),
        "index_settings": {"chunking": settings.chunking.model_dump()},
        "cross_validation": {f.name: {"cv_ndcg@10": round(cv[f.name]["cv_ndcg@10"], 4),
                                      "delta_vs_best": round(comparisons[f.name]["delta_vs_best"], 4),
                                      "se": round(comparisons[f.name]["se"], 4),
                                      "chosen_per_fold": cv[f.name]["chosen_per_fold"]} for f in FAMILIES},
        "best_family": best.name, "chosen": {"family": chosen_family.name, "method": chosen_family.method,
                                             "aggregate": chosen_family.aggregate, **chosen_params,
                                             "grid_se": round(se, 4)},
        "sensitivity": sensitivity, "test": test_rows, "naive_test": naive,
        "shipped_query_settings": {k: getattr(q, k) for k in ("fusion", "aggregate", "vector_weight",
                                                              "keyword_weight", "candidates", "rrf_k")},
        "machine": machine(),
    }
    write_json(args.out, out)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
