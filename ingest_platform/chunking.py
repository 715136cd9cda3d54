"""Structure-aware chunking: parsed elements in, embedding-sized chunks out.

Why structure-aware: a retrieval hit is only useful if the chunk reads as a unit, so chunks follow the
document's sections (a Title opens one), keep paragraphs, lists and table rows whole where they fit,
and only fall back to sentence and then token boundaries when something is larger than the limit.

Sizes are counted in the embedding model's own word pieces (``add_special_tokens=False``) because
that is what the model truncates on. Packing adds up per-sentence token counts. For a BERT-style
word-piece tokenizer (whitespace-splitting pre-tokenizer, per-character normalizer) that sum is
exactly the count of the joined text, since pieces are always joined with whitespace; for any other
tokenizer every finished chunk is counted again and one over the limit is re-split at token
boundaries, so ``token_count <= max_tokens`` holds whatever the tokenizer.

Overlap is made of whole sentences: when a section continues into a new chunk, that chunk opens
with the previous chunk's last sentences worth at most ``overlap_tokens``, dropped again (oldest
first) if the content that follows needs the room. Titles, table rows and pieces of over-long
sentences are never repeated.

Tokenizer calls are batched (one per document for all its sentences and table rows) because
per-call overhead, not tokenization, dominates on corpora of many small documents.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import re
import weakref
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from typing import Any, Sequence

import pyarrow as pa

from ingest_platform.schemas import CHUNKS

log = logging.getLogger(__name__)

# Page furniture repeated on every page: it carries no content and would pollute every chunk.
NOISE_TYPES = frozenset({"Header", "Footer", "PageNumber", "PageBreak"})
TITLE_TYPE = "Title"
LIST_TYPE = "ListItem"
TABLE_TYPE = "Table"
HEADING_SEP = " > "
CELL_SEP = " | "

# What a piece of chunk text is; decides whether it may be repeated as overlap and whether a
# buffer holding it is worth emitting.
_HEADER = 0  # section title text, emitted with the first body of its section
_BODY = 1  # a whole sentence (or list item): may be repeated as overlap
_FRAGMENT = 2  # part of a sentence longer than the limit: never repeated as overlap
_ROW = 3  # a rendered table row
_OVERLAP = 4  # a copy of the previous chunk's tail sentences

# A sentence ends at . ! ? or an ellipsis (optionally followed by closing quotes or brackets) before
# whitespace and a character that is not a lower-case letter ("e.g. the" does not end one); a blank
# line always ends one; CJK full stops need no following space. A single line break is a candidate
# only: ``_line_ends_sentence`` decides (a wrapped line is not a sentence end).
_SENTENCE_BREAK = re.compile(
    r"[.!?\u2026][\"'\u201d\u2019)\]]{0,2}([ \t\u00a0]*\n?[ \t\u00a0]*)(?<=\s)(?=[^\sa-z])"
    r"|([ \t\u00a0]*\n\s*)"
    r"|[\u3002\uff01\uff1f]()(?=\S)"
)
# What opens a new line of its own: a list marker, a numbered point, a table-ish cell row.
_LINE_OPENER = re.compile(r"[\u2022\u25cf\u25aa\u25e6\-\*\u2013\u2014\u00b7>#|]\s|\(?\d{1,3}[.)]\s|\(?[a-zA-Z][.)]\s")
# A line shorter than this that is followed by one starting in upper case is a line of its own
# (a heading, an address line, a signature), not a wrapped one.
_SHORT_LINE = 50
_WS = re.compile(r"\s+")


@dataclass(slots=True)
class _Element:
    type: str
    text: str
    html: str | None
    page: int | None
    depth: int | None
    languages: list[str] | None
    last_modified: str | None
    created: str | None


@dataclass(slots=True)
class _Piece:
    text: str
    ntok: int
    sep: str  # joins it to the previous piece of the same chunk
    src: int  # index of the element it came from
    kind: int


@dataclass
class _Block:
    kind: str  # "text", "list" (a run of ListItems) or "table"
    elems: list[int]


@dataclass
class _Section:
    heading_path: str
    titles: list[int] = field(default_factory=list)
    blocks: list[_Block] = field(default_factory=list)


@dataclass
class _Draft:
    pieces: list[_Piece]
    heading_path: str

    def text(self) -> str:
        return "".join((p.sep + p.text) if i else p.text for i, p in enumerate(self.pieces))


# ---- public API ---------------------------------------------------------------------------------


def chunk_elements(
    elements: pa.Table,
    *,
    doc_id: str,
    doc_version: str,
    tokenizer: Any,
    max_tokens: int,
    overlap_tokens: int,
    min_tokens: int = 0,
) -> pa.Table:
    """Chunk one document's ``ELEMENTS`` rows into a ``CHUNKS`` table (see the module docstring).

    Parameters
    ----------
    elements:
        One document's elements in reading order (paged formats after ``reconstruct``).
    doc_id, doc_version:
        Copied onto every chunk; the chunk id is derived from them.
    tokenizer:
        The embedding model's tokenizer: sizes are counted in its word pieces.
    max_tokens:
        No chunk is longer (the model truncates beyond its window).
    overlap_tokens:
        A budget of whole sentences repeated at the start of the next chunk when a section spans
        several chunks; capped at half of ``max_tokens`` so chunks always advance.
    min_tokens:
        A chunk smaller than this is merged with a neighbour (same section first, then the
        adjacent section, as unstructured's ``chunk_by_title`` combines small sections), or takes
        whole sentences from its section neighbour; a document smaller than this is one chunk.

    Returns
    -------
    pyarrow.Table
        ``CHUNKS`` rows in document order.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    overlap_tokens = max(0, min(overlap_tokens, max_tokens // 2))
    elems = _read_elements(elements)
    if not elems:
        return CHUNKS.empty_table()
    sections = _build_sections(elems)
    pieces = _prepare_pieces(elems, sections, tokenizer, max_tokens)
    packer = _Packer(max_tokens, overlap_tokens)
    for section in sections:
        packer.section(section, pieces)
    if min_tokens > 0:
        drafts = _merge_small(packer.drafts, min(min_tokens, max_tokens // 2), max_tokens, tokenizer)
    else:
        drafts = packer.drafts
    texts, counts, drafts = _finalize(drafts, tokenizer, max_tokens)
    return _to_table(texts, counts, drafts, elems, doc_id, doc_version)


def undersized(chunks: pa.Table, min_tokens: int) -> tuple[int, int]:
    """``(fragments, small documents)`` of a chunks table (``doc_id``, ``token_count``): chunks under
    ``min_tokens`` in documents that are larger (what the chunker must never emit), and documents
    smaller than ``min_tokens`` altogether (kept whole, one chunk each, as they should be)."""
    import pyarrow.compute as pc

    totals = chunks.group_by("doc_id").aggregate([("token_count", "sum")])
    small_docs = totals.filter(pc.less(totals["token_count_sum"], min_tokens))["doc_id"]
    in_small = pc.is_in(chunks["doc_id"], value_set=small_docs)
    short = pc.less(chunks["token_count"], min_tokens)
    return int(pc.sum(pc.and_(short, pc.invert(in_small))).as_py() or 0), len(small_docs)


def count_tokens(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Word pieces per text, without special tokens, in one batched call.

    Equal to ``len(tokenizer(text, add_special_tokens=False).input_ids)``; for a fast tokenizer it
    goes straight to a private copy of the Rust backend (with the truncation and padding that model
    files often preset switched off), which is about twice as fast as the transformers wrapper.
    """
    if not texts:
        return []
    backend = _counting_backend(tokenizer)
    if backend is not None:
        return [len(e.ids) for e in backend.encode_batch_fast(list(texts), add_special_tokens=False)]
    enc = tokenizer(
        list(texts),
        add_special_tokens=False,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )
    return [len(ids) for ids in enc["input_ids"]]


_BACKENDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _counting_backend(tokenizer: Any) -> Any | None:
    try:
        return _BACKENDS[tokenizer]
    except (KeyError, TypeError):
        pass
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        backend = copy.deepcopy(backend)
        backend.no_truncation()
        backend.no_padding()
    else:
        backend = None
    try:
        _BACKENDS[tokenizer] = backend
    except TypeError:  # not weak-referenceable: just do not cache
        pass
    return backend


def counts_are_additive(tokenizer: Any) -> bool:
    """Whether the count of whitespace-joined texts is the sum of their counts.

    True for BERT-style word-piece tokenizers: their pre-tokenizer splits on whitespace and the
    normalizer works per character, so no token spans a join. Packing relies on sums either way;
    this only decides whether finished chunks must be re-counted to keep the limit a guarantee.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    normalizer = type(backend.normalizer).__name__ if backend.normalizer is not None else None
    return (
        type(backend.model).__name__ == "WordPiece"
        and type(backend.pre_tokenizer).__name__ in _ADDITIVE_PRE_TOKENIZERS
        and normalizer in _ADDITIVE_NORMALIZERS
    )


_ADDITIVE_PRE_TOKENIZERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}
_ADDITIVE_NORMALIZERS = {None, "BertNormalizer", "Lowercase", "NFD", "NFC", "NFKC", "NFKD", "StripAccents"}


def _line_ends_sentence(text: str, start: int, end: int) -> bool:
    """Whether the line break ``text[start:end]`` ends a sentence.

    A blank line does. A single break does where the next line opens a list item or numbered
    point, or where the line before it is short and the next starts with something other than a
    lower-case letter (a heading, an address line). Otherwise the line was wrapped: the sentence
    goes on (text from hard-wrapped files and e-mails)."""
    gap = text[start:end]
    if gap.count("\n") > 1:
        return True
    line_start = text.rfind("\n", 0, start) + 1
    line = text[line_start:start].strip()
    rest = text[end:end + 8]
    if _LINE_OPENER.match(rest):
        return True
    return len(line) < _SHORT_LINE and not rest[:1].islower()


def split_sentences(text: str) -> list[tuple[str, str]]:
    """``(sentence, separator before it)`` pairs; the separator keeps line breaks as ``"\\n"``.

    Sentences end at sentence punctuation and at line breaks that end a line of its own
    (``_line_ends_sentence``); a wrapped line stays inside its sentence."""
    out: list[tuple[str, str]] = []
    pos, sep = 0, ""
    for m in _SENTENCE_BREAK.finditer(text):
        group = 1 if m.group(1) is not None else 2 if m.group(2) is not None else 3
        start, end = m.span(group)  # the whitespace between sentences; the punctuation stays
        if group == 2 and not _line_ends_sentence(text, start, end):
            continue
        sentence = text[pos:start].strip()
        if sentence:
            out.append((sentence, sep))
            sep = ""
        gap = m.group(group)
        sep = "\n" if "\n" in gap or sep == "\n" else (" " if gap or sep == " " else "")
        pos = end
    tail = text[pos:].strip()
    if tail:
        out.append((tail, sep))
    if out:
        out[0] = (out[0][0], "")
    return out


def table_rows(text: str, html: str | None) -> tuple[list[str], list[str]]:
    """``(header rows, body rows)`` rendered as ``"a | b | c"`` lines (see ``table_cells``)."""
    head, body = table_cells(text, html)
    return [_render_row(r) for r in head], [_render_row(r) for r in body]


def table_cells(text: str, html: str | None) -> tuple[list[list[str]], list[list[str]]]:
    """``(header rows, body rows)``, each row a list of cell texts.

    The HTML is used when present because it is the only place the row/cell structure survives;
    otherwise the text's lines are the rows (one cell each) and the first line is taken as the header.
    """
    if html and html.strip():
        parsed = _parse_html_table(html)
        if parsed is not None:
            return parsed
    lines = [_WS.sub(" ", line).strip() for line in (text or "").splitlines()]
    rows = [[line] for line in lines if line]
    if len(rows) > 1:
        return rows[:1], rows[1:]
    return [], rows


def chunk_id(doc_id: str, chunk_index: int, text: str) -> str:
    """Deterministic id: the same document, position and text always give the same id."""
    payload = f"{doc_id}\x00{chunk_index}\x00{text}".encode()
    return hashlib.sha256(payload).hexdigest()[:32]


# ---- reading and sectioning ---------------------------------------------------------------------


def _read_elements(table: pa.Table) -> list[_Element]:
    """Elements in table order, minus page furniture and elements with nothing to say."""
    n = table.num_rows
    names = set(table.column_names)

    def col(name: str) -> list:
        return table.column(name).to_pylist() if name in names else [None] * n

    types, texts, htmls = col("type"), col("text"), col("text_as_html")
    pages, depths, langs = col("page_number"), col("category_depth"), col("languages")
    modified, created = col("last_modified"), col("created")
    out = []
    for i in range(n):
        etype = types[i] or "UncategorizedText"
        text = texts[i] or ""
        html = htmls[i] if etype == TABLE_TYPE else None
        if etype in NOISE_TYPES or not (text.strip() or (html and html.strip())):
            continue
        out.append(_Element(etype, text, html, pages[i], depths[i], langs[i] or None, modified[i], created[i]))
    return out


def _build_sections(elems: list[_Element]) -> list[_Section]:
    """Group elements into sections opened by Titles, tracking the heading path.

    With ``category_depth`` a title closes every open title at its depth or deeper; without it a
    title replaces the innermost open one. A title directly followed by another title (an empty
    section, e.g. a chapter heading over its first sub-heading) is carried into the next section so
    its text is not lost in a one-line chunk.
    """
    stack: list[tuple[int, str]] = []
    sections: list[_Section] = []
    current = _Section("")
    for i, e in enumerate(elems):
        if e.type == TITLE_TYPE and e.text.strip():
            _push_heading(stack, e.depth, _WS.sub(" ", e.text).strip())
            carried = current.titles if not current.blocks else []
            if current.blocks:
                sections.append(current)
            current = _Section(HEADING_SEP.join(t for _, t in stack), titles=carried + [i])
        elif e.type == LIST_TYPE and current.blocks and current.blocks[-1].kind == "list":
            current.blocks[-1].elems.append(i)
        else:
            kind = "table" if e.type == TABLE_TYPE else "list" if e.type == LIST_TYPE else "text"
            current.blocks.append(_Block(kind, [i]))
    if current.blocks or current.titles:
        sections.append(current)
    return sections


def _push_heading(stack: list[tuple[int, str]], depth: int | None, title: str) -> None:
    if depth is None:
        depth = stack[-1][0] if stack else 0
        if stack:
            stack.pop()
    else:
        while stack and stack[-1][0] >= depth:
            stack.pop()
    stack.append((depth, title))


# ---- pieces: sentences, rows, and their token counts ---------------------------------------------


def _prepare_pieces(
    elems: list[_Element], sections: list[_Section], tokenizer: Any, max_tokens: int
) -> dict[int, Any]:
    """Per element: its sentence pieces, or ``(header rows, body rows)`` for a table.

    Every sentence and row of the document is counted in one tokenizer call; the rare sentence or
    row over the limit is then cut at token boundaries.
    """
    raw: dict[int, Any] = {}
    texts: list[str] = []
    for section in sections:
        for i in section.titles:
            raw[i] = _sentence_specs(elems[i].text, "\n", _HEADER, texts)
        for block in section.blocks:
            for j, i in enumerate(block.elems):
                if block.kind == "table":
                    head, body = table_cells(elems[i].text, elems[i].html)
                    raw[i] = _TableSpec(
                        [_spec(_render_row(r), "\n", _ROW, texts) for r in head],
                        [_spec(_render_row(r), "\n", _ROW, texts) for r in body],
                        _column_names(head),
                        body,
                    )
                else:
                    first_sep = "\n" if block.kind == "list" and j else "\n\n"
                    raw[i] = _sentence_specs(elems[i].text, first_sep, _BODY, texts)
    counts = count_tokens(tokenizer, texts)
    splitter = _LongSplitter(tokenizer)
    out: dict[int, Any] = {}
    for i, spec in raw.items():
        if isinstance(spec, _TableSpec):
            out[i] = _table_pieces(i, spec, texts, counts, max_tokens, splitter)
        else:
            out[i] = _materialize(i, spec, texts, counts, max_tokens, splitter)
    return out


def _spec(text: str, sep: str, kind: int, texts: list[str]) -> tuple[int, str, int]:
    texts.append(text)
    return (len(texts) - 1, sep, kind)


def _sentence_specs(text: str, first_sep: str, kind: int, texts: list[str]) -> list[tuple[int, str, int]]:
    sentences = split_sentences(text)
    return [_spec(s, sep if k else first_sep, kind, texts) for k, (s, sep) in enumerate(sentences)]


def _materialize(
    src: int, specs: list[tuple[int, str, int]], texts: list[str], counts: list[int], limit: int, splitter: _LongSplitter
) -> list[_Piece]:
    """Pieces for the specs; any over ``limit`` is cut into fragments that are not."""
    out: list[_Piece] = []
    for t, sep, kind in specs:
        if counts[t] <= limit:
            out.append(_Piece(texts[t], counts[t], sep, src, kind))
            continue
        frag_kind = _FRAGMENT if kind == _BODY else kind
        for k, (frag, n) in enumerate(splitter.split(texts[t], limit)):
            out.append(_Piece(frag, n, sep if k == 0 else " ", src, frag_kind))
    return out


@dataclass
class _TableSpec:
    head: list[tuple[int, str, int]]  # rendered header rows (specs into the document's texts)
    body: list[tuple[int, str, int]]  # rendered body rows
    names: list[str]  # per column, its header cells joined
    cells: list[list[str]]  # body rows' cells, for rows written as named cells


def _table_pieces(
    src: int, spec: _TableSpec, texts: list[str], counts: list[int], limit: int, splitter: _LongSplitter
) -> tuple[list[_Piece], list[_Piece]]:
    """Header and body row pieces, body rows fitted beside a repeated header.

    Why named cells: a value cut off from its header row means nothing to a reader or to retrieval
    ("-0.19 | 0.04"). So a row too long to fit beside the header is written as ``column: value``
    cells, cut between cells, every piece led by the row's first cell (its key). A header taking
    more than half the limit is not repeated (it would leave too little room for data); then every
    row is written that way, since no chunk would show the column names. Without column structure
    (a table known only as text lines) a long row is cut at token boundaries like a long sentence,
    and an over-long header becomes an ordinary row.
    """
    head_specs, body_specs = spec.head, spec.body
    head_tokens = sum(counts[t] for t, _, _ in head_specs)
    named = len(spec.names) > 1
    wide = bool(head_specs) and head_tokens > limit // 2
    if wide:
        head_specs, head_tokens = [], 0
        if not named:  # no columns to name values by: the header is an ordinary row
            body_specs = spec.head + body_specs
    room = limit - head_tokens
    head = _materialize(src, head_specs, texts, counts, limit, splitter)
    long_rows = [k for k, (t, _, _) in enumerate(body_specs) if named and (wide or counts[t] > room)]
    as_cells = dict(zip(long_rows, _named_rows(src, [spec.cells[k] for k in long_rows], spec.names, room, splitter)))
    body: list[_Piece] = []
    for k, row in enumerate(body_specs):
        body += as_cells[k] if k in as_cells else _materialize(src, [row], texts, counts, room, splitter)
    return head, body


def _column_names(head: list[list[str]]) -> list[str]:
    """A column's name: its header cells, top to bottom ("2023" over "Revenue": "2023 Revenue")."""
    width = max((len(r) for r in head), default=0)
    return [" ".join(r[c] for r in head if c < len(r) and r[c]) for c in range(width)]


def _named_rows(
    src: int, rows: list[list[str]], names: list[str], limit: int, splitter: _LongSplitter
) -> list[list[_Piece]]:
    """Each row as ``name: value`` cells joined by ``CELL_SEP``, packed into pieces of at most
    ``limit`` tokens, each piece after the first led by the row's key cell again.

    Token counts of all cells come from one tokenizer call; a packed piece is counted again (the
    sum is exact only for word-piece tokenizers) and one still over the limit, or a single cell
    longer than it, is cut at token boundaries.
    """
    named = [[f"{names[c]}: {v}" if c < len(names) and names[c] else v for c, v in enumerate(r) if v] for r in rows]
    flat = [cell for row in named for cell in row]
    sizes = iter(count_tokens(splitter.tokenizer, flat + [CELL_SEP.strip()]))
    cell_counts = [[next(sizes) for _ in row] for row in named]
    sep_tokens = next(sizes)
    packed: list[list[str]] = []
    for row, ns in zip(named, cell_counts):
        pieces: list[str] = []
        if row and ns[0] + sep_tokens <= limit // 2:  # the key leads every piece
            lead, lead_n, cells = row[:1], ns[0], zip(row[1:], ns[1:])
        else:
            lead, lead_n, cells = [], 0, zip(row, ns)
        cur, used = list(lead), lead_n
        for cell, n in cells:
            if len(cur) > len(lead) and used + sep_tokens + n > limit:
                pieces.append(CELL_SEP.join(cur))
                cur, used = list(lead), lead_n
            used += n + (sep_tokens if cur else 0)
            cur.append(cell)
        if cur and (len(cur) > len(lead) or not pieces):
            pieces.append(CELL_SEP.join(cur))
        packed.append(pieces)
    recount = iter(count_tokens(splitter.tokenizer, [p for pieces in packed for p in pieces]))
    out: list[list[_Piece]] = []
    for pieces in packed:
        row_out: list[_Piece] = []
        for text in pieces:
            n = next(recount)
            cuts = [(text, n)] if n <= limit else splitter.split(text, limit)
            row_out += [_Piece(cut, m, "\n", src, _ROW) for cut, m in cuts]
        out.append(row_out)
    return out


class _LongSplitter:
    """Cuts text longer than a token limit at token boundaries, preferring whitespace.

    Cut points come from the tokenizer's character offsets; each cut is re-counted, because a word
    cut in the middle can tokenize differently on its own, and re-cut tighter if it went over.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def split(self, text: str, limit: int) -> list[tuple[str, int]]:
        cuts = self._cut(text, limit)
        counts = count_tokens(self.tokenizer, cuts)
        out: list[tuple[str, int]] = []
        for cut, n in zip(cuts, counts):
            if n <= limit or len(cut) <= 1:
                out.append((cut, n))
            else:
                out.extend(self.split(cut, max(1, limit - (n - limit))))
        return out

    def _cut(self, text: str, limit: int) -> list[str]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = [o for o in enc["offset_mapping"] if o[1] > o[0]]
        pieces: list[str] = []
        start_tok, start_char = 0, 0
        while len(offsets) - start_tok > limit:
            cut_tok = _best_cut(text, offsets, start_tok, start_tok + limit)
            cut_char = offsets[cut_tok][0]
            piece = text[start_char:cut_char].strip()
            if piece:
                pieces.append(piece)
            start_tok, start_char = cut_tok, cut_char
        rest = text[start_char:].strip()
        if rest:
            pieces.append(rest)
        return pieces


def _best_cut(text: str, offsets: list[tuple[int, int]], lo: int, hi: int) -> int:
    """The last token in ``(lo, hi]`` that starts a word; ``hi`` when one word fills the window."""
    for k in range(hi, lo, -1):
        begin = offsets[k][0]
        if begin > 0 and text[begin - 1].isspace():
            return k
    return hi


# ---- packing ------------------------------------------------------------------------------------


class _Packer:
    """Greedy packing of a section's pieces into chunks of at most ``max_tokens``.

    Units (a paragraph, a list that fits, a table) move whole to the next chunk when they do not
    fit the current one; only a unit larger than a chunk is spread over chunks sentence by sentence.
    """

    def __init__(self, max_tokens: int, overlap_tokens: int) -> None:
        self.max = max_tokens
        self.overlap = overlap_tokens
        self.drafts: list[_Draft] = []
        self.buf: list[_Piece] = []
        self.used = 0
        self.path = ""

    # -- buffer helpers --
    @property
    def room(self) -> int:
        return self.max - self.used

    def _has_body(self) -> bool:
        return any(p.kind in (_BODY, _FRAGMENT, _ROW) for p in self.buf)

    def _push(self, piece: _Piece) -> None:
        self.buf.append(piece)
        self.used += piece.ntok

    def _emit(self, seed_overlap: bool) -> None:
        """Close the current chunk (if it holds more than overlap) and start the next one."""
        if self._has_body() or any(p.kind == _HEADER for p in self.buf):
            self.drafts.append(_Draft(self.buf, self.path))
        tail = self._tail() if seed_overlap and self.overlap else []
        self.buf, self.used = tail, sum(p.ntok for p in tail)

    def _tail(self) -> list[_Piece]:
        """The last whole sentences of the buffer worth at most ``overlap`` tokens."""
        tail: list[_Piece] = []
        total = 0
        for p in reversed(self.buf):
            if p.kind not in (_BODY, _OVERLAP) or total + p.ntok > self.overlap:
                break
            tail.append(replace(p, kind=_OVERLAP))
            total += p.ntok
        tail.reverse()
        return tail

    def _make_room(self, need: int) -> None:
        """Drop leading overlap sentences until ``need`` tokens fit: content beats overlap."""
        while self.room < need and self.buf and self.buf[0].kind == _OVERLAP:
            self.used -= self.buf.pop(0).ntok

    # -- units --
    def section(self, section: _Section, pieces: dict[int, Any]) -> None:
        self.path = section.heading_path
        for i in section.titles:
            for p in pieces[i]:
                self._add_piece(p)
        for block in section.blocks:
            if block.kind == "table":
                self._add_table(*pieces[block.elems[0]])
            elif block.kind == "list":
                self._add_list([pieces[i] for i in block.elems])
            else:
                self._add_unit(pieces[block.elems[0]])
        self._emit(seed_overlap=False)

    def _add_list(self, items: list[list[_Piece]]) -> None:
        """A list travels as one unit when it fits a chunk, else item by item."""
        whole = [p for item in items for p in item]
        if sum(p.ntok for p in whole) <= self.max:
            self._add_unit(whole)
        else:
            for item in items:
                self._add_unit(item)

    def _add_unit(self, unit: list[_Piece]) -> None:
        total = sum(p.ntok for p in unit)
        if total > self.room and total <= self.max:
            if self._has_body():
                self._emit(seed_overlap=True)
            self._make_room(total)
        if total <= self.room:
            for p in unit:
                self._push(p)
            return
        for p in unit:  # larger than the space a chunk has for it: sentence by sentence
            self._add_piece(p)

    def _add_piece(self, piece: _Piece) -> None:
        if piece.ntok > self.room:
            if self._has_body():
                self._emit(seed_overlap=True)
            self._make_room(piece.ntok)
            if piece.ntok > self.room:  # only a title is left and the two cannot share a chunk
                self._emit(seed_overlap=False)
        self._push(piece)

    def _add_table(self, head: list[_Piece], body: list[_Piece]) -> None:
        """A table is its own chunk when it fits; else row groups each led by the header rows."""
        if not head and not body:
            return
        if self._has_body():
            self._emit(seed_overlap=False)
        self.buf = [p for p in self.buf if p.kind != _OVERLAP]  # no sentence overlap into a table
        self.used = sum(p.ntok for p in self.buf)
        if sum(p.ntok for p in head + body) <= self.room:
            for p in head + body:
                self._push(p)
            self._emit(seed_overlap=False)
            return
        self._start_rows(head)
        for row in body:
            if row.ntok > self.room:  # rows are pre-cut to fit beside the header, so this advances
                self._emit(seed_overlap=False)
                self._start_rows(head)
            self._push(row)
        self._emit(seed_overlap=False)

    def _start_rows(self, head: list[_Piece]) -> None:
        for p in head:
            if p.ntok > self.room:  # a long title plus the header rows: give the title its own chunk
                self._emit(seed_overlap=False)
            self._push(p)


# ---- minimum size -------------------------------------------------------------------------------


def _size(d: _Draft) -> int:
    return sum(p.ntok for p in d.pieces)


def _joined(first: _Draft, second: _Draft) -> _Draft:
    """``first`` followed by ``second``; ``second``'s overlap copies of ``first``'s tail go."""
    rest = list(second.pieces)
    while rest and rest[0].kind == _OVERLAP:
        rest.pop(0)
    if rest and not rest[0].sep:
        rest[0] = replace(rest[0], sep="\n\n")
    return _Draft(first.pieces + rest, _common_path(first.heading_path, second.heading_path))


def _common_path(a: str, b: str) -> str:
    """The deepest heading both sections are under (a chunk spanning two sections cites that)."""
    common = []
    for x, y in zip(a.split(HEADING_SEP), b.split(HEADING_SEP)):
        if x != y:
            break
        common.append(x)
    return HEADING_SEP.join(common)


def _merge_small(drafts: list[_Draft], min_tokens: int, max_tokens: int, tokenizer: Any) -> list[_Draft]:
    """No chunk under ``min_tokens`` where a neighbour can take it or lend it text.

    Why: a fragment ("staging.", a lone caption, the tail of a section) carries too little to be
    retrieved for the right reason, and matches many queries for the wrong one. A small chunk is
    merged into the neighbour that leaves the smaller chunk, preferring its own section; when
    neither fits within ``max_tokens``, it takes whole sentences from the end of the previous chunk
    of its section (or the start of the next) while that one stays at ``min_tokens`` or more; when
    the sentence at that edge is too long to move whole, it takes the part it needs, cut at a word.
    """
    out = list(drafts)
    i = 0
    while len(out) > 1 and i < len(out):
        d = out[i]
        if _size(d) >= min_tokens:
            i += 1
            continue
        options = []
        for j in (i - 1, i + 1):
            if 0 <= j < len(out):
                a, b = (out[j], d) if j < i else (d, out[j])
                merged = _joined(a, b)
                if _size(merged) <= max_tokens:
                    options.append((out[j].heading_path != d.heading_path, _size(merged), j, merged))
        if options:
            _, _, j, merged = min(options, key=lambda o: o[:3])
            lo = min(i, j)
            out[lo:lo + 2] = [merged]
            i = max(0, lo - 1)  # the merged chunk may itself still be small
            continue
        _borrow(out, i, min_tokens)
        if _size(out[i]) < min_tokens:
            _borrow_part_of_a_sentence(out, i, min_tokens, tokenizer)
        i += 1
    return out


def _borrow(out: list[_Draft], i: int, min_tokens: int) -> None:
    """Move whole sentences into the small draft ``out[i]`` from its section neighbours."""
    d = out[i]
    pieces = [p for p in d.pieces if p.kind != _OVERLAP]
    for j in (i - 1, i + 1):
        if not 0 <= j < len(out) or out[j].heading_path != d.heading_path:
            continue
        donor = list(out[j].pieces)
        if j > i:
            while donor and donor[0].kind == _OVERLAP:
                donor.pop(0)
        size = sum(p.ntok for p in pieces)
        while size < min_tokens and donor:
            p = donor[-1] if j < i else donor[0]
            if p.kind != _BODY or sum(q.ntok for q in donor) - p.ntok < min_tokens:
                break
            if j < i:
                donor.pop()
                pieces.insert(0, p)
                if len(pieces) > 1 and not pieces[1].sep:
                    pieces[1] = replace(pieces[1], sep=" ")
            else:
                donor.pop(0)
                pieces.append(replace(p, sep=p.sep or " "))
            size += p.ntok
        out[j] = _Draft(donor, out[j].heading_path)
        if size >= min_tokens:
            break
    out[i] = _Draft(pieces, d.heading_path)


def _borrow_part_of_a_sentence(out: list[_Draft], i: int, min_tokens: int, tokenizer: Any) -> None:
    """Cut the sentence at the edge of a section neighbour so that both it and ``out[i]`` reach
    ``min_tokens``: the small draft takes the words it needs, the neighbour keeps the rest.

    Why: whole sentences cannot always move (a chunk that is one 190-token sentence and a short
    one before it lends nothing without dropping under the minimum itself); a cut at a word is what
    the packer already does to sentences longer than a chunk.
    """
    d = out[i]
    pieces = [p for p in d.pieces if p.kind != _OVERLAP]
    need = min_tokens - sum(p.ntok for p in pieces)
    if need <= 0:
        return
    for j in (i - 1, i + 1):
        if not 0 <= j < len(out) or out[j].heading_path != d.heading_path:
            continue
        donor = list(out[j].pieces)
        while j > i and donor and donor[0].kind == _OVERLAP:
            donor.pop(0)
        if not donor:
            continue
        edge = donor[-1] if j < i else donor[0]
        keep = min_tokens - (sum(q.ntok for q in donor) - edge.ntok)  # what the neighbour must keep of it
        if edge.kind not in (_BODY, _FRAGMENT) or edge.ntok - need < max(keep, 1):
            continue
        enc = tokenizer(edge.text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = [o for o in enc["offset_mapping"] if o[1] > o[0]]
        # Token k starts the second part; it must start a word.
        ks = range(len(offsets) - need, max(keep, 1) - 1, -1) if j < i else range(need, len(offsets) - max(keep, 1) + 1)
        k = next((k for k in ks if offsets[k][0] > 0 and edge.text[offsets[k][0] - 1].isspace()), None)
        if k is None:
            continue
        first, second = edge.text[:offsets[k][0]].rstrip(), edge.text[offsets[k][0]:].lstrip()
        n_first, n_second = count_tokens(tokenizer, [first, second])
        if j < i:
            kept = replace(edge, text=first, ntok=n_first, kind=_FRAGMENT)
            given = _Piece(second, n_second, "", edge.src, _FRAGMENT)
            taken = [given] + [replace(p, sep=p.sep or " ") if n == 0 else p for n, p in enumerate(pieces)]
            rest = donor[:-1] + [kept]
        else:
            given = _Piece(first, n_first, edge.sep or " ", edge.src, _FRAGMENT)
            kept = replace(edge, text=second, ntok=n_second, kind=_FRAGMENT)
            taken, rest = pieces + [given], [kept] + donor[1:]
        if sum(p.ntok for p in taken) < min_tokens or sum(p.ntok for p in rest) < min_tokens:
            continue
        out[j] = _Draft(rest, out[j].heading_path)
        out[i] = _Draft(taken, d.heading_path)
        return


# ---- output -------------------------------------------------------------------------------------


def _finalize(drafts: list[_Draft], tokenizer: Any, max_tokens: int) -> tuple[list[str], list[int], list[_Draft]]:
    """Chunk texts with their exact token counts; a chunk over the limit is re-split.

    Packing sums per-piece counts, which is exact for word-piece tokenizers; this re-count makes the
    limit a guarantee for tokenizers where joining texts changes the count.
    """
    texts = [d.text() for d in drafts]
    if counts_are_additive(tokenizer):
        return texts, [sum(p.ntok for p in d.pieces) for d in drafts], drafts
    counts = count_tokens(tokenizer, texts)
    if all(n <= max_tokens for n in counts):
        return texts, counts, drafts
    splitter = _LongSplitter(tokenizer)
    out_texts, out_counts, out_drafts = [], [], []
    for text, n, draft in zip(texts, counts, drafts):
        parts = [(text, n)] if n <= max_tokens else splitter.split(text, max_tokens)
        for part, m in parts:
            out_texts.append(part)
            out_counts.append(m)
            out_drafts.append(draft)
    over = sum(n > max_tokens for n in counts)
    log.info("%d chunks went over %d tokens once joined (non-additive tokenizer); re-split", over, max_tokens)
    return out_texts, out_counts, out_drafts


def _to_table(
    texts: list[str], counts: list[int], drafts: list[_Draft], elems: list[_Element], doc_id: str, doc_version: str
) -> pa.Table:
    cols: dict[str, list] = {name: [] for name in CHUNKS.names}
    index = 0
    for text, n, draft in zip(texts, counts, drafts):
        if not text.strip():
            continue
        sources = [elems[p.src] for p in draft.pieces]
        pages = [e.page for e in sources if e.page is not None]
        cols["chunk_id"].append(chunk_id(doc_id, index, text))
        cols["doc_id"].append(doc_id)
        cols["doc_version"].append(doc_version)
        cols["chunk_index"].append(index)
        cols["text"].append(text)
        cols["heading_path"].append(draft.heading_path)
        cols["page_start"].append(min(pages) if pages else None)
        cols["page_end"].append(max(pages) if pages else None)
        cols["element_types"].append(list(dict.fromkeys(e.type for e in sources)))
        cols["token_count"].append(n)
        cols["languages"].append(_first(e.languages for e in sources))
        cols["last_modified"].append(_first(e.last_modified for e in sources))
        cols["created"].append(_first(e.created for e in sources))
        index += 1
    return pa.table(cols, schema=CHUNKS)


def _first(values) -> Any:
    return next((v for v in values if v), None)


# ---- HTML tables --------------------------------------------------------------------------------


class _TableParser(HTMLParser):
    """Collects rows of cell texts, noting which rows are header rows (in <thead> or all <th>)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[tuple[list[str], bool]] = []
        self._cells: list[str] | None = None
        self._header_cells: list[bool] = []
        self._cell: list[str] | None = None
        self._in_thead = False
        self._row_in_thead = False

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "thead":
            self._in_thead = True
        elif tag == "tr":
            self._close_row()
            self._cells, self._header_cells, self._row_in_thead = [], [], self._in_thead
        elif tag in ("td", "th"):
            if self._cells is None:
                self._cells, self._header_cells, self._row_in_thead = [], [], self._in_thead
            self._close_cell()
            self._cell = []
            self._header_cells.append(tag == "th")
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag in ("td", "th"):
            self.handle_starttag(tag, attrs)
            self._close_cell()
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._close_cell()
        elif tag == "tr":
            self._close_row()
        elif tag == "thead":
            self._close_row()
            self._in_thead = False
        elif tag == "table":
            self._close_row()

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def _close_cell(self) -> None:
        if self._cell is not None and self._cells is not None:
            self._cells.append(_WS.sub(" ", "".join(self._cell)).strip())
        self._cell = None

    def _close_row(self) -> None:
        self._close_cell()
        if self._cells is not None:
            is_header = self._row_in_thead or (bool(self._header_cells) and all(self._header_cells))
            self.rows.append((self._cells, is_header))
        self._cells = None

    def close(self) -> None:
        super().close()
        self._close_row()


def _parse_html_table(html: str) -> tuple[list[list[str]], list[list[str]]] | None:
    """``(header rows, body rows)`` of cell texts; None when the HTML holds no cell text.

    Empty rows and columns (layout spacers in HTML filings) are dropped. Without marked header rows,
    the first row of a multi-row table is taken as the header.
    """
    parser = _TableParser()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # malformed markup: fall back to the element text
        log.debug("unparseable table HTML; using the element text", exc_info=True)
        return None
    rows = [(cells, head) for cells, head in parser.rows if any(cells)]
    if not rows:
        return None
    width = max(len(cells) for cells, _ in rows)
    keep = [c for c in range(width) if any(c < len(cells) and cells[c] for cells, _ in rows)]
    kept = [([cells[c] if c < len(cells) else "" for c in keep], head) for cells, head in rows]
    n_head = 0
    while n_head < len(kept) and kept[n_head][1]:
        n_head += 1
    if n_head == 0 and len(kept) > 1:
        n_head = 1
    if n_head == len(kept):  # nothing but header rows: they are the data
        n_head = 0
    cells = [c for c, _ in kept]
    return cells[:n_head], cells[n_head:]


def _render_row(cells: list[str]) -> str:
    """``"a | b | c"``; trailing empty cells (a row narrower than the table) are left out."""
    end = len(cells)
    while end and not cells[end - 1]:
        end -= 1
    return CELL_SEP.join(cells[:end])
