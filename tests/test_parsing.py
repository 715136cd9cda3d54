"""Real parsing of real files (no mocks): the shared example documents, generated bad inputs, the
per-document time limit, and the offline spaCy setup unstructured depends on.

One worker pool is shared by the module (starting a worker imports torch/onnxruntime/spaCy: seconds).
"""

from __future__ import annotations

import io
import json
import os
import socket
from pathlib import Path

import pikepdf
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ingest_platform import offline, schemas
from ingest_platform.config import ParsingSettings
from ingest_platform.parsing import ParseError, ParserPool, detect_format, parse_bytes, parse_many

EXAMPLE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "example-docs"
EXAMPLE_FILES = (
    sorted(str(p.relative_to(EXAMPLE_DIR)) for p in EXAMPLE_DIR.rglob("*") if p.is_file())
    if EXAMPLE_DIR.is_dir()
    else []
)
# Example documents known not to parse, and the reason code each must give.
EXPECTED_FAILURES = {"pdf/single_table.pdf": "no text layer"}  # image-only; no OCR offline
# An email with no body legitimately has no text; any other failure of one is a bug.
EMPTY_EMAIL_CODES = {"no text extracted", "empty file"}

SETTINGS = ParsingSettings(workers=2, timeout_s=60.0)  # default 4096 MiB address-space cap


@pytest.fixture(scope="module")
def pool():
    with ParserPool(SETTINGS) as p:
        yield p


def assert_elements_table(table: pa.Table) -> None:
    assert table.schema == schemas.ELEMENTS
    assert table.num_rows > 0
    assert table.column("element_index").to_pylist() == list(range(table.num_rows))
    assert all(t and t.strip() for t in table.column("text").to_pylist())


# ---------------------------------------------------------------------------------------------
# Shared example documents
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_results(pool):
    if not EXAMPLE_FILES:
        pytest.skip(f"shared example documents not found at {EXAMPLE_DIR}")
    items = [(rel, EXAMPLE_DIR / rel, Path(rel).name, None) for rel in EXAMPLE_FILES]
    return dict(pool.parse_many(items))


@pytest.mark.parametrize(
    "relpath",
    EXAMPLE_FILES
    or [pytest.param(None, marks=pytest.mark.skip(reason=f"no example documents at {EXAMPLE_DIR}"))],
)
def test_example_document(example_results, relpath):
    result = example_results[relpath]
    if relpath in EXPECTED_FAILURES:
        assert isinstance(result, ParseError), f"{relpath} was expected to fail"
        assert result.code == EXPECTED_FAILURES[relpath], result.reason
    elif relpath.endswith(".eml") and isinstance(result, ParseError):
        assert result.code in EMPTY_EMAIL_CODES, result.reason
    else:
        assert not isinstance(result, ParseError), f"{relpath}: {result.reason}"
        assert_elements_table(result)


def test_most_examples_parse_with_expected_metadata(example_results):
    ok = {k: v for k, v in example_results.items() if isinstance(v, pa.Table)}
    assert len(ok) >= 0.9 * len(example_results)
    # Tables keep their HTML; PDFs and slides have pages; emails carry their sent date.
    docx = ok["docx-tables.docx"]
    tables = docx.filter(pc.equal(docx.column("type"), "Table"))
    assert tables.num_rows > 0 and all(tables.column("text_as_html").to_pylist())
    assert set(ok["pdf/fake-memo.pdf"].column("page_number").to_pylist()) == {1}
    assert ok["eml/fake-email.eml"].column("last_modified")[0].as_py().startswith("2022-12-16")
    # The file-system mtime of wherever the bytes sat is not the document's date.
    assert ok["fake-text.txt"].column("last_modified").null_count == ok["fake-text.txt"].num_rows
    assert ok["simple.docx"].column("created")[0].as_py().startswith("2013-12-23")


def test_image_only_pdf_reason_is_specific(example_results):
    if "pdf/single_table.pdf" not in example_results:
        pytest.skip("pdf/single_table.pdf is not among the example documents")
    err = example_results["pdf/single_table.pdf"]
    assert "OCR not available" in err.reason and err.reason.startswith("no text layer")


# ---------------------------------------------------------------------------------------------
# Generated bad inputs
# ---------------------------------------------------------------------------------------------


def _small_pdf() -> bytes:
    memo = EXAMPLE_DIR / "pdf" / "fake-memo.pdf"
    if memo.is_file():
        return memo.read_bytes()
    pdf = pikepdf.new()  # a text page written by hand: Helvetica "Hello offline world"
    pdf.add_blank_page()
    page = pdf.pages[0]
    font = pikepdf.Dictionary(
        Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica
    )
    page.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font))
    page.Contents = pdf.make_stream(b"BT /F1 24 Tf 72 700 Td (Hello offline world, a small test PDF.) Tj ET")
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def _encrypt(pdf_bytes: bytes, user: str) -> bytes:
    out = io.BytesIO()
    with pikepdf.open(io.BytesIO(pdf_bytes)) as pdf:
        pdf.save(out, encryption=pikepdf.Encryption(owner="o", user=user))
    return out.getvalue()


BAD_INPUTS = {
    # name: (bytes factory, expected reason code)
    "empty.txt": (lambda: b"", "empty file"),
    "random.pdf": (lambda: os.urandom(4096), "corrupt pdf"),
    "random.docx": (lambda: os.urandom(4096), "corrupt docx"),
    "truncated.pdf": (lambda: _small_pdf()[:300], "corrupt pdf"),
    "encrypted.pdf": (lambda: _encrypt(_small_pdf(), user="u"), "encrypted PDF"),
    "notes.xyz": (lambda: b"plain words in a file type nobody registered", "unsupported format"),
    "empty-body.eml": (
        lambda: b"From: a@example.com\nTo: b@example.com\nSubject: nothing\n"
        b"Date: Mon, 1 Jan 2024 10:00:00 +0000\n\n",
        "no text extracted",
    ),
    "blank.md": (lambda: b"   \n\n\t\n", "no text extracted"),
    "binary.eml": (lambda: b"\x00\x01" * 500, "corrupt eml"),
    "broken.json": (lambda: b'{"a": [1, 2', "corrupt json"),
}


@pytest.fixture(scope="module")
def bad_results(pool, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    items = []
    for name, (make, _code) in BAD_INPUTS.items():
        (folder / name).write_bytes(make())
        items.append((name, folder / name, name, None))
    return dict(pool.parse_many(items))


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_gives_specific_reason(bad_results, name):
    result = bad_results[name]
    assert isinstance(result, ParseError), f"{name} parsed into {result.num_rows} rows"
    assert result.code == BAD_INPUTS[name][1], result.reason
    assert result.reason.startswith(result.code)


def test_unsupported_and_empty_reasons_read_well(bad_results):
    assert bad_results["notes.xyz"].reason == "unsupported format: .xyz"
    assert bad_results["empty.txt"].reason == "empty file (0 bytes)"
    assert " at 0x" not in bad_results["random.docx"].reason  # object reprs are normalized


def test_owner_password_only_pdf_still_parses(pool):
    """An empty user password (permissions only) must not be reported as encrypted."""
    data = _encrypt(_small_pdf(), user="")
    [(key, result)] = pool.parse_many([("owner-only", data, "owner-only.pdf", None)])
    assert key == "owner-only"
    assert_elements_table(result)


def test_size_limit_is_checked_before_reading(pool, tmp_path):
    big = tmp_path / "big.txt"
    big.write_bytes(b"words " * 100)
    limits = ParsingSettings(max_file_bytes=100)
    [(_, result)] = pool.parse_many([("big", big, "big.txt", None)], limits)
    assert isinstance(result, ParseError)
    assert result.reason == "file exceeds max_file_bytes (600 > 100)"


def test_json_records_become_elements():
    records = [
        {"title": "Refund policy", "body": {"text": "Refunds within 30 days."}},
        {"title": None},
        {"n": 3},
    ]
    table = parse_bytes(json.dumps(records).encode(), "records.json", None, ParsingSettings())
    assert_elements_table(table)
    assert table.column("text").to_pylist() == [
        "title: Refund policy\nbody.text: Refunds within 30 days.",
        "n: 3",
    ]


@pytest.mark.parametrize(
    ("filename", "head", "expected"),
    [
        ("a.PDF", b"%PDF-1.7", "pdf"),
        ("noext", b"%PDF-1.4\n", "pdf"),
        ("report.txt", b"%PDF-1.4\n", "pdf"),  # misleading extension
        ("noext", b"PK\x03\x04....word/document.xml", "docx"),
        ("deck.bin", b"PK\x03\x04....ppt/slides/slide1.xml", "pptx"),
        ("book.epub", b"PK\x03\x04" + b"\x00" * 26 + b"mimetypeapplication/epub+zip", "epub"),
        ("x.docx", b"\x13\x37random", "docx"),  # kept, so it is reported as a corrupt docx
        ("page", b"<!DOCTYPE html><html>", "html"),
        ("mail", b"Received: from x\r\nFrom: a@b\r\n", "eml"),
        ("data", b'[{"a": 1}]', "json"),
        ("readme", b"just some words", "txt"),
        ("a.xyz", b"just some words", "unknown"),
        ("legacy.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "unknown"),
        ("m.msg", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "msg"),
        ("t.TSV", b"a\tb", "tsv"),
        ("r.rtf", b"{\\rtf1", "rtf"),
        ("noext", b"\x00\x01\x02", "unknown"),
    ],
)
def test_detect_format(filename, head, expected):
    assert detect_format(filename, head) == expected


def test_parse_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(ParseError("timed out after 2s", code="timed out")))
    assert (err.reason, err.code, str(err)) == ("timed out after 2s", "timed out", "timed out after 2s")


# ---------------------------------------------------------------------------------------------
# Offline setup
# ---------------------------------------------------------------------------------------------


def test_prepare_loads_spacy_from_disk_without_network(monkeypatch):
    offline.prepare()
    offline.prepare()  # idempotent
    import unstructured.nlp.tokenize as tokenize

    assert tokenize._SPACY_MODEL_NAME == str(offline.spacy_model_path())
    for key in ("DO_NOT_TRACK", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "UNSTRUCTURED_DISABLE_NOTICE"):
        assert os.environ.get(key) in {"1", "true"}

    def no_network(*_a, **_k):
        raise AssertionError("network access while loading spaCy")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(tokenize, "_install_spacy_model", no_network, raising=False)
    tokenize._get_nlp.cache_clear()
    assert tokenize.sent_tokenize("It loads from disk. Nothing is downloaded.") == [
        "It loads from disk.",
        "Nothing is downloaded.",
    ]


@pytest.mark.parametrize("attribute", ["_SPACY_MODEL_NAME", "_get_nlp"])
def test_prepare_fails_loudly_if_unstructured_drops_the_hook(monkeypatch, attribute):
    import unstructured.nlp.tokenize as tokenize

    monkeypatch.delattr(tokenize, attribute)
    with pytest.raises(RuntimeError, match=f"{attribute} no longer exists"):
        offline.prepare()


def test_unstructured_classifies_with_the_sentence_recognizer_not_the_parser():
    offline.prepare()
    import unstructured.nlp.tokenize as tokenize

    nlp = tokenize._get_nlp()
    assert nlp is offline.heuristics_pipeline()
    assert nlp.pipe_names == ["tok2vec", "tagger", "senter"]
    assert tokenize.sent_tokenize("The senter splits this. It is fast.") == ["The senter splits this.", "It is fast."]
    assert ("loads", "VBZ") in tokenize.pos_tag("It loads from disk.")


def test_element_types_match_the_parser_pipeline_on_real_files():
    """The swap is a speed change only: every element of every real file is classified the same
    as with the dependency parser unstructured would load (the shared examples where present,
    else the sample corpus)."""
    import spacy
    import unstructured.nlp.tokenize as tokenize

    offline.prepare()
    files = [EXAMPLE_DIR / f for f in EXAMPLE_FILES if f not in EXPECTED_FAILURES] or sorted(
        p for p in (Path(__file__).resolve().parents[1] / "data" / "sample").rglob("*") if p.is_file())
    with_parser = spacy.load(offline.spacy_model_path(), exclude=["ner", "lemmatizer", "attribute_ruler"])

    def parse_all(nlp) -> list:
        tokenize._get_nlp = lambda: nlp
        for name in ("_process_cached", "_tokenize_for_cache", "word_tokenize", "pos_tag"):
            getattr(tokenize, name).cache_clear()
        out = []
        for f in files:
            try:
                out.append(parse_bytes(f.read_bytes(), f.name, None, SETTINGS).select(["type", "text"]).to_pylist())
            except ParseError as exc:
                out.append(exc.code)
        return out

    try:
        expected = parse_all(with_parser)
        got = parse_all(offline.heuristics_pipeline())
    finally:
        tokenize._get_nlp = offline.heuristics_pipeline
    assert sum(isinstance(x, list) and len(x) for x in expected) > 50
    assert got == expected


def test_pandoc_and_preflight_checks():
    from ingest_platform import preflight

    assert offline.pandoc_available()
    assert "pandoc" in preflight.check_pandoc()
    assert "no download" in preflight.check_spacy()
    assert "bge-small-en-v1.5 (384 dims)" in preflight.check_embedding_models()


# ---------------------------------------------------------------------------------------------
# Time limit (last: it kills the shared pool's workers, which then restart)
# ---------------------------------------------------------------------------------------------


def test_timeout_kills_the_worker_and_the_next_document_still_parses(pool):
    paragraph = "<p>Paragraph {} says something. It has two sentences.</p>"
    paragraphs = "".join(paragraph.format(i) for i in range(4000))
    big = f"<html><body>{paragraphs}</body></html>".encode()
    items = [
        ("slow-1", big, "slow.html", None),
        ("slow-2", big, "slow.html", None),  # both workers are busy and then killed ...
        ("small", b"Tiny document. It parses quickly.", "small.txt", None),  # ... so this runs on a new one
    ]
    results = list(pool.parse_many(items, ParsingSettings(timeout_s=1.5)))
    assert [k for k, _ in results] == ["slow-1", "slow-2", "small"]
    for _key, err in results[:2]:
        assert isinstance(err, ParseError) and err.code == "timed out"
        assert err.reason == "timed out after 1.5s"
    assert_elements_table(results[2][1])


def test_parse_many_without_a_pool_starts_and_stops_its_own(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\nSome body text here.\n")
    results = list(parse_many([(0, tmp_path / "a.md", "a.md", None)], ParsingSettings(workers=1)))
    assert [k for k, _ in results] == [0]
    assert_elements_table(results[0][1])


# ---------------------------------------------------------------------------------------------
# Web page furniture: the page's own banner and footer are not its content
# ---------------------------------------------------------------------------------------------


def test_a_real_pages_banner_and_footer_stay_out(example_results):
    """The shared news page (no ``<main>``) wraps its site menu in the page's ``<header
    role=banner>`` and its address in the page's ``<footer role=contentinfo>``: neither is the
    article, and both used to land in its first and last chunks."""
    rel = "example-with-scripts.html"
    if rel not in example_results:
        pytest.skip(f"{rel} not among the example documents")
    texts = example_results[rel]["text"].to_pylist()
    joined = "\n".join(texts)
    assert "Who We Are" not in joined and "Planned Giving" not in joined  # the site menu
    assert "Skip to main content" not in joined  # its skip link
    assert "16th Street NW" not in joined and "THE INSTITUTE FOR THE STUDY OF WAR" not in joined
    assert "Russian Offensive Campaign Assessment, December 13" in joined  # the article stays
    assert "Belarusian" in joined and "https://t.me/rybar/41971" in joined  # its body and its notes


def _texts(html: str) -> str:
    return "\n".join(parse_bytes(html.encode(), "page.html", None, ParsingSettings())["text"].to_pylist())


def test_only_the_pages_own_landmarks_are_furniture():
    body = "<p>The refund window for annual plans is thirty days from the renewal date.</p>"
    page = _texts(
        "<html><body><header><a href='/'>Acme</a> <a href='/about'>About us</a> <a href='/jobs'>Careers</a></header>"
        f"<article><header><h1>Refund policy</h1><p>By the billing team</p></header>{body}"
        "<footer>Filed under billing</footer></article>"
        "<div role='navigation'>Previous post | Next post</div>"
        "<footer><p>Acme Inc., 1 Main Street. All rights reserved.</p></footer></body></html>")
    assert "thirty days" in page and "Refund policy" in page and "By the billing team" in page
    assert "Filed under billing" in page  # an article's own footer is its content
    assert "Careers" not in page and "Next post" not in page and "All rights reserved" not in page

    # A page-level header that holds the document's only top heading is the document's title block.
    titled = _texts(f"<html><body><header><h1>Employee handbook</h1><p>Version 3</p></header>{body}</body></html>")
    assert "Employee handbook" in titled and "Version 3" in titled
    # role=contentinfo marks the page footer on any element.
    assert "Call 555" not in _texts(f"<html><body>{body}<div role='contentinfo'>Call 555-0100</div></body></html>")
    # Nothing is taken from a page that is only a footer (it would have no content left).
    assert "Only this" in _texts("<html><body><footer><p>Only this text.</p></footer></body></html>")


def test_a_real_pages_link_menu_table_stays_out(example_results):
    """The shared datasheet lays its page out in tables (no landmarks): the site menu is a table of
    nothing but links, and it used to become a Table element of its own at the top."""
    rel = "example-steelJIS-datasheet.html"
    if rel not in example_results:
        pytest.skip(f"{rel} not among the example documents")
    joined = "\n".join(example_results[rel]["text"].to_pylist())
    assert "About us" not in joined and "Korean steels" not in joined  # the menu
    assert "SNB22-3 Chemical composition, standards and properties" in joined
    assert "Alloy steel bars for special application bolting materials" in joined  # its data tables stay
    assert "Japanese steel grading ->" in joined  # a breadcrumb ending in the page's own name is not only links


def test_a_table_of_nothing_but_links_is_navigation():
    body = "<table><tr><th>Plan</th><th>Refund window</th></tr><tr><td>Annual</td><td>thirty days</td></tr></table>"
    menu = ("<table><tr><td><a href='/'>Home</a></td><td>|</td><td><a href='/plans'>Plans</a></td>"
            "<td><a href='/help'>Help desk</a></td></tr></table>")
    page = _texts(f"<html><body>{menu}<h1>Refunds</h1>{body}</body></html>")
    assert "Help desk" not in page and "thirty days" in page
    # A table whose links sit beside other text, or that has only two links, is content.
    kept = _texts("<html><body><table><tr><td><a href='/a'>Form A</a></td><td>for annual plans</td></tr>"
                  "<tr><td><a href='/b'>Form B</a></td><td>for monthly plans</td></tr>"
                  "<tr><td><a href='/c'>Form C</a></td><td>for gift cards</td></tr></table>"
                  f"<table><tr><td><a href='/x'>Terms</a></td><td><a href='/y'>Privacy</a></td></tr></table>{body}</body></html>")
    assert "Form C" in kept and "Privacy" in kept
    # A page that is only a menu keeps it (it would have no content left).
    assert "Help desk" in _texts(f"<html><body>{menu}</body></html>")


# ---------------------------------------------------------------------------------------------
# E-mail: the subject is the heading the message opens with; a guessed heading is a real one
# ---------------------------------------------------------------------------------------------


def test_a_real_emails_subject_heads_it_and_its_links_are_not_headings(example_results):
    """The shared GitHub notice had no title but a link unstructured's text classifier called a
    Title: the link became its title and the heading over five of its seven chunks."""
    rel = "eml/email-no-html-content-1.eml"
    if rel not in example_results:
        pytest.skip(f"{rel} not among the example documents")
    rows = example_results[rel].to_pylist()
    assert (rows[0]["type"], rows[0]["text"]) == ("Title", "[GitHub] Subscribed to 63 nf-core repositories")
    assert not any(r["type"] == "Title" and "://" in r["text"] for r in rows)
    assert any("https://github.com/nf-core/sarek/subscription" in r["text"] for r in rows)  # still there, as text


def test_an_emails_subject_is_its_title_through_the_chunks():
    from email.message import EmailMessage

    from ingest_platform.chunking import chunk_elements
    from ingest_platform.models import DEFAULT_MODEL, load_tokenizer

    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = "Lantern recall for the K7 batch", "ops@example.com", "crews@example.com"
    msg.set_content("Crews,\n\nthe K7 lanterns of batch 14 overheat when charged below freezing. Return them to the "
                    "depot this week.\n\nhttps://example.com/recall/k7\n\nThanks!\n\nThe depot team")
    table = parse_bytes(msg.as_bytes(), "recall.eml", None, ParsingSettings())
    assert table["type"][0].as_py() == "Title" and table["text"][0].as_py() == "Lantern recall for the K7 batch"
    assert table["type"].to_pylist().count("Title") == 1
    chunks = chunk_elements(table, doc_id="d", doc_version="v", tokenizer=load_tokenizer(DEFAULT_MODEL),
                            max_tokens=254, overlap_tokens=32, min_tokens=64).to_pylist()
    assert {c["heading_path"] for c in chunks} == {"Lantern recall for the K7 batch"}


def test_headings_guessed_from_plain_text_are_real_headings():
    """unstructured's text classifier calls a link on a line of its own, "Thanks!" and a closing
    line Titles; as headings they would head the chunks that follow them."""
    text = ("Hey there, we are writing to let you know that you now watch several repositories.\n\n"
            "https://github.com/nf-core/fastquorum/subscription\nhttps://github.com/nf-core/sarek/subscription\n\n"
            "The K7 lanterns kept their output.\n\nThanks!\n\nThe GitHub Team\n")
    rows = parse_bytes(text.encode(), "notes.txt", None, ParsingSettings()).to_pylist()
    assert [r["text"] for r in rows if r["type"] == "Title"] == []
    assert [r["text"] for r in rows][1:3] == ["https://github.com/nf-core/fastquorum/subscription",
                                              "https://github.com/nf-core/sarek/subscription"]


# ---------------------------------------------------------------------------------------------
# Word documents: headings set by direct formatting, not by a heading style
# ---------------------------------------------------------------------------------------------


def test_a_real_handbooks_unstyled_headings_head_its_sections(example_results):
    """The shared handbook sets its section headings ("A. PURPOSE", "B. ROLE OF THE UNITED STATES
    TRUSTEE") in the Normal style; unstructured's DOCX partitioner types paragraphs by style, so
    they stayed UncategorizedText and the handbook's chunks had no heading path at all."""
    from ingest_platform.chunking import chunk_elements
    from ingest_platform.models import DEFAULT_MODEL, load_tokenizer

    rel = "handbook-1p.docx"
    if rel not in example_results:
        pytest.skip(f"{rel} not among the example documents")
    table = example_results[rel]
    titles = [" ".join(r["text"].split()) for r in table.to_pylist() if r["type"] == "Title"]
    assert {"A. PURPOSE", "B. ROLE OF THE UNITED STATES TRUSTEE", "C. STATUTORY DUTIES OF A STANDING TRUSTEE"} <= set(titles)
    assert not any(len(t.split()) > 16 for t in titles)  # no body paragraph among them
    chunks = chunk_elements(table, doc_id="d", doc_version="v", tokenizer=load_tokenizer(DEFAULT_MODEL), max_tokens=254,
                            overlap_tokens=32, min_tokens=64).to_pylist()
    assert all(c["heading_path"] for c in chunks)
    assert any("ROLE OF THE UNITED STATES TRUSTEE" in c["heading_path"] for c in chunks)


def test_unstyled_docx_lines_that_head_nothing_stay_text(tmp_path):
    from docx import Document

    doc = Document()
    for text in ["Dear Ms. Berg,", "Analysis",
                 "The K7 lanterns kept their output through the winter, and the crews charged them after every shift.",
                 "Name:", "2023", "Kind regards", "Ana Halvorsen"]:
        doc.add_paragraph(text)
    path = tmp_path / "letter.docx"
    doc.save(path)
    rows = parse_bytes(path.read_bytes(), "letter.docx", None, ParsingSettings()).to_pylist()
    assert [r["text"] for r in rows if r["type"] == "Title"] == ["Analysis"]  # it heads the paragraph
