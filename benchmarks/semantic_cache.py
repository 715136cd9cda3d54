"""The semantic cache on SciFact: how often it answers, and what its answers cost in quality.

    python -m benchmarks.semantic_cache [--thresholds 0.98,0.95,0.92] [--out FILE.json]

Two measurements per cosine threshold, each with a fresh ``Retriever`` (hybrid, k=10, the query
encoder of ``[query] encoder``), on the SciFact index the BEIR benchmark builds:

* paraphrases (the hits we want): the cache is filled with the 300 test queries, then each is
  asked again in a rephrased form (lower-cased without punctuation; "Is it true that ...?";
  "<claim> - what does the evidence say"; its content words only). Reported: hit rate, and the
  nDCG@10 of what was answered against the nDCG@10 a fresh search for the rephrased query gets.
* other questions (the hits we do not want): the cache is filled with the 809 train queries, then
  the 300 test queries are asked. SciFact's claims are distinct questions, so every hit answers a
  different question; reported: the hit rate and the nDCG@10 lost on those hits.

No paraphrase model is available offline, so the rephrasings are rule-made; real users rephrase
more freely, so the paraphrase hit rate here is an upper bound at a given threshold.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, SCIFACT, WORK, load_qrels, load_queries, machine, print_table, write_json

REPHRASE = {
    "lower, no punctuation": lambda q: re.sub(r"[^\w\s-]", "", q).lower(),
    "is it true that": lambda q: f"Is it true that {q[0].lower() + q[1:].rstrip('.')}?",
    "what does the evidence say": lambda q: f"{q.rstrip('.')} - what does the evidence say",
    "content words only": lambda q: " ".join(w for w in re.findall(r"[\w-]+", q)
                                             if w.lower() not in {"the", "a", "an", "of", "in", "is", "are", "to",
                                                                  "and", "with", "for", "by", "on", "that"}),
}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.semantic_cache", description=__doc__.split("\n\n")[0])
    ap.add_argument("--thresholds", default="0.98,0.95,0.92")
    ap.add_argument("--encoder", default="onnx", choices=["torch", "onnx"])
    ap.add_argument("--dataset", type=Path, default=SCIFACT, help="BEIR folder with test and train qrels")
    ap.add_argument("--home", type=Path, help="work folder of its index (default: the BEIR benchmark's)")
    ap.add_argument("--out", type=Path, default=RESULTS / "semantic_cache.json")
    args = ap.parse_args(argv)

    from benchmarks.beir import build, ndcg_at
    from ingest_platform.query import Retriever

    from benchmarks.common import source_name

    dataset = args.dataset.resolve()
    name = source_name(dataset)
    settings, _, _ = build(dataset, (args.home or WORK / f"beir-{name}").resolve(), name)
    queries = load_queries(dataset)
    test, train = load_qrels(dataset, "test"), load_qrels(dataset, "train")
    test_ids = [q for q in test if q in queries]
    train_ids = [q for q in train if q in queries]

    def retriever(threshold: float | None) -> Retriever:
        q = settings.query.model_copy(update={"encoder": args.encoder, "semantic_cache_threshold": threshold})
        r = Retriever(settings=settings.model_copy(update={"query": q}), trace=False, cache_size=4096)
        # Latency is not measured here: every distinct text is embedded once for all thresholds.
        r._encoder(r._pin()).memo_size = 20_000
        return r

    prefix = f"{name}:"

    def docs(result) -> list[str]:
        return list(dict.fromkeys(h.doc_id.removeprefix(prefix) for h in result.hits))

    fresh = retriever(None)
    started = time.perf_counter()
    # Fresh answers of every question asked below (the quality a cache hit is compared with).
    base = {qid: ndcg_at(docs(fresh.search(queries[qid], 10)), test[qid]) for qid in test_ids}
    para_base = {(how, qid): ndcg_at(docs(fresh.search(fn(queries[qid]), 10)), test[qid])
                 for how, fn in REPHRASE.items() for qid in test_ids}
    result: dict = {"encoder": args.encoder, "machine": machine(), "thresholds": {}}
    rows = []
    for threshold in [float(t) for t in args.thresholds.split(",")]:
        r = retriever(threshold)
        for qid in test_ids:
            r.search(queries[qid], 10)
        para: dict[str, dict] = {}
        for how, fn in REPHRASE.items():
            hits, cached_ndcg, fresh_ndcg = 0, [], []
            for qid in test_ids:
                answer = r.search(fn(queries[qid]), 10)
                cached_ndcg.append(ndcg_at(docs(answer), test[qid]))
                fresh_ndcg.append(para_base[(how, qid)])
                hits += answer.cached
            para[how] = {"hit_rate": hits / len(test_ids), "ndcg@10": statistics.fmean(cached_ndcg),
                          "ndcg@10_fresh": statistics.fmean(fresh_ndcg)}
        other = retriever(threshold)
        for qid in train_ids:
            other.search(queries[qid], 10)
        wrong, lost = 0, []
        for qid in test_ids:
            answer = other.search(queries[qid], 10)
            if answer.cached:
                wrong += 1
                lost.append(base[qid] - ndcg_at(docs(answer), test[qid]))
        result["thresholds"][threshold] = {
            "paraphrases": para,
            "other_questions": {"hit_rate": wrong / len(test_ids), "hits": wrong,
                                "ndcg@10_lost_per_hit": statistics.fmean(lost) if lost else 0.0,
                                "ndcg@10_lost_overall": sum(lost) / len(test_ids)},
        }
        p_hit = statistics.fmean(v["hit_rate"] for v in para.values())
        p_cost = statistics.fmean(v["ndcg@10_fresh"] - v["ndcg@10"] for v in para.values())
        rows.append([threshold, p_hit, p_cost, wrong / len(test_ids),
                     result["thresholds"][threshold]["other_questions"]["ndcg@10_lost_overall"]])
    print_table(["threshold", "paraphrase hit rate", "paraphrase nDCG@10 cost", "other-question hit rate",
                 "nDCG@10 lost (all test queries)"], rows,
                title=f"semantic cache on SciFact test ({len(test_ids)} queries x {len(REPHRASE)} rephrasings; "
                      f"other questions: cache filled with {len(train_ids)} train queries)")
    for t, v in result["thresholds"].items():
        print_table(["rephrasing", "hit rate", "nDCG@10 answered", "nDCG@10 fresh"],
                    [[n, x["hit_rate"], x["ndcg@10"], x["ndcg@10_fresh"]] for n, x in v["paraphrases"].items()],
                    title=f"threshold {t}")
    result["wall_s"] = time.perf_counter() - started
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
