"""Text reconstruction for paged formats: printed lines back into paragraphs, real headings only.

Why: a PDF holds positioned lines, not paragraphs. unstructured's ``fast`` PDF partitioner groups
lines with pdfminer's layout analysis, which works for tightly set text but returns one element per
printed line once the line spacing is a little wider (1.6x the font size is enough), and its text
classifier then calls some wrapped body lines ``Title`` (a short last line, a line without a
verb). Chunked as they come, such documents turn into mid-sentence fragments under false headings,
and retrieval on real files falls below a naive whole-text script.

What ``reconstruct`` does to one document's elements, in order:

1. **Same-line pieces** (a section number and its heading, table header cells) are joined
   left to right into one line.
2. **Furniture** is dropped: lines without a letter or digit (``· · · ·``, rules), letter-spaced
   or rotated stamps (``1 2 0 2 n u J``), short lines repeated on half the pages, or on half the
   pages of one parity, with numbers that are constant or follow the page number (running headers
   and footers, ``_running_lines``), a head printed once that carries its page's number
   (``_page_heads``: a two-page paper, a one-page excerpt), and, once lines are joined, numbers
   standing alone (page numbers, axis ticks). A ``Header``/``Footer`` that is *not* repeated and
   carries no page number is content (a one-page document's title is often classified ``Header``).
3. **Lines are joined into paragraphs** when they continue each other: same page and column,
   the same font height, a vertical gap no larger than the document's own line spacing, and
   aligned left edges; or, across a page or column break, when the first ends mid-sentence and the
   second starts in lower case. A short line ending a sentence ends its paragraph, and a
   bulleted item (one the partitioner found a bullet on) starts one. A list item that holds
   further bullets (pdfminer set several items in one text box) is one item each.
4. **End-of-line hyphenation** is undone where the joined word is a word (it occurs elsewhere in
   the document or in the model's vocabulary: ``infor-`` + ``mation``); otherwise the hyphen is
   kept and the space dropped (``diffusion-`` + ``weighted`` -> ``diffusion-weighted``).
5. **Paragraphs are classified** once joined: the PDF partitioner leaves printed lines
   ``UncategorizedText`` (``parsing._lines_left_unclassified``; position, bullets and patterns
   still make Headers, Footers and ListItems), and a joined paragraph that could be a heading is
   put to unstructured's own narrative and title tests (``classify``); a longer one is body text.
6. **Heading guard**: a ``Title`` that reads as a sentence fragment (starts in lower case, ends
   with a comma, semicolon, hyphen or a function word, holds a sentence break, is long, or is a
   figure/table caption), or that was printed as a cell of a table row (``_mark_table_cells``),
   becomes body text. A numbered line the partitioner called a list item
   (``2. Methods``) is a heading when it reads as one and stands alone between paragraphs.
7. **Heading levels** come from section numbers: a PDF says nothing of levels (DOCX and HTML
   do), so a numbered heading's number gives its depth (``2.1 Data`` under ``2. Results``, or
   ``A. Data`` under ``II. Results`` in a document numbered the IEEE way) and the
   heading path keeps every section a passage is in. Among numbered headings an unnumbered one
   is placed by its printed size against theirs: as large as the top-level ones (References) it
   is a section of its own, smaller it sits under the numbered heading before it
   (``_heading_depths``). In a document without numbers headings have no level.

Elements without coordinates (a parse cached before they were recorded) get the text rules only.
The geometry thresholds are relative to each document's own line heights and spacing, not to
one file set.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import pyarrow as pa

from ingest_platform.schemas import ELEMENTS, conform

# Formats whose elements are positioned lines on pages.
PAGED_FORMATS = frozenset({"pdf"})

TEXT_TYPES = frozenset({"NarrativeText", "UncategorizedText", "Title", "ListItem", "Text", "Header", "Footer",
                        "FigureCaption", "Address", "EmailAddress"})
FURNITURE_TYPES = frozenset({"Header", "Footer", "PageNumber", "PageBreak"})

_TERMINAL = re.compile(r"[.!?\u2026:][\"'\u201d\u2019)\]]*$")
_SYMBOL_BULLET = re.compile(r"^\s*[\u2022\u25cf\u25aa\u25e6\u2023\u2043\u2219\-\*\u2013\u2014\u00b7]\s")
_NUMBERED = re.compile(r"^\s*(\(?\d{1,2}[.)]\s|\(?[a-z][.)]\s|[ivx]{1,4}[.)]\s)")
_BULLET = re.compile(f"{_SYMBOL_BULLET.pattern}|{_NUMBERED.pattern}")
_NUMERIC = re.compile(r"^[\d\s.,:;/()\-\u2013\u2014%+]*$")
_WORD = re.compile(r"[A-Za-z]+")
_CAPTION = re.compile(r"^(fig\.?|figure|table|tab\.|chart|plate|exhibit)\s*\d", re.I)
_INNER_SENTENCE = re.compile(r"[a-z]{2,}[.!?]\s+[A-Z][a-z]")
# A heading does not end on these: a line that does was cut out of a sentence.
_FUNCTION_WORDS = frozenset(
    "a an and as at by for from in into of on or than that the to with without via versus vs".split()
)
_SOFT_HYPHEN_IN_BOX = re.compile(r"([A-Za-z]{2,})- ([a-z]{2,})")
_NOT_A_WRAP = frozenset({"and", "or", "nor", "to", "und", "bis"})  # "pre- and post-operative"

# Typographic ligatures (U+FB00..FB06) as the letters they stand for: "eﬃcient" is "efficient".
_LIGATURE_TEXT = {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
                  "\ufb05": "st", "\ufb06": "st"}
_LIGATURES = re.compile("[\ufb00-\ufb06]")

# A heading is a line or two, never a paragraph.
MAX_HEADING_WORDS = 16
MAX_HEADING_CHARS = 120


@dataclass
class _El:
    type: str
    text: str
    row: dict
    page: int | None
    box: tuple[float, float, float, float] | None  # x0, y0 (top), x1, y1 (bottom)
    cell: bool = False  # printed in a table row (``_mark_table_cells``): never a heading

    @property
    def height(self) -> float | None:
        return None if self.box is None else self.box[3] - self.box[1]


def reconstruct(elements: pa.Table, *, is_word: Callable[[str], bool] | None = None,
                classify: Callable[[str], str] | None = None) -> pa.Table:
    """One paged document's ``ELEMENTS`` rows with lines joined into paragraphs (module docstring).

    Parameters
    ----------
    elements:
        The document's elements in reading order (an ``ELEMENTS`` table).
    is_word:
        ``f(lower-case word) -> bool``, consulted to undo end-of-line hyphenation besides the
        document's own words; typically membership in the embedding model's vocabulary.
    classify:
        ``f(paragraph text) -> element type`` for paragraphs the partitioner left
        ``UncategorizedText`` (PDF lines are not classified one by one); only short paragraphs
        that could be headings are asked, the rest are body text. Typically
        ``parsing.classify_paragraph``.

    Returns
    -------
    pyarrow.Table
        ``ELEMENTS`` rows, renumbered; a merged element keeps its first line's metadata, with the
        box grown to cover every line.

    Example
    -------
    >>> reconstruct(parsed_pdf_elements, is_word=lambda w: w in tokenizer.vocab)
    """
    els, seen = [], set()
    for r in elements.to_pylist():
        e = _El(r.get("type") or "UncategorizedText", _LIGATURES.sub(lambda m: _LIGATURE_TEXT[m.group()], r.get("text") or ""),
                r, r.get("page_number"), _box(r))
        key = (e.text, e.page, e.box)
        if e.box is not None and key in seen:
            continue  # the same line reported twice
        seen.add(key)
        els.append(e)
    _mark_table_cells(els)
    els = _join_same_line(els)
    els = _drop_furniture(els)
    vocabulary = _document_words(els)

    def word(w: str) -> bool:
        w = w.lower()
        return w in vocabulary or bool(is_word and is_word(w))

    els = [replace(e, text=_dehyphenate_inside(e.text, word)) for e in els]
    els = _join_paragraphs(els, word)
    # Numbers standing alone once lines are joined (page numbers, axis ticks): a number that ends
    # a wrapped sentence was joined to it above.
    els = [e for e in els if not (e.type in TEXT_TYPES and _NUMERIC.match(e.text.strip()) and len(e.text.strip()) <= 12)]
    els = _split_inline_bullets(els)
    for e in els:
        if e.type == "UncategorizedText" and classify is not None:
            e.type = "NarrativeText" if is_fragment(e.text) or e.cell else classify(e.text)
        if e.type == "Title" and (is_fragment(e.text) or e.cell):
            e.type = "NarrativeText"
    for i, e in enumerate(els):
        if e.type == "ListItem" and _numbered_heading(e, els[i - 1] if i else None, els[i + 1] if i + 1 < len(els) else None):
            e.type = "Title"
    depths = _heading_depths(els)
    rows = []
    for i, e in enumerate(els):
        row = dict(e.row, type=e.type, text=e.text, element_index=i)
        if e.type == "Title" and row.get("category_depth") is None:
            row["category_depth"] = depths.get(i)
        if e.box is not None:
            row.update(x0=e.box[0], y0=e.box[1], x1=e.box[2], y1=e.box[3])
        rows.append(row)
    if not rows:
        return ELEMENTS.empty_table()
    return conform(pa.Table.from_pylist(rows, schema=ELEMENTS), ELEMENTS)


# A section number ("2", "2.1", "2.1.3", a final dot or not) before a heading's words.
_SECTION_NUMBER = re.compile(r"^\s*(\d{1,2}(?:\.\d{1,2}){0,4})\.?\s+\S")


# The IEEE style: sections I., II., ...; subsections A., B.; below them 1), 2).
_ROMAN_NUMBER = re.compile(r"^\s*(?=[IVX])(X{0,3}(?:IX|IV|V?I{0,3}))\.\s+\S")
_LETTER_NUMBER = re.compile(r"^\s*[A-Z]\.\s+\S")
_PAREN_NUMBER = re.compile(r"^\s*\d{1,2}\)\s+\S")


def section_depth(title: str, roman: bool = False) -> int | None:
    """A numbered heading's level from its number: ``2. Results`` 0, ``2.1 Data`` 1,
    ``2.1.3 Night trials`` 2; None for a heading without one. In a document numbered the IEEE
    way (``roman``): ``II. Methods`` 0, ``A. Data`` 1, ``1) Night trials`` 2."""
    if roman:
        for depth, pattern in enumerate((_ROMAN_NUMBER, _LETTER_NUMBER, _PAREN_NUMBER)):
            if pattern.match(title):
                return depth
        return None
    m = _SECTION_NUMBER.match(title)
    return None if m is None else m.group(1).count(".")


def _heading_depths(els: list[_El]) -> dict[int, int]:
    """Heading levels of a document whose headings carry section numbers, by element position.

    A numbered heading's level is its number's (``section_depth``: ``2.1``, or ``II.`` / ``A.``
    in a document with two or more Roman section numbers). An unnumbered one (Abstract,
    References, or a paragraph heading inside a section) is placed by its printed size, measured
    against the numbered headings': as large as the top-level ones, it is a section of its own
    (level 0); as large as those of a deeper level, it is at that level; smaller than any, it is a
    child of the numbered heading before it. Without sizes it is a section of its own. A document
    without numbered headings gets no levels here (each heading replaces the one before).
    """
    titles = {i: e.text for i, e in enumerate(els) if e.type == "Title"}
    # Roman section numbers only when there are two of them (a lone "I. Smith" is a name).
    roman = len({m.group(1) for t in titles.values() if (m := _ROMAN_NUMBER.match(t))}) >= 2
    numbered = {i: d for i, t in titles.items() if (d := section_depth(t, roman)) is not None}
    if not numbered:
        return {}
    sizes: dict[int, list[float]] = {}
    for i, d in numbered.items():
        if els[i].height:
            sizes.setdefault(d, []).append(els[i].height)
    # The lower median: a heading wrapped onto two lines has a taller box than its printed size.
    usual = {d: statistics.median_low(hs) for d, hs in sizes.items()}

    def same(h: float, ref: float) -> bool:  # one printed size, within rounding
        return abs(h - ref) <= 0.05 * ref

    depths: dict[int, int] = {}
    current = -1  # the level of the last numbered heading
    for i, e in enumerate(els):
        if i in numbered:
            depths[i] = current = numbered[i]
        elif e.type == "Title":
            h, top = e.height, usual.get(0)
            if not h or top is None or current < 0 or h > top or same(h, top):
                depths[i] = 0
            else:
                level = next((d for d in sorted(usual) if d > 0 and same(h, usual[d])), current + 1)
                depths[i] = min(level, current + 1)
    return depths


def is_fragment(title: str) -> bool:
    """Whether a line classified as a heading reads as part of a sentence instead.

    True when it starts in lower case, ends with a comma, semicolon, hyphen or a function word,
    holds a sentence break (``... abnormalities. Whole body ...``), is longer than a heading
    (``MAX_HEADING_WORDS`` words or ``MAX_HEADING_CHARS`` characters), or is a figure or table
    caption.
    """
    text = " ".join(title.split())
    if not text:
        return True
    body = _BULLET.sub("", text, count=1).lstrip("([{\"'\u201c")
    first = next((ch for ch in body if ch.isalpha()), "")
    if first and first.islower():
        return True
    if text[-1] in ",;-\u2010\u2011" or text.endswith(("\u2013", "\u2014")):
        return True
    words = text.split()
    if words[-1].lower().strip("\"'()[]") in _FUNCTION_WORDS and len(words) > 1:
        return True
    if len(words) > MAX_HEADING_WORDS or len(text) > MAX_HEADING_CHARS:
        return True
    if _INNER_SENTENCE.search(text):
        return True
    return bool(_CAPTION.match(text))


# ---- steps --------------------------------------------------------------------------------------


def _box(row: dict) -> tuple[float, float, float, float] | None:
    vals = (row.get("x0"), row.get("y0"), row.get("x1"), row.get("y1"))
    if any(v is None for v in vals):
        return None
    x0, y0, x1, y1 = (float(v) for v in vals)
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _same_line(a: _El, b: _El) -> bool:
    """``b`` sits to the right of ``a`` on the same printed line (their vertical extents overlap
    by most of the smaller one)."""
    if a.box is None or b.box is None or a.page != b.page:
        return False
    overlap = min(a.box[3], b.box[3]) - max(a.box[1], b.box[1])
    smaller = min(a.height or 0, b.height or 0)
    return smaller > 0 and overlap >= 0.6 * smaller and b.box[0] >= a.box[2] - 1 and \
        max(a.height, b.height) <= 1.6 * smaller


# A table cell is a few words; a row is at least this many of them side by side.
_CELL_WORDS = 6
_ROW_CELLS = 3


def _mark_table_cells(els: list[_El]) -> None:
    """Mark the cells of tables the partitioner did not see as tables: printed pieces, before any
    joining, that share a line with at least two other short pieces side by side. Joined and
    classified, a header row reads as a heading ("Polarization resistance (Ω) Corrosion rate
    (mm/year)"); a heading beside the long lines of other columns is not in a row."""
    by_page: dict[int, list[_El]] = {}
    for e in els:
        if e.box is not None and e.type in TEXT_TYPES and e.height and len(e.text.split()) <= _CELL_WORDS:
            by_page.setdefault(e.page, []).append(e)
    for lines in by_page.values():
        lines.sort(key=lambda e: e.box[1])
        for i, e in enumerate(lines):
            row = [e]
            for other in lines[i + 1:]:
                if other.box[1] >= e.box[3]:
                    break  # sorted by top: nothing further down overlaps e
                overlap = min(e.box[3], other.box[3]) - max(e.box[1], other.box[1])
                beside = other.box[0] >= e.box[2] - 1 or other.box[2] <= e.box[0] + 1
                if beside and overlap >= 0.6 * min(e.height, other.height):
                    row.append(other)
            if len(row) >= _ROW_CELLS:
                for c in row:
                    c.cell = True


def _join_same_line(els: list[_El]) -> list[_El]:
    out: list[_El] = []
    for e in els:
        prev = out[-1] if out else None
        if prev is not None and prev.type in TEXT_TYPES and e.type in TEXT_TYPES and _same_line(prev, e):
            prev.text = f"{prev.text.rstrip()} {e.text.lstrip()}"
            prev.box = _union(prev.box, e.box)
            prev.cell = prev.cell or e.cell
            if prev.type != e.type and "Title" in (prev.type, e.type) and _is_label(prev.text):
                prev.type = "Title"  # "1" + "Introduction"
            elif prev.type != e.type:
                prev.type = "NarrativeText" if "NarrativeText" in (prev.type, e.type) else prev.type
            continue
        out.append(e)
    return out


def _is_label(text: str) -> bool:
    """A short line (a section number and its title)."""
    return len(text.split()) <= 8


def _letter_spaced(text: str) -> bool:
    tokens = text.split()
    return len(tokens) >= 3 and sum(len(t) == 1 for t in tokens) >= 0.8 * len(tokens)


def _norm(text: str) -> str:
    return re.sub(r"\d+", "#", " ".join(text.lower().split()))


def _running_lines(els: list[_El]) -> set[int]:
    """The running headers and footers: ids of short lines printed again on other pages with their
    numbers either the same (a year, a volume) or following the page number ("2 A. Author et
    al." on page 2 and "4 A. Author et al." on page 4; a journal's page 454 on the PDF's page 4),
    on at least half of the pages, or half of the pages of one parity (a book or a paper
    alternates its heads between left and right pages, so each is on every other page). Lines
    that differ only in numbers that do not follow the page ("Chapter 1", "Chapter 2") are content.
    A copy set in a larger type than the rest (the title a head repeats) is kept."""
    pages = {e.page for e in els if e.page is not None}
    if len(pages) < 2:
        return set()
    groups: dict[str, list[_El]] = {}
    for e in els:
        if e.type in TEXT_TYPES and len(e.text) <= 100 and e.page is not None:
            groups.setdefault(_norm(e.text), []).append(e)
    by_parity = [{p for p in pages if p % 2 == parity} for parity in (0, 1)]
    out: set[int] = set()
    for group in groups.values():
        on = {e.page for e in group}
        if len(on) < 2:
            continue
        halves = [2 * len(on) >= len(pages)] + [on <= ps and 2 * len(on) >= len(ps) for ps in by_parity]
        if not any(halves):
            continue
        numbers = [[int(n) for n in re.findall(r"\d+", e.text)] for e in group]
        if not all(len({ns[i] for ns in numbers}) == 1 or len({ns[i] - e.page for ns, e in zip(numbers, group)}) == 1
                   for i in range(len(numbers[0]))):
            continue
        heights = sorted(e.height for e in group if e.height)
        usual = heights[len(heights) // 2] if heights else None
        out.update(id(e) for e in group if not (usual and e.height and e.height > 1.3 * usual))
    return out


_EDGE_NUMBER = re.compile(r"^(\d{1,4})\s+\S|\S\s+(\d{1,4})$")
_PAGE_RANGE = re.compile(r"(\d{1,5})\s*[\u2013\u2014-]\s*(\d{1,5})")


def _page_heads(els: list[_El]) -> set[int]:
    """Running heads printed once (a two-page paper's "2 Z. Shen et al.", a one-page excerpt's
    "454 O. Sanni / Data in Brief 22 (2019) 451-457"), which repetition cannot find: the ids of
    lines that open their page, short, set apart from the line below by more than their own height
    and more than the document's paragraph break (a double-spaced page's first line is not), and
    led or ended by the page's number, which is the PDF's page (from page 2 on) or lies within a
    page range printed on the same line. A section heading that opens a page with the page's
    number sits on its paragraph, closer than that."""
    layout = _layout(els)
    apart = max(1.0, layout.line_gap + 0.35) if layout else 1.0  # in the head's own heights
    out: set[int] = set()
    by_page: dict[int, list[_El]] = {}
    for e in els:
        if e.box is not None and e.page is not None and e.height:
            by_page.setdefault(e.page, []).append(e)
    for page, lines in by_page.items():
        top = min(lines, key=lambda e: e.box[1])
        text = top.text.strip()
        m = _EDGE_NUMBER.search(text)
        if top.type not in TEXT_TYPES or m is None or len(text) > 100:
            continue
        number = int(m.group(1) or m.group(2))
        rest = text[m.end(1):] if m.group(1) else text[:m.start(2)]
        in_range = any(int(a) <= number <= int(b) for a, b in _PAGE_RANGE.findall(rest))
        if not (in_range or (page >= 2 and number == page)):
            continue
        below = [e.box[1] for e in lines if e is not top and e.box[1] >= top.box[3] - 0.5 * top.height]
        if below and min(below) - top.box[3] > apart * top.height:
            out.add(id(top))
    return out


# Bullet glyphs (a hyphen, a dash or a middle dot inside a line is text).
_INLINE_BULLET = re.compile(r"\s+[\u2022\u25cf\u25aa\u25e6\u2023\u2043\u25a0\u25ba\u27a2]\s+")


def _split_inline_bullets(els: list[_El]) -> list[_El]:
    """Items printed in one text box, "What are product types? ● What challenges arise?", one
    list item each. pdfminer groups closely set lines into a box and unstructured makes a box one
    element: a list item, its first bullet taken off and the others left inside. Only list items
    are split: in running text a bullet can be an operator ("6 Ω • cm2")."""
    out: list[_El] = []
    for e in els:
        parts = _INLINE_BULLET.split(e.text) if e.type == "ListItem" else [e.text]
        parts = [part.strip() for part in parts if part.strip()]
        out += [replace(e, text=part) for part in parts] if len(parts) > 1 else [e]
    return out


def _drop_furniture(els: list[_El]) -> list[_El]:
    running = _running_lines(els) | _page_heads(els)
    out = []
    for e in els:
        if e.type not in TEXT_TYPES:
            if e.type not in FURNITURE_TYPES:
                out.append(e)
            continue
        text = e.text.strip()
        if not any(ch.isalnum() for ch in text):
            continue  # rules, dot leaders, ornaments
        if _letter_spaced(text):
            continue  # rotated or letter-spaced stamps
        if id(e) in running:
            continue  # running headers and footers
        if e.type in FURNITURE_TYPES:  # not repeated: content, as a heading when it reads as one
            e.type = "Title" if not is_fragment(text) else "NarrativeText"
        out.append(e)
    return out


def _numbered_heading(e: _El, prev: _El | None, nxt: _El | None) -> bool:
    """A numbered line the partitioner called a list item that is a section heading ("2. Methods"):
    short, not a sentence, not a fragment, and alone (neither neighbour is a list item: a list is a
    run of items, a numbered heading stands between paragraphs)."""
    text = e.text.strip()
    return (bool(_NUMBERED.match(text)) and len(text) <= MAX_HEADING_CHARS and len(text.split()) <= MAX_HEADING_WORDS
            and not _ends_sentence(text) and not is_fragment(text)
            and all(n is None or n.type != "ListItem" for n in (prev, nxt)) and nxt is not None)


def _document_words(els: list[_El]) -> set[str]:
    words: set[str] = set()
    for e in els:
        words.update(w.lower() for w in _WORD.findall(e.text))
    return words


def _join_hyphenated(left: str, right: str, word: Callable[[str], bool]) -> str | None:
    """``left`` ending in ``letter-`` followed by ``right``: the joined text, or None if it is no
    hyphenation."""
    m = re.search(r"([A-Za-z]+)-$", left)
    n = re.match(r"([a-z]+)", right)
    if not m or not n or n.group(1) in _NOT_A_WRAP:
        return None
    if word(m.group(1) + n.group(1)):
        return left[:-1] + right  # infor- + mation
    return left + right  # diffusion- + weighted


def _dehyphenate_inside(text: str, word: Callable[[str], bool]) -> str:
    """Lines pdfminer already joined inside one box keep a ``word- word`` seam; close it."""
    def fix(m: re.Match) -> str:
        if m.group(2) in _NOT_A_WRAP:
            return m.group(0)
        joined = m.group(1) + m.group(2)
        return joined if word(joined) else f"{m.group(1)}-{m.group(2)}"

    return _SOFT_HYPHEN_IN_BOX.sub(fix, text)


def _union(a, b):
    if a is None or b is None:
        return a or b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


@dataclass
class _Layout:
    """The document's own typography: the gap between the lines of one paragraph."""

    line_gap: float
    lines: list  # every positioned text line: for column right edges

    def right_edge(self, line: "_El", x0: float) -> float:
        """Where the lines of ``line``'s column end (80th percentile of their right edges)."""
        h = line.height or 0
        edges = sorted(e.box[2] for e in self.lines if e.page == line.page and abs(e.box[0] - x0) <= 2.5 * h)
        return edges[int(0.8 * (len(edges) - 1))] if edges else line.box[2]


def _layout(els: list[_El]) -> _Layout | None:
    lines = [e for e in els if e.box is not None and e.type in TEXT_TYPES and e.height]
    if not lines:
        return None
    gaps = []
    for a, b in zip(lines, lines[1:]):
        if a.page == b.page and abs(a.height - b.height) <= 0.2 * max(a.height, b.height) and b.box[1] > a.box[1]:
            gaps.append((b.box[1] - a.box[3]) / a.height)
    gaps = [g for g in gaps if -0.5 <= g <= 3]
    # The most common gap between consecutive lines of one size, in line heights, is the gap
    # inside a paragraph (paragraph breaks are rarer and larger).
    return _Layout(_mode(gaps) if gaps else 0.5, lines)


def _mode(values: list[float]) -> float:
    """The median of the most populated bin of a tenth of a line height (ties: the smaller)."""
    bins = Counter(round(v * 10) for v in values)
    top = max(bins.values())
    best = min(b for b, n in bins.items() if n == top)
    return statistics.median(v for v in values if round(v * 10) == best)


def _ends_sentence(text: str) -> bool:
    return bool(_TERMINAL.search(text.rstrip()))


def _starts_lower(text: str) -> bool:
    first = next((ch for ch in text.lstrip() if ch.isalnum()), "")
    return bool(first) and first.islower()


def _continues(prev: _El, e: _El, layout: _Layout | None, para_x0: float | None) -> bool:
    """Whether ``e`` is the next printed line of the paragraph whose last line is ``prev``.

    A line wraps because it ran out of room: the next line's first word would not have fitted at
    its end. So besides matching geometry (same page and column, same font height, the document's
    own line gap), ``prev`` must have been wrapped, or end mid-sentence with ``e`` going on in
    lower case.
    """
    prev_text, text = prev.text.rstrip(), e.text.lstrip()
    if prev.type not in TEXT_TYPES or e.type not in TEXT_TYPES or _SYMBOL_BULLET.match(text):
        return False  # a table, an image, a new bulleted item
    if _NUMBERED.match(text) and (_ends_sentence(prev_text) or _NUMBERED.match(prev.row.get("text") or prev_text)):
        return False  # a numbered point (after a finished sentence, or after another point);
        # "64) were analyzed" after "... (n =" is the same sentence going on
    carries_on = not _ends_sentence(prev_text) and _starts_lower(text)
    if e.type == "ListItem" and (_ends_sentence(prev_text) or prev.type == "ListItem" or not _NUMBERED.match(text)):
        return False  # the partitioner saw an item marker (a bullet it took off, or a number after a done line)
    # Across a page or column break the geometry says nothing: only the text can.
    if layout is None or prev.box is None or e.box is None or prev.page != e.page:
        return carries_on
    h_prev, h = prev.height, e.height
    if not h or not h_prev or abs(h - h_prev) > 0.25 * max(h, h_prev):
        return False  # another font size: a heading, a caption, a footnote
    gap = (e.box[1] - prev.box[3]) / h_prev
    if gap < -0.5:  # above the previous line: the top of another column
        return carries_on
    if gap > layout.line_gap + 0.35:
        return False  # a paragraph break
    x0 = para_x0 if para_x0 is not None else prev.box[0]
    overlap = min(prev.box[2], e.box[2]) - max(prev.box[0], e.box[0])
    if overlap <= 0 or abs(e.box[0] - x0) > 2.5 * h:
        return False  # another column or an indented block
    right = layout.right_edge(prev, x0)
    # The line was wrapped if the next line's first word would not have fitted at its end (a
    # short line before a long word is still a wrapped one; a short line before "To" is not).
    char_w = (prev.box[2] - prev.box[0]) / max(1, len(prev_text))
    first_word = text.split()[0] if text.split() else ""
    wrapped = prev.box[2] + char_w * (len(first_word) + 1) > right - 0.5 * h
    # A heading of the body's size over its first line is neither wrapped nor cut mid-sentence:
    # it stays apart by this rule alone, whatever the partitioner called it.
    return wrapped or carries_on


def _join_paragraphs(els: list[_El], word: Callable[[str], bool]) -> list[_El]:
    layout = _layout(els)
    out: list[_El] = []
    para_x0: float | None = None
    last_line: _El | None = None  # the paragraph's last printed line (its geometry)
    for e in els:
        prev = out[-1] if out else None
        if prev is not None and last_line is not None and _continues(last_line, e, layout, para_x0):
            joined = _join_hyphenated(prev.text.rstrip(), e.text.lstrip(), word)
            prev.text = joined if joined is not None else f"{prev.text.rstrip()} {e.text.lstrip()}"
            prev.box = _union(prev.box, e.box)
            if prev.type != e.type:
                prev.type = "ListItem" if prev.type == "ListItem" else "NarrativeText"
            last_line = replace(e, type=prev.type)
            continue
        out.append(e)
        para_x0 = e.box[0] if e.box is not None else None
        last_line = replace(e)
    return out


__all__ = ["PAGED_FORMATS", "reconstruct", "is_fragment"]
