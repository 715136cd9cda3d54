"""Change propagation (issue 7): random sequences of add / change / rename / delete applied to a
folder source between runs. After every run the index holds exactly the chunks a from-scratch
build of the current folder holds, and no text that was deleted or replaced can be retrieved in
any mode."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from ingest_platform import pipeline
from ingest_platform.query import Retriever

from .conftest import make_settings, write

# Paths a document may live at; hr/ gets the hr group, so a rename can change access groups too.
NAMES = ["a.md", "notes/b.md", "notes/c d.md", "hr/e.md", "hr/ünï.md", "f.txt"]
MODES = ("keyword", "vector", "hybrid")
EVERYONE = ["public", "hr"]


def token(n: int) -> str:
    """A made-up word per document version (letters only, so tokenizers and stemmers keep it)."""
    letters = ""
    n += 26 * 26
    while n:
        n, d = divmod(n, 26)
        letters = chr(97 + d) + letters
    return f"zq{letters}x"


def body(name: str, word: str) -> str:
    if name.endswith(".txt"):
        return f"Plain note\n\nThe {word} gadget is kept in the plain text drawer.\n"
    return f"# Note on the {word} gadget\n\nThe {word} gadget is described here, with its care instructions.\n"


def chunk_rows(table) -> Counter:
    cols = table.select(["doc_id", "text", "access_groups"]).to_pylist()
    return Counter((r["doc_id"], r["text"], tuple(sorted(r["access_groups"] or []))) for r in cols)


def scratch_rows(tmp, root, n: int) -> Counter:
    """What a fresh build of the folder as it is now would index (no embedding needed for rows)."""
    s = make_settings(tmp / f"scratch-{n}", root)
    pipeline.scan(s)
    pipeline.parse(s)
    pipeline.chunk(s)
    pipeline.enrich(s)
    return chunk_rows(pipeline.load_enriched(s))


ops = st.sampled_from(["add", "change", "rename", "delete"])


@pytest.mark.slow
@hsettings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_index_matches_a_scratch_build_and_forgets_deleted_text(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("changes")
    root = tmp / "src"
    # A subfolder that stays: deleting every file must read as deletions, not as an empty
    # (unmounted) source, which is kept as it was.
    (root / "archive").mkdir(parents=True)
    counter = iter(range(10_000))
    live: dict[str, str] = {}  # relpath -> its current word
    gone: set[str] = set()  # words that were deleted or replaced
    for name in data.draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True), label="initial"):
        live[name] = token(next(counter))
        write(root, name, body(name, live[name]))
    s = make_settings(tmp, root)
    retriever = Retriever(settings=s, cache_size=0, trace=False)
    steps = data.draw(st.integers(2, 3), label="steps")
    for step in range(steps + 1):
        if step:  # step 0 is the first build
            for _ in range(data.draw(st.integers(1, 3), label="ops")):
                op = data.draw(ops, label="op")
                free = [n for n in NAMES if n not in live]
                if op == "add" or not live:
                    if not free:
                        continue
                    name = data.draw(st.sampled_from(free), label="add")
                    live[name] = token(next(counter))
                    write(root, name, body(name, live[name]))
                elif op == "change":
                    name = data.draw(st.sampled_from(sorted(live)), label="change")
                    gone.add(live[name])
                    live[name] = token(next(counter))
                    write(root, name, body(name, live[name]))
                elif op == "rename":
                    if not free:
                        continue
                    old = data.draw(st.sampled_from(sorted(live)), label="from")
                    new = data.draw(st.sampled_from(free), label="to")
                    (root / new).parent.mkdir(parents=True, exist_ok=True)
                    # Same text under a new name: the words stay; the old doc id must go.
                    (root / new).write_text(body(new, live[old]))
                    (root / old).unlink()
                    live[new] = live.pop(old)
                else:
                    name = data.draw(st.sampled_from(sorted(live)), label="delete")
                    gone.add(live.pop(name))
                    (root / name).unlink()
        pipeline.run_all(s)
        store = pipeline.index_store(s)
        assert store.version_of("production") == store.version_of("candidate")

        indexed = chunk_rows(store.checkout("candidate").search().limit(None).to_arrow())
        assert indexed == scratch_rows(tmp, root, step), f"after step {step}: {sorted(live)}"
        assert {d for d, _t, _g in indexed} == {f"docs:{n}" for n in live}

        # Every chunk each mode can return (k above the chunk count), asked with the gone words
        # themselves, holds none of them; and BM25 has no stale entry for any of them.
        for mode in MODES:
            hits = retriever.search(" ".join(["gadget", *sorted(gone)]), 100, mode=mode, groups=EVERYONE).hits
            assert {h.doc_id for h in hits} == {d for d, _t, _g in indexed}, mode
            assert not any(word in h.text for h in hits for word in gone), (mode, sorted(gone))
        for word in sorted(gone):
            assert not retriever.search(word, 20, mode="keyword", groups=EVERYONE).hits, word
        for name, word in live.items():
            hits = retriever.search(word, 3, mode="keyword", groups=EVERYONE).hits
            assert hits and hits[0].doc_id == f"docs:{name}", (word, [h.doc_id for h in hits])
    shutil.rmtree(tmp, ignore_errors=True)
