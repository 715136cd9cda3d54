"""Text reconstruction for paged formats, on real PDFs: lines rendered by reportlab with the
spacing that makes pdfminer keep every printed line apart, and the shared example PDFs
(single- and multi-column). Then the chunks: no fragment under the minimum size, no heading path
that holds a sentence fragment."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest

from ingest_platform.chunking import HEADING_SEP, chunk_elements
from ingest_platform.config import ParsingSettings
from ingest_platform.models import DEFAULT_MODEL, load_tokenizer
from ingest_platform.parsing import ParseError, classify_paragraph, parse_path
from ingest_platform.reconstruct import is_fragment, reconstruct
from ingest_platform.schemas import ELEMENTS

from .conftest import EXAMPLE_DOCS, need

TITLE = "Lantern brightness over a winter of field use"
BODY = ("Field crews carried the Zephyr K7 lantern through a full winter in the northern fjords and logged its "
        "brightness every week. The lantern kept more than ninety percent of its rated output until the battery "
        "fell below one fifth of its charge, after which the output dropped steeply over the last hour. Crews "
        "reported that cold mornings shortened the runtime by about a tenth, and that a warm pocket restored it. "
        "The maintenance team recommends charging the lantern after every shift in temperatures below freezing.")


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(DEFAULT_MODEL)


def words(text: str) -> str:
    return " ".join(text.split())


def render(path: Path, title: str, lines: list[str], *, leading: float = 1.6, pages: int = 1, header: str | None = None,
           extra: list[str] = ()) -> Path:
    """A PDF with these printed lines (no layout engine between us and the page)."""
    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=letter)
    per_page = -(-len(lines) // pages)
    for page in range(pages):
        y = 720
        if header:
            c.setFont("Helvetica", 8)
            c.drawString(72, 760, header)
        if page == 0:
            c.setFont("Helvetica-Bold", 14)
            c.drawString(72, y, title)
            y -= 32
        c.setFont("Helvetica", 11)
        for line in lines[page * per_page:(page + 1) * per_page]:
            c.drawString(72, y, line)
            y -= 11 * leading
        for line in extra:
            c.drawString(72, y - 20, line)
            y -= 20
        c.setFont("Helvetica", 9)
        c.drawCentredString(306, 36, str(page + 1))
        c.showPage()
    c.save()
    return path


def wrapped(text: str, width: float = 440) -> list[str]:
    from reportlab.lib.utils import simpleSplit

    return simpleSplit(text, "Helvetica", 11, width)


def parsed(path: Path):
    return parse_path(path, None, None, ParsingSettings())


def test_printed_lines_become_one_paragraph_under_a_real_title(tmp_path, tok):
    lines = wrapped(BODY)
    raw = parsed(render(tmp_path / "wide.pdf", TITLE, lines))
    assert raw.num_rows >= len(lines)  # the partitioner's view: one element per printed line
    out = reconstruct(raw, is_word=tok.vocab.__contains__, classify=classify_paragraph).to_pylist()
    texts = [r["text"] for r in out]
    assert texts == [TITLE, words(BODY)]  # the page number is furniture
    assert out[0]["type"] == "Title" and out[1]["type"] == "NarrativeText"
    chunks = chunk_elements(reconstruct(raw, classify=classify_paragraph), doc_id="d", doc_version="v", tokenizer=tok, max_tokens=254,
                            overlap_tokens=32, min_tokens=64).to_pylist()
    assert len(chunks) == 1 and chunks[0]["heading_path"] == TITLE
    assert words(chunks[0]["text"]) == words(f"{TITLE} {BODY}")


def test_hyphenation_is_undone_only_where_the_joined_word_is_a_word(tmp_path, tok):
    lines = ["The survey measured how much infor-", "mation each lantern log carried, using diffusion-",
             "weighted sampling over the whole fleet of lamps in service."]
    out = reconstruct(parsed(render(tmp_path / "hyphen.pdf", TITLE, lines)), is_word=tok.vocab.__contains__, classify=classify_paragraph)
    body = out["text"].to_pylist()[1]
    assert "information each" in body and "diffusion-weighted sampling" in body


def test_furniture_is_dropped_and_lone_headers_are_kept(tmp_path):
    lines = wrapped(BODY * 2)
    raw = parsed(render(tmp_path / "furniture.pdf", TITLE, lines, pages=2, header="HALVORSEN FIELD REPORT 2026",
                        extra=["\u00b7 \u00b7 \u00b7 \u00b7 \u00b7 \u00b7", "* * *"]))
    texts = [r["text"] for r in reconstruct(raw, classify=classify_paragraph).to_pylist()]
    assert not any("HALVORSEN FIELD REPORT" in t for t in texts)  # repeated on every page
    assert not any(re.fullmatch(r"[\d\s]+", t) for t in texts)  # page numbers
    assert not any(not re.search(r"[A-Za-z0-9]", t) for t in texts)  # ornaments
    assert any(t.startswith("Field crews carried") for t in texts)
    # A header on a one-page document is its content (the title a partitioner calls "Header").
    one = reconstruct(parsed(render(tmp_path / "one.pdf", TITLE, wrapped(BODY), header="Field report")), classify=classify_paragraph)
    assert "Field report" in one["text"].to_pylist()


def render_paper(path: Path, pages: int, chapters: list[int]) -> Path:
    """A paper whose running heads alternate, as in print: "<page> A. Halvorsen et al." on even
    pages, "Lantern field report <page>" on odd ones after the first, and a chapter line on top."""
    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=letter)
    lines = wrapped(BODY * pages)
    per = -(-len(lines) // pages)
    for p in range(1, pages + 1):
        c.setFont("Helvetica", 8)
        if p % 2 == 0:
            c.drawString(72, 760, f"{p} A. Halvorsen et al.")
        elif p > 1:
            c.drawRightString(540, 760, f"Lantern field report {p}")
        y = 720
        if p == 1:
            c.setFont("Helvetica-Bold", 14)
            c.drawString(72, y, TITLE)
            y -= 32
        c.setFont("Helvetica-Bold", 12)
        c.drawString(72, y, f"Chapter {chapters[p - 1]}")
        y -= 24
        c.setFont("Helvetica", 11)
        for line in lines[(p - 1) * per:p * per]:
            c.drawString(72, y, line)
            y -= 11 * 1.6
        c.showPage()
    c.save()
    return path


@pytest.mark.parametrize("pages", [4, 5, 6])
def test_alternating_running_heads_are_furniture_and_chapter_lines_are_not(tmp_path, pages):
    """Each of a paper's two running heads is on every other page, under half the pages: they
    used to become headings ("Lantern field report 3" over page 3's text). On four pages the odd
    head is printed once, and goes by the page number it carries (``_page_heads``). Lines that
    repeat with numbers that do not follow the page are content."""
    chapters = [1, 1, 2, 5, 9, 12][:pages]
    out = reconstruct(parsed(render_paper(tmp_path / "paper.pdf", pages, chapters)), classify=classify_paragraph)
    texts = out["text"].to_pylist()
    assert not any("Halvorsen et al." in t for t in texts)  # on 2 of 4, 5 or 6 pages: all even ones
    assert not any("Lantern field report" in t for t in texts)
    assert sum(t.startswith("Chapter ") for t in texts) == pages


def test_a_laid_out_report_keeps_numbered_headings_lists_and_drops_its_running_heads(tmp_path, tok):
    """A report laid out by reportlab's own layout engine (platypus), as generated PDFs are: the
    partitioner calls "2. Results" a list item, like the items of a real list; a numbered line that
    stands alone between paragraphs is a heading, a run of them stays a list."""
    from reportlab.lib.pagesizes import letter
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    styles = getSampleStyleSheet()
    sections = ["Methods", "Results", "Crew feedback", "Maintenance", "Outlook"]
    story = [Paragraph(TITLE, styles["Title"])]
    for n, name in enumerate(sections, 1):
        story.append(Paragraph(f"{n}. {name}", styles["Heading2"]))
        story += [Paragraph(f"In the {name.lower()} part, {BODY[0].lower()}{BODY[1:]}", styles["BodyText"])] * 7
        if name == "Maintenance":
            story += [Paragraph(f"{i}. {step}", styles["BodyText"]) for i, step in
                      enumerate(["Charge after every shift", "Keep the lantern in a warm pocket", "Replace worn seals"], 1)]
            story.append(Paragraph(BODY, styles["BodyText"]))

    def heads(canvas, doc):
        canvas.setFont("Helvetica", 8)
        canvas.drawString(72, 750, f"{doc.page}  A. Halvorsen and B. Berg" if doc.page % 2 == 0
                          else f"Lantern field report  {doc.page}")

    path = tmp_path / "report.pdf"
    SimpleDocTemplate(str(path), pagesize=letter).build(story, onLaterPages=heads)
    out = reconstruct(parsed(path), is_word=tok.vocab.__contains__, classify=classify_paragraph).to_pylist()
    titles = [r["text"] for r in out if r["type"] == "Title"]
    assert titles == [TITLE] + [f"{n}. {name}" for n, name in enumerate(sections, 1)]
    assert [r["text"] for r in out if r["type"] == "ListItem"] == [
        "1. Charge after every shift", "2. Keep the lantern in a warm pocket", "3. Replace worn seals"]
    assert not any("Halvorsen and" in r["text"] or "field report" in r["text"] for r in out)
    chunks = chunk_elements(pa.Table.from_pylist(out, schema=ELEMENTS), doc_id="d", doc_version="v", tokenizer=tok,
                            max_tokens=254, overlap_tokens=32, min_tokens=64).to_pylist()
    assert {c["heading_path"].split(HEADING_SEP)[-1] for c in chunks} >= {"2. Results", "4. Maintenance"}


def test_numbered_headings_nest_by_their_numbers(tmp_path, tok):
    """A PDF says nothing of heading levels (DOCX and HTML do): "2.1 Data" under "2. Results" is
    known by its number, so the heading path keeps both. An unnumbered heading is placed by its
    printed size: as large as the top-level numbered ones (Acknowledgements) it is a section of its
    own, as large as a deeper level's it is at that level under the numbered heading before it,
    smaller than any it is a child of that heading."""
    from reportlab.lib.pagesizes import letter
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    styles = getSampleStyleSheet()
    outline = [("1.", "Methods", "Heading2"), ("", "Equipment", "Heading3"), ("2.", "Results", "Heading2"),
               ("2.1", "Battery life", "Heading3"), ("2.2", "Brightness", "Heading3"), ("2.2.1", "Night trials", "Heading4"),
               ("3.", "Outlook", "Heading2"), ("3.1", "Next winter", "Heading3"), ("", "Spare parts", "Heading4"),
               ("", "Acknowledgements", "Heading2"), ("4.", "Funding", "Heading2"), ("", "Grants", "Heading5")]
    story = [Paragraph(TITLE, styles["Title"])]
    for number, name, style in outline:
        story.append(Paragraph(f"{number} {name}".strip(), styles[style]))
        story += [Paragraph(f"On {name.lower()}: {BODY[0].lower()}{BODY[1:]}", styles["BodyText"])] * 4
    path = tmp_path / "nested.pdf"
    SimpleDocTemplate(str(path), pagesize=letter).build(story)
    out = reconstruct(parsed(path), is_word=tok.vocab.__contains__, classify=classify_paragraph)
    chunks = chunk_elements(out, doc_id="d", doc_version="v", tokenizer=tok, max_tokens=254, overlap_tokens=32,
                            min_tokens=64).to_pylist()
    paths = {c["heading_path"] for c in chunks}
    assert {"2. Results > 2.1 Battery life", "2. Results > 2.2 Brightness > 2.2.1 Night trials",
            "3. Outlook > 3.1 Next winter", "Acknowledgements", "1. Methods > Equipment",
            "3. Outlook > 3.1 Next winter > Spare parts", "4. Funding > Grants"} <= paths
    assert not any("Battery life" in p and "Brightness" in p for p in paths)


def draw_sections(path: Path, sections: list[tuple[list[str], str]], *, size: float = 11, body: float = 10) -> Path:
    """A PDF drawn line by line: the title, then per section its heading lines (in ``font`` at
    ``size``) over four lines of body text (``body`` points, 1.5x spacing), a new page when full."""
    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=letter)
    y = 740
    c.setFont("Helvetica-Bold", 16)
    c.drawString(72, y, TITLE)
    y -= 40
    for lines, font in sections:
        if y < 200:
            c.showPage()
            y = 740
        c.setFont(font, size)
        for line in lines:
            c.drawString(72, y, line)
            y -= size + 3
        c.setFont("Helvetica", body)
        for line in wrapped(BODY)[:4]:
            y -= body * 1.5
            c.drawString(72, y, line)
        y -= 30
    c.showPage()
    c.save()
    return path


def heading_paths(path: Path, tok) -> set[str]:
    out = reconstruct(parsed(path), is_word=tok.vocab.__contains__, classify=classify_paragraph)
    chunks = chunk_elements(out, doc_id="d", doc_version="v", tokenizer=tok, max_tokens=254, overlap_tokens=32,
                            min_tokens=64)
    return set(chunks["heading_path"].to_pylist())


def test_a_heading_wrapped_onto_two_lines_does_not_set_the_size_of_its_level(tmp_path, tok):
    """With two numbered sections, one of them wrapped, the printed size of a section heading is
    the single line's: an unnumbered heading in the same style stays a section of its own."""
    long = ["2. Results of a winter of field trials", "with the lantern in the fjords"]
    bold = "Helvetica-Bold"
    path = draw_sections(tmp_path / "wrapped.pdf", [(["1. Methods"], bold), (long, bold), (["References"], bold)],
                         size=13)
    out = reconstruct(parsed(path), is_word=tok.vocab.__contains__, classify=classify_paragraph).to_pylist()
    heights = {r["text"]: r["y1"] - r["y0"] for r in out if r["type"] == "Title"}
    assert heights[" ".join(long)] > 1.5 * heights["1. Methods"]  # one heading, two printed lines
    assert "References" in heading_paths(path, tok)


def test_roman_section_numbers_nest_their_lettered_subsections(tmp_path, tok):
    """The IEEE style: sections I., II., subsections A., B. (the letters alone say nothing)."""
    bold, italic = "Helvetica-Bold", "Helvetica-Oblique"
    path = draw_sections(tmp_path / "ieee.pdf", [(["I. INTRODUCTION"], bold), (["II. FIELD TRIALS"], bold),
                                                 (["A. Battery life"], italic), (["B. Brightness"], italic),
                                                 (["III. OUTLOOK"], bold)])
    assert {"II. FIELD TRIALS > A. Battery life", "II. FIELD TRIALS > B. Brightness",
            "III. OUTLOOK"} <= heading_paths(path, tok)


@pytest.mark.parametrize("text,fragment", [
    ("Refund policy", False), ("3.1 Overview", False), ("Module Three: Step 2: Design and Prototyping", False),
    ("cerebral white matter in living infants.", True), ("abnormalities. Whole body skeletal survey (WBSS), was", True),
    ("the results of the trial and", True), ("Fig. 5. Langmuir adsorption isotherm of ES.", True),
    ("staging,", True), (" ".join(["word"] * 30), True),
])
def test_heading_guard(text, fragment):
    assert is_fragment(text) is fragment


def example_pdfs():
    folder = EXAMPLE_DOCS / "pdf"
    return sorted(folder.glob("*.pdf")) if folder.exists() else []


@pytest.mark.parametrize("path", example_pdfs(), ids=lambda p: p.name)
def test_shared_pdfs_chunk_without_fragments_or_false_headings(path, tok):
    try:
        raw = parsed(path)
    except ParseError as exc:  # the image-only one: no text layer, a recorded reason
        assert "no text layer" in str(exc)
        return
    els = reconstruct(raw, is_word=tok.vocab.__contains__, classify=classify_paragraph)
    chunks = chunk_elements(els, doc_id="d", doc_version="v", tokenizer=tok, max_tokens=254, overlap_tokens=32,
                            min_tokens=64).to_pylist()
    assert chunks
    total = sum(c["token_count"] for c in chunks)
    for c in chunks:
        assert c["token_count"] >= 64 or total < 64 or len(chunks) == 1, c
        for part in filter(None, c["heading_path"].split(HEADING_SEP)):
            # independent of the guard's own rules: what a heading never looks like
            assert not part[:1].islower() and not part.endswith((",", ";")) and len(part) <= 120, part
    before = words(" ".join(raw["text"].to_pylist()))
    after = words(" ".join(c["text"] for c in chunks))
    assert len(after) >= 0.9 * len(before)  # furniture goes, content stays


def test_multi_column_paper_keeps_its_sentences(tok):
    path = need(EXAMPLE_DOCS / "pdf" / "multi-column-2p.pdf")
    texts = reconstruct(parsed(path), is_word=tok.vocab.__contains__, classify=classify_paragraph)["text"].to_pylist()
    assert any("relies on efficient passage retrieval" in t for t in texts)  # "ef- ﬁcient" across a line
    assert any(t.startswith("Retrieval in open-domain QA is usually implemented using TF-IDF") for t in texts)
    titles = [t for t in texts if t in ("Abstract", "1 Introduction", "2 Background", "3.1 Overview")]
    assert len(titles) == 4
    chunks = chunk_elements(reconstruct(parsed(path), is_word=tok.vocab.__contains__, classify=classify_paragraph),
                            doc_id="d", doc_version="v", tokenizer=tok, max_tokens=254, overlap_tokens=32,
                            min_tokens=64).to_pylist()
    # The subsection sits under its numbered section (the PDF itself says nothing of levels).
    assert any(c["heading_path"].endswith(f"3 Dense Passage Retriever (DPR){HEADING_SEP}3.1 Overview") for c in chunks)


def _reconstructed(path: Path, tok) -> list[tuple[str, str]]:
    rows = reconstruct(parsed(path), is_word=tok.vocab.__contains__, classify=classify_paragraph).to_pylist()
    return [(r["type"], r["text"]) for r in rows]


def test_pdf_lines_are_classified_once_joined_with_the_same_result(tmp_path, tok, monkeypatch):
    """The partitioner leaves PDF lines unclassified (its spaCy tests ran once per printed line,
    most of a PDF's parse time); ``reconstruct`` classifies the joined paragraphs that could be
    headings. On real PDFs that gives exactly what classifying every line gave."""
    import contextlib

    import unstructured.partition.text as text_module

    from ingest_platform import parsing

    raw = parsed(render(tmp_path / "lines.pdf", TITLE, wrapped(BODY)))
    types = dict(zip(raw["text"].to_pylist(), raw["type"].to_pylist()))
    assert types[TITLE] == "UncategorizedText" and set(types.values()) == {"UncategorizedText", "Footer"}
    assert text_module.is_possible_title is not parsing._never  # put back after the partition
    files = [render(tmp_path / "report.pdf", TITLE, wrapped(BODY), pages=2, header="Field report")]
    files += sorted((EXAMPLE_DOCS / "pdf").glob("*.pdf")) if (EXAMPLE_DOCS / "pdf").is_dir() else []
    now = {f.name: _reconstructed(f, tok) for f in files if f.name != "single_table.pdf"}
    monkeypatch.setattr(parsing, "_lines_left_unclassified", contextlib.nullcontext)
    before = {f.name: _reconstructed(f, tok) for f in files if f.name != "single_table.pdf"}
    assert now == before
    assert ("Title", TITLE) in now["report.pdf"]


def test_unclassified_lines_fail_loudly_if_unstructured_renames_its_tests(monkeypatch, tmp_path):
    import unstructured.partition.text as text_module

    monkeypatch.delattr(text_module, "is_possible_title")
    with pytest.raises(RuntimeError, match="is_possible_title no longer exists"):
        parse_path(render(tmp_path / "x.pdf", TITLE, wrapped(BODY)), None, None, ParsingSettings())


def test_parsing_from_threads_matches_serial_and_restores_unstructured(tmp_path):
    """PDF partitioning swaps two of unstructured's module functions for its duration. Parsed from
    many threads at once (a serving app, an in-process executor), every file must give its serial
    result, and the module must be left with its own functions afterwards: an overlapping swap
    could restore the stand-in and turn off heading detection for every later text file."""
    import threading

    import unstructured.partition.text as text_module

    original = {name: getattr(text_module, name) for name in ("is_possible_title", "is_possible_narrative_text")}
    repo = Path(__file__).resolve().parents[1]
    files = [render(tmp_path / "report.pdf", TITLE, wrapped(BODY)),
             repo / "data" / "sample" / "company" / "onboarding-guide.pdf",
             repo / "data" / "sample" / "policies" / "data-retention.txt"]

    def result(path: Path) -> list:
        return parse_path(path, None, None, ParsingSettings()).select(["type", "text"]).to_pylist()

    serial = {f: result(f) for f in files}
    got: list[tuple[Path, list]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def work(offset: int) -> None:
        try:
            start.wait()
            for i in range(6):
                f = files[(offset + i) % len(files)]
                got.append((f, result(f)))
        except BaseException as exc:  # reported below, with the thread's failure
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    left = {name: getattr(text_module, name) for name in original}
    for name, function in original.items():  # so a failure here does not spoil later tests
        setattr(text_module, name, function)
    assert not errors
    assert left == original
    assert len(got) == 36 and all(rows == serial[f] for f, rows in got)


def render_two_pages(path: Path, *, head: str | None, top_heading: str | None, leading: float = 1.2,
                     first_line: str | None = None) -> Path:
    """Two pages of body text; page 2 opens with ``head`` (8 pt, set apart, printed on that page
    only) and/or ``top_heading`` (12 pt bold, its paragraph right under it), or with
    ``first_line`` as its first body line."""
    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=letter)
    lines = wrapped(BODY * 3)
    for p in (1, 2):
        y = 720
        if p == 1:
            c.setFont("Helvetica-Bold", 14)
            c.drawString(72, y, TITLE)
            y -= 32
        if p == 2 and head:
            c.setFont("Helvetica", 8)
            c.drawString(72, 760, head)
        if p == 2 and top_heading:
            c.setFont("Helvetica-Bold", 12)
            c.drawString(72, y, top_heading)
            y -= 18
        c.setFont("Helvetica", 11)
        page_lines = lines[(p - 1) * len(lines) // 2:p * len(lines) // 2]
        for line in ([first_line] if p == 2 and first_line else []) + page_lines:
            c.drawString(72, y, line)
            y -= 11 * leading
        c.showPage()
    c.save()
    return path


def test_a_running_head_printed_once_is_furniture(tmp_path, tok):
    """A two-page paper or a one-page excerpt prints its running head once, so it cannot be told
    by repetition; it still carries the page's number ("2 Z. Shen et al." on page 2, "454 ... Data
    in Brief 22 (2019) 451-457") and stands apart above the text. Such heads used to become
    headings over the page's chunks and a document's title. A section heading that opens a page
    with the page's number ("2 Results" on page 2) sits on its paragraph and stays."""
    once = reconstruct(parsed(render_two_pages(tmp_path / "once.pdf", head="2 A. Halvorsen et al.", top_heading=None)),
                       classify=classify_paragraph)["text"].to_pylist()
    assert not any("Halvorsen" in t for t in once)
    assert any(t.startswith("Field crews carried") for t in once)
    heading = reconstruct(parsed(render_two_pages(tmp_path / "heading.pdf", head=None, top_heading="2 Results")),
                          classify=classify_paragraph).to_pylist()
    assert [r["text"] for r in heading if r["type"] == "Title"] == [TITLE, "2 Results"]
    # Triple-spaced body text: a page's first line that ends with its page's number is body text.
    spaced = reconstruct(parsed(render_two_pages(tmp_path / "spaced.pdf", head=None, top_heading=None, leading=3.0,
                                                 first_line="and the crews of the second winter numbered 2")),
                         classify=classify_paragraph)["text"].to_pylist()
    assert any("second winter numbered 2" in t for t in spaced)

    for name, head in (("layout-parser-paper-fast.pdf", "Shen et al."), ("embedded-images-tables.pdf", "Data in Brief")):
        path = need(EXAMPLE_DOCS / "pdf" / name)
        els = reconstruct(parsed(path), is_word=tok.vocab.__contains__, classify=classify_paragraph)
        assert not any(head in t for t in els["text"].to_pylist()), name
        chunks = chunk_elements(els, doc_id="d", doc_version="v", tokenizer=tok, max_tokens=254, overlap_tokens=32,
                                min_tokens=64).to_pylist()
        assert not any(head in c["heading_path"] for c in chunks), name


def test_a_table_header_row_is_no_heading(tok):
    """A table the fast PDF partitioner does not see as one leaves its header cells as short pieces
    side by side: joined and classified they read as headings ("Polarization resistance (Ω)
    Corrosion rate (mm/year)" headed the shared excerpt's table and titled the document). A piece
    printed in a row of three or more short pieces is a table cell; the headings of the shared
    two-column paper, beside the long lines of the other column, stay."""
    path = need(EXAMPLE_DOCS / "pdf" / "embedded-images-tables.pdf")
    out = reconstruct(parsed(path), is_word=tok.vocab.__contains__, classify=classify_paragraph).to_pylist()
    assert not any(r["type"] == "Title" and ("Corrosion rate" in r["text"] or "Inhibitor" in r["text"]) for r in out)
    assert any("Corrosion rate (mm/year)" in r["text"] for r in out)  # still text

    paper = need(EXAMPLE_DOCS / "pdf" / "multi-column-2p.pdf")
    out = reconstruct(parsed(paper), is_word=tok.vocab.__contains__, classify=classify_paragraph).to_pylist()
    assert {"Abstract", "1 Introduction", "2 Background", "3.1 Overview"} <= {r["text"] for r in out if r["type"] == "Title"}


def test_bulleted_items_printed_in_one_text_box_become_one_item_each(tok):
    """pdfminer groups closely set lines into one text box and unstructured makes a box one
    element, so the shared course outline's items came out as "What are product types? ● What
    challenges may arise in development?", one item with a bullet inside it."""
    path = need(EXAMPLE_DOCS / "pdf" / "list-item-example.pdf")
    raw = parsed(path)
    assert any(" \u25cf " in t for t in raw["text"].to_pylist())  # what the partitioner gives
    els = reconstruct(raw, is_word=tok.vocab.__contains__, classify=classify_paragraph).to_pylist()
    assert not any(" \u25cf " in e["text"] for e in els)
    items = [e["text"] for e in els if e["type"] == "ListItem"]
    for text in ("What are product types?", "What challenges may arise in development?", "Case study",
                 "Prototyping methodologies", "Who should lead the development?"):
        assert text in items
    def alpha(texts):
        return set(re.findall(r"[A-Za-z]+", " ".join(texts)))

    assert alpha(e["text"] for e in els) >= alpha(raw["text"].to_pylist())  # nothing lost
