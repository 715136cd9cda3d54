"""One document's bytes -> an ``ELEMENTS`` Arrow table, with a specific reason when that fails.

unstructured fails in quiet ways: an encrypted or image-only PDF and an empty email give ZERO
elements and no exception, a corrupt file raises whatever its library raises, and a hostile file can
hang a parser or exhaust memory. This module turns every one of those into either a non-empty table
or a ``ParseError`` whose ``reason`` says what happened (and starts with a stable ``code`` so
failures can be grouped), and ``parse_many`` runs parsers in killable worker processes so one bad
document cannot stall or crash a build.

Only the ``strategy="fast"`` PDF path is used: OCR and layout models need hub downloads that are not
available offline, so a PDF without a text layer is reported, not OCR'd.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import logging
import multiprocessing
import os
import re
import resource
import signal
import threading
import zipfile
from collections import deque
from collections.abc import Hashable, Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import pyarrow as pa

from ingest_platform import faults, offline, schemas
from ingest_platform.config import ParsingSettings

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Formats
# ----------------------------------------------------------------------------------------------

_EXTENSIONS: dict[str, str] = {
    ".pdf": "pdf",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".md": "md",
    ".markdown": "md",
    ".txt": "txt",
    ".text": "txt",
    ".log": "txt",
    ".docx": "docx",
    ".pptx": "pptx",
    ".xlsx": "xlsx",
    ".csv": "csv",
    ".tsv": "tsv",
    ".eml": "eml",
    ".msg": "msg",
    ".rtf": "rtf",
    ".epub": "epub",
    ".odt": "odt",
    ".json": "json",
}

# Formats unstructured converts with pandoc.
PANDOC_FORMATS = frozenset({"rtf", "epub", "odt"})
# What each format's first bytes look like when the file really is that format.
_ZIP_FORMATS = frozenset({"docx", "pptx", "xlsx", "epub", "odt"})
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = b"PK\x03\x04"
_EMAIL_HEADER = re.compile(
    rb"^(?:From|To|Subject|Received|Return-Path|Delivered-To|Message-ID|MIME-Version|Date|"
    rb"X-[\w-]+|Content-Type):",
    re.IGNORECASE,
)
_HTML_START = re.compile(rb"^\s*(?:<!doctype\s+html|<html|<head|<body)", re.IGNORECASE)


def _sniff_zip(head: bytes) -> str:
    """Which zip-based format ``head`` is; ``unknown`` for a zip we cannot place.

    EPUB and ODF store an uncompressed ``mimetype`` entry first; OOXML packages name their main part
    folder (``word/``, ``ppt/``, ``xl/``) in the local headers, usually within the first few KiB.
    """
    if b"mimetypeapplication/epub+zip" in head:
        return "epub"
    if b"mimetypeapplication/vnd.oasis.opendocument.text" in head:
        return "odt"
    for marker, fmt in ((b"word/", "docx"), (b"ppt/", "pptx"), (b"xl/", "xlsx")):
        if marker in head:
            return fmt
    return "unknown"


def _sniff(head: bytes, *, weak: bool = True) -> str:
    """A format from the leading bytes alone, or ``unknown``.

    Strong signatures (PDF header, zip package, RTF, an HTML start tag) are unambiguous; the weak
    guesses (JSON, email headers, plain text) are only used when there is no extension at all.
    """
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(_ZIP_MAGIC):
        return _sniff_zip(head)
    if head.startswith(_OLE_MAGIC):
        return "unknown"  # .msg, or legacy .doc/.xls/.ppt: only the extension can tell
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{\\rtf"):
        return "rtf"
    if _HTML_START.match(stripped):
        return "html"
    if not weak:
        return "unknown"
    if stripped[:1] in (b"{", b"["):
        return "json"
    if _EMAIL_HEADER.match(stripped):
        return "eml"
    if _looks_like_text(head):
        return "txt"
    return "unknown"


def _looks_like_text(head: bytes) -> bool:
    """UTF-8 (allowing a multi-byte sequence cut at the end) with no NUL bytes."""
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"


def _contradicts(fmt: str, head: bytes) -> bool:
    """Whether ``head`` is plainly a different container than the extension's ``fmt``.

    Only strong signatures count: a PDF header, or a zip package under a non-zip extension (or a
    zip whose own ``mimetype``/part names say another zip format). Anything else trusts the name.
    """
    sniffed = _sniff(head)
    if sniffed == "pdf":
        return fmt != "pdf"
    if head.startswith(_ZIP_MAGIC):
        return fmt not in _ZIP_FORMATS or (sniffed in ("epub", "odt") and sniffed != fmt)
    return False


def detect_format(filename: str, head: bytes) -> str:
    """Short lowercase format name from the extension, corrected by the leading bytes.

    The extension decides unless it is missing or unknown, or the bytes are plainly another
    container (a PDF or a zip package named ``.txt``, a ``.docx`` that is really a PDF). Random
    bytes under a known extension keep that extension's format, so the parser reports them as a
    corrupt file of that format rather than as "unsupported".
    """
    ext = PurePath(filename or "").suffix.lower()
    by_ext = _EXTENSIONS.get(ext)
    if by_ext is None:
        # No extension: any guess helps. An unknown one (.xyz, .doc): only an unmistakable
        # signature overrides it, so arbitrary files are reported unsupported, not read as text.
        return _sniff(head, weak=not ext) if head else "unknown"
    if head and _contradicts(by_ext, head):
        return _sniff(head)
    return by_ext


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


class ParseError(Exception):
    """A document could not be turned into elements; ``reason`` says why, for people and grouping.

    ``reason`` is human-readable and starts with ``code``, a short stable phrase ("encrypted PDF",
    "timed out", "corrupt docx", ...) that dashboards can group failures by.
    """

    def __init__(self, reason: str, code: str | None = None):
        super().__init__(reason, code)
        self.reason = reason
        self.code = code or re.split(r"[:(]", reason, maxsplit=1)[0].strip()

    def __str__(self) -> str:
        return self.reason

    def __repr__(self) -> str:
        return f"ParseError({self.reason!r})"

    @property
    def retried(self) -> bool:
        """A timeout or a dead worker depends on the machine's load (a busy host, the OOM killer) as
        much as on the document, so it is tried again in later runs (``[parsing] attempts``) before
        it is cached as the document's failure."""
        return self.code in RETRIED_CODES


RETRIED_CODES = ("timed out", "parser crashed")


_MAX_DETAIL_CHARS = 200


_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line, truncated: enough to act on, short enough for a table cell.

    Object reprs (``<_io.BytesIO object at 0x...>``) are replaced so equal failures read equal.
    """
    message = _OBJECT_REPR.sub("<file>", " ".join(str(exc).split()))
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= _MAX_DETAIL_CHARS else text[: _MAX_DETAIL_CHARS - 3] + "..."


def _unsupported(filename: str, fmt: str) -> ParseError:
    ext = PurePath(filename or "").suffix.lower()
    shown = ext or "(no extension)"
    if fmt not in ("unknown", "") and f".{fmt}" != ext:
        shown = f"{fmt} ({shown})"
    return ParseError(f"unsupported format: {shown}", code="unsupported format")


def _check_size(size: int, settings: ParsingSettings) -> None:
    if size == 0:
        raise ParseError("empty file (0 bytes)", code="empty file")
    if size > settings.max_file_bytes:
        raise ParseError(
            f"file exceeds max_file_bytes ({size} > {settings.max_file_bytes})",
            code="file exceeds max_file_bytes",
        )


# ----------------------------------------------------------------------------------------------
# Document-level facts unstructured does not report (PDF encryption/pages, office dates)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PdfFacts:
    pages: int
    encrypted: bool
    created: str | None
    modified: str | None
    damaged: bool = False  # qpdf had to reconstruct it (truncated, broken xref)


_PDF_DATE = re.compile(
    r"^D?:?(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?\s*(Z|[+-]\d{2}'?\d{2}'?|[+-]\d{2})?"
)


def _pdf_date_to_iso(value: Any) -> str | None:
    """``D:20230102030405+01'00'`` -> ``2023-01-02T03:04:05+01:00``; None if unparseable."""
    if value is None:
        return None
    m = _PDF_DATE.match(str(value).strip())
    if not m:
        return None
    year, month, day, hour, minute, second, tz = m.groups()
    iso = f"{year}-{month or '01'}-{day or '01'}T{hour or '00'}:{minute or '00'}:{second or '00'}"
    if tz == "Z":
        iso += "+00:00"
    elif tz:
        digits = tz[1:].replace("'", "")
        iso += f"{tz[0]}{digits[:2]}:{digits[2:4] or '00'}"
    return iso


def _pdf_facts(data: bytes) -> _PdfFacts:
    """Open with pikepdf first: unstructured silently returns no elements for an encrypted PDF."""
    if b"%PDF-" not in data[:1024]:
        raise ParseError("corrupt pdf: no %PDF header", code="corrupt pdf")
    import pikepdf

    try:
        damaged = False
        try:
            pdf = pikepdf.open(io.BytesIO(data), attempt_recovery=False)
        except pikepdf.PasswordError:
            raise
        except pikepdf.PdfError:
            damaged = True
            pdf = pikepdf.open(io.BytesIO(data))
        with pdf:
            info = pdf.docinfo
            return _PdfFacts(
                pages=len(pdf.pages),
                encrypted=pdf.is_encrypted,
                created=_pdf_date_to_iso(info.get("/CreationDate")),
                modified=_pdf_date_to_iso(info.get("/ModDate")),
                damaged=damaged,
            )
    except pikepdf.PasswordError:
        raise ParseError("encrypted PDF (password required)", code="encrypted PDF") from None
    except pikepdf.PdfError as exc:
        raise ParseError(f"corrupt pdf: {_describe(exc)}", code="corrupt pdf") from None


_OOXML_DATES = re.compile(rb"<dcterms:(created|modified)[^>]*>([^<]+)</dcterms:\1>")
_ODF_DATES = re.compile(rb"<(meta:creation-date|dc:date)>([^<]+)</\1>")


def _office_dates(data: bytes, fmt: str) -> dict[str, str]:
    """``created``/``last_modified`` from OOXML core properties or ODF meta.xml (unstructured
    reports only the file-system mtime for these, which says nothing about the document)."""
    member, pattern, names = {
        "docx": ("docProps/core.xml", _OOXML_DATES, {b"created": "created", b"modified": "last_modified"}),
        "pptx": ("docProps/core.xml", _OOXML_DATES, {b"created": "created", b"modified": "last_modified"}),
        "xlsx": ("docProps/core.xml", _OOXML_DATES, {b"created": "created", b"modified": "last_modified"}),
        "odt": ("meta.xml", _ODF_DATES, {b"meta:creation-date": "created", b"dc:date": "last_modified"}),
    }.get(fmt, (None, None, None))
    if member is None:
        return {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            xml = zf.read(member)[:65536]
    except (zipfile.BadZipFile, KeyError, OSError, ValueError):
        return {}
    return {names[k]: v.decode("utf-8", "replace").strip() for k, v in pattern.findall(xml) if k in names}


# ----------------------------------------------------------------------------------------------
# Partitioning
# ----------------------------------------------------------------------------------------------

# format -> (module, function) of unstructured's partitioner for it.
_PARTITIONERS: dict[str, tuple[str, str]] = {
    "pdf": ("unstructured.partition.pdf", "partition_pdf"),
    "html": ("unstructured.partition.html", "partition_html"),
    "md": ("unstructured.partition.md", "partition_md"),
    "txt": ("unstructured.partition.text", "partition_text"),
    "docx": ("unstructured.partition.docx", "partition_docx"),
    "pptx": ("unstructured.partition.pptx", "partition_pptx"),
    "xlsx": ("unstructured.partition.xlsx", "partition_xlsx"),
    "csv": ("unstructured.partition.csv", "partition_csv"),
    "tsv": ("unstructured.partition.tsv", "partition_tsv"),
    "eml": ("unstructured.partition.email", "partition_email"),
    "msg": ("unstructured.partition.msg", "partition_msg"),
    "rtf": ("unstructured.partition.rtf", "partition_rtf"),
    "epub": ("unstructured.partition.epub", "partition_epub"),
    "odt": ("unstructured.partition.odt", "partition_odt"),
}

SUPPORTED_FORMATS = frozenset(_PARTITIONERS) | {"json"}


def _partitioner(fmt: str):
    import importlib

    module, function = _PARTITIONERS[fmt]
    return getattr(importlib.import_module(module), function)


def _partition(data: bytes, filename: str, fmt: str, settings: ParsingSettings) -> list:
    """Run unstructured on an in-memory file.

    A file object (not a path) is passed so unstructured does not stamp the file-system mtime of
    wherever the bytes happen to sit as the document's ``last_modified``; ``metadata_filename``
    keeps the original name in its metadata.
    """
    offline.prepare()
    partition = _partitioner(fmt)
    kwargs: dict[str, Any] = {"file": io.BytesIO(data), "metadata_filename": filename}
    with _PARTITION_LOCK:
        if fmt == "pdf":
            kwargs["strategy"] = settings.pdf_strategy
            with _lines_left_unclassified():
                return partition(**kwargs)
        return partition(**kwargs)


# One partition at a time per process. A PDF's partition swaps two of unstructured's module
# functions (``_lines_left_unclassified``), which every other partition in the process would see,
# and overlapping swaps could leave the stand-ins in place for good; unstructured's spaCy pipeline
# is shared too. Threads gain nothing here anyway (pure Python under the GIL): parallel parsing is
# the parser pool's worker processes.
_PARTITION_LOCK = threading.Lock()


# unstructured's element_from_text (unstructured.partition.text) looks these up at call time.
_TEXT_MODULE = "unstructured.partition.text"
_SPACY_PREDICATES = ("is_possible_narrative_text", "is_possible_title")


@contextlib.contextmanager
def _lines_left_unclassified() -> Iterator[None]:
    """PDF lines come out as ``UncategorizedText`` unless position or pattern makes them a Header,
    Footer, ListItem, address or e-mail; ``classify_paragraph`` types them once joined.

    Why: unstructured's fast PDF partitioner runs its narrative and title tests (a spaCy pass each)
    on every printed line, which was about 60% of a PDF's parse time, and a wrapped line judged on
    its own is what made body lines into false headings. ``reconstruct`` joins the lines first.
    Only under ``_PARTITION_LOCK``: it swaps two module attributes for the whole process.
    """
    module = _text_classifier_module()
    saved = {name: getattr(module, name) for name in _SPACY_PREDICATES}
    for name in _SPACY_PREDICATES:
        setattr(module, name, _never)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def _text_classifier_module():
    """unstructured's text partitioner module, loudly if the two tests are no longer in it: a
    platform problem to fix here, not a broken file (so not a ParseError)."""
    import importlib

    module = importlib.import_module(_TEXT_MODULE)
    missing = [name for name in _SPACY_PREDICATES if not hasattr(module, name)]
    if missing:
        raise RuntimeError(f"{_TEXT_MODULE}.{missing[0]} no longer exists in this unstructured version; "
                           "update ingest_platform/parsing.py::_lines_left_unclassified")
    return module


def _never(*_args: Any, **_kwargs: Any) -> bool:
    return False


def classify_paragraph(text: str) -> str:
    """unstructured's element type for a paragraph of joined PDF lines that nothing else typed:
    ``NarrativeText``, ``Title`` or ``UncategorizedText`` (its own narrative and title tests)."""
    offline.prepare()
    from unstructured.partition.text_type import is_possible_narrative_text, is_possible_title

    if is_possible_narrative_text(text):
        return "NarrativeText"
    return "Title" if is_possible_title(text) else "UncategorizedText"


def _json_texts(value: Any, prefix: str = "") -> Iterator[str]:
    """``path: value`` lines for every scalar leaf, so keys give the values their meaning."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _json_texts(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for item in value:
            yield from _json_texts(item, prefix)
    elif value is not None and str(value).strip():
        yield f"{prefix}: {value}" if prefix else str(value)


def _is_unstructured_json(doc: Any) -> bool:
    """unstructured's own serialized elements (a list of {type, text, element_id, metadata})."""
    return (
        isinstance(doc, list)
        and bool(doc)
        and all(isinstance(d, dict) and {"type", "text", "element_id"} <= d.keys() for d in doc)
    )


def _json_rows(data: bytes) -> list[dict[str, Any]]:
    """JSON: unstructured's element JSON as is; otherwise one element per record (top-level array
    item, or top-level key of an object), its text the record's ``key: value`` lines."""
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParseError(f"corrupt json: {_describe(exc)}", code="corrupt json") from None
    if _is_unstructured_json(doc):
        from unstructured.staging.base import elements_from_dicts

        return _element_rows(elements_from_dicts(doc))
    if isinstance(doc, dict):
        records = [{k: v} for k, v in doc.items()]
    elif isinstance(doc, list):
        records = doc
    else:
        records = [doc]
    texts = ("\n".join(_json_texts(record)) for record in records)
    return [{"type": "UncategorizedText", "text": t} for t in texts if t.strip()]


def _element_rows(elements: list) -> list[dict[str, Any]]:
    """unstructured elements -> row dicts, keeping only elements with visible text."""
    rows = []
    for el in elements:
        text = getattr(el, "text", None) or ""
        if not text.strip():
            continue
        md = el.metadata
        rows.append(
            {
                "element_id": el.id,
                "type": el.category,
                "text": text,
                "text_as_html": getattr(md, "text_as_html", None),
                "page_number": getattr(md, "page_number", None),
                "category_depth": getattr(md, "category_depth", None),
                "parent_id": getattr(md, "parent_id", None),
                "languages": list(md.languages) if getattr(md, "languages", None) else None,
                "last_modified": getattr(md, "last_modified", None),
                "created": _data_source_created(md),
                **_box(md),
                **({"subject": md.subject} if getattr(md, "subject", None) else {}),
            }
        )
    return rows


# Formats whose Titles unstructured guesses from a line's text: no markup says what a heading is.
_GUESSED_TITLES = frozenset({"txt", "eml", "msg"})


def _guard_guessed_titles(rows: list[dict[str, Any]]) -> None:
    """Keep a guessed Title only where it reads as a heading and heads something
    (``reconstruct.is_fragment``): a link or a line cut from a sentence is body text, and so are a
    sentence ("Thanks!") and a closing line."""
    from ingest_platform.reconstruct import is_fragment

    for i, r in enumerate(rows):
        if r["type"] == "Title" and (is_fragment(r["text"]) or r["text"].rstrip()[-1:] in ".!?" or i == len(rows) - 1):
            r["type"] = "NarrativeText"


# Formats whose partitioner types a paragraph by its style alone: a heading set in the Normal style
# by direct formatting (bold, capitals, a typed "A.") comes out UncategorizedText.
_STYLED_FORMATS = frozenset({"docx", "odt"})
_BODY_TYPES = frozenset({"NarrativeText", "ListItem", "Table"})


def _unstyled_headings(rows: list[dict[str, Any]]) -> None:
    """Type as a Title each UncategorizedText paragraph that reads as a heading (unstructured's own
    title test, ``classify_paragraph``, and the heading guard, ``reconstruct.is_fragment``; no final
    ``.!?:``) and heads body text: the next paragraph that is neither another such line nor page
    furniture is narrative, a list or a table. A salutation, a form label, a year or a closing
    line heads nothing and stays text."""
    from ingest_platform.reconstruct import is_fragment

    def reads_as_heading(text: str) -> bool:
        text = " ".join(text.split())
        return not (is_fragment(text) or text[-1:] in ".!?:") and classify_paragraph(text) == "Title"

    heading = [r["type"] == "UncategorizedText" and reads_as_heading(r["text"]) for r in rows]
    heads_body = False  # what follows row i, past other such lines and page furniture, is body text
    for i in reversed(range(len(rows))):
        if heading[i]:
            if heads_body:
                rows[i]["type"] = "Title"
        elif rows[i]["type"] not in ("Header", "Footer", "PageNumber"):
            heads_body = rows[i]["type"] in _BODY_TYPES


def _subject_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A message's rows opening with its subject as a Title, as a record's title is: its title, and
    the heading its body sits under."""
    subjects = [r.pop("subject", None) for r in rows]
    subject = " ".join((next((s for s in subjects if s), None) or "").split())
    if subject and " ".join(rows[0]["text"].split()) != subject:
        rows.insert(0, {"type": "Title", "text": subject, "category_depth": 0, "last_modified": rows[0].get("last_modified")})
    return rows


def _box(metadata: Any) -> dict[str, float]:
    """The element's bounding box (x0, y0, x1, y1) where the partitioner placed it on a page."""
    coords = getattr(metadata, "coordinates", None)
    points = getattr(coords, "points", None) if coords is not None else None
    if not points:
        return {}
    xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    return {"x0": min(xs), "y0": min(ys), "x1": max(xs), "y1": max(ys)}


def _data_source_created(metadata: Any) -> str | None:
    """The creation date some partitioners record under ``metadata.data_source``."""
    data_source = getattr(metadata, "data_source", None)
    return getattr(data_source, "date_created", None) if data_source is not None else None


def _rows_to_table(rows: list[dict[str, Any]], doc_dates: dict[str, str]) -> pa.Table:
    """Number the rows, drop parent links to elements that were dropped, fill document dates."""
    kept_ids = {r.get("element_id") for r in rows}
    for i, row in enumerate(rows):
        row["element_index"] = i
        if row.get("parent_id") not in kept_ids:
            row["parent_id"] = None
        for field in ("last_modified", "created"):
            if not row.get(field) and doc_dates.get(field):
                row[field] = doc_dates[field]
    return schemas.conform(pa.Table.from_pylist(rows, schema=schemas.ELEMENTS), schemas.ELEMENTS)


# Formats read as text: binary bytes in one are a wrong or corrupt file, not a document (the email
# and RTF readers would otherwise index random bytes as text).
_TEXT_FORMATS = frozenset({"txt", "md", "html", "csv", "tsv", "eml", "rtf", "json"})
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _check_text_content(data: bytes, fmt: str) -> None:
    head = data[:8192]
    if fmt in _TEXT_FORMATS and b"\x00" in head and not head.startswith(_UTF16_32_BOMS):
        reason = f"corrupt {fmt}: binary data (NUL bytes) in a text format"
        raise ParseError(reason, code=f"corrupt {fmt}")


# Text formats handed to their partitioner as UTF-8: unstructured's own guess picks cp1250 for
# ordinary cp1252 text ("naïve" -> "naďve") and turns a few broken bytes into a page of mojibake.
_TRANSCODED_FORMATS = frozenset({"txt", "md", "html", "csv", "tsv"})
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def _text_encoding(data: bytes, fmt: str) -> tuple[str, str] | None:
    """``(encoding, errors)`` to decode a text format with, or None to leave it to the parser.

    A BOM decides, then strict UTF-8, then an HTML ``<meta charset>``. Text that is UTF-8 apart
    from a few broken bytes stays UTF-8 (the broken bytes become U+FFFD). Otherwise the detector
    guesses, and among equally plausible single-byte code pages cp1252 wins: it is by far the
    most common legacy encoding, and the detector cannot tell it from cp1250 on short text.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding, "strict"
    try:
        data.decode("utf-8")
        return "utf-8", "strict"
    except UnicodeDecodeError:
        pass
    if fmt == "html" and (m := _META_CHARSET.search(data[:4096])):
        try:
            return codecs.lookup(m.group(1).decode("ascii")).name, "replace"
        except LookupError:
            pass
    text = data.decode("utf-8", "replace")
    broken = text.count("\ufffd")
    if sum(1 for ch in text if ord(ch) > 0x7F) - broken > broken:
        return "utf-8", "replace"
    from charset_normalizer import from_bytes

    results = from_bytes(data)
    best = results.best()
    if best is None:
        return None
    tied = [r for r in results if r.chaos <= best.chaos]
    if any("cp1252" in r.could_be_from_charset for r in tied):
        return "cp1252", "replace"
    return best.encoding, "replace"


def _to_utf8(data: bytes, fmt: str) -> bytes:
    found = _text_encoding(data, fmt)
    if found is None or found == ("utf-8", "strict"):
        return data
    return data.decode(*found).encode("utf-8")


def _check_inflated_size(data: bytes, fmt: str, settings: ParsingSettings) -> None:
    """Refuse a zip package (docx, pptx, ...) whose parts inflate past a quarter of the worker's
    memory cap: its bytes, text and parsed tree could not all fit. The sizes come from the central
    directory, so a decompression bomb is refused before anything is inflated (Python's zipfile,
    which the OOXML parsers use, never inflates an entry past its declared size)."""
    if fmt not in _ZIP_FORMATS or settings.max_memory_mb <= 0:
        return
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            inflated = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a readable zip: the partitioner reports it as corrupt
    limit = settings.max_memory_mb * 1024 * 1024 // 4
    if inflated > limit:
        reason = (
            f"decompression bomb: {fmt} inflates to {inflated >> 20} MiB from {len(data) >> 10} KiB "
            f"(limit {limit >> 20} MiB, a quarter of max_memory_mb={settings.max_memory_mb})"
        )
        raise ParseError(reason, code="decompression bomb")


def _check_html_limits(data: bytes) -> None:
    """libxml2 stops at nesting depth 256 and unstructured then silently keeps only the text
    before that point; report it instead of indexing a fragment."""
    from lxml import etree

    parser = etree.HTMLParser(remove_comments=True, remove_pis=True)
    try:
        etree.fromstring(data, parser)
    except (etree.XMLSyntaxError, ValueError):
        return  # nothing parseable: the partitioner reports it
    for entry in parser.error_log:
        if entry.type_name == "ERR_RESOURCE_LIMIT":
            what = entry.message.split(", use XML_PARSE_HUGE")[0].strip()
            reason = f"html exceeds a parser limit: {what} (the parser would drop the rest of the document)"
            raise ParseError(reason, code="html exceeds a parser limit")


def _no_elements_error(fmt: str, pdf: _PdfFacts | None) -> ParseError:
    """Why a partitioner that did not raise still gave nothing."""
    if pdf is not None and pdf.encrypted:
        return ParseError("encrypted PDF (no text extractable)", code="encrypted PDF")
    if pdf is not None and pdf.damaged:
        reason = f"corrupt pdf: damaged or truncated file, no text recovered from {pdf.pages} page(s)"
        return ParseError(reason, code="corrupt pdf")
    if pdf is not None and pdf.pages > 0:
        return ParseError(
            f"no text layer (image-only PDF; OCR not available; {pdf.pages} page(s))",
            code="no text layer",
        )
    return ParseError(f"no text extracted (0 text elements from {fmt})", code="no text extracted")


def _run_partitioner(
    data: bytes, filename: str, fmt: str, settings: ParsingSettings
) -> list[dict[str, Any]]:
    """Partition and map every partitioner failure to a ParseError naming the format."""
    if fmt == "json":
        return _json_rows(data)
    if fmt == "pdf":
        _text_classifier_module()  # raises outside the try below: every PDF would fail alike
    try:
        return _element_rows(_partition(data, filename, fmt, settings))
    except ParseError:
        raise
    except MemoryError:
        raise ParseError(f"out of memory while parsing {fmt}", code="out of memory") from None
    except ImportError as exc:
        if "failed to map segment" in str(exc):  # a shared library could not be mapped: RLIMIT_AS
            reason = f"out of memory while loading the {fmt} parser"
            raise ParseError(reason, code="out of memory") from None
        reason = f"parser unavailable for {fmt}: {_describe(exc)}"
        raise ParseError(reason, code="parser unavailable") from None
    except Exception as exc:  # noqa: BLE001 - any library error means this file could not be read
        raise ParseError(f"corrupt {fmt}: {_describe(exc)}", code=f"corrupt {fmt}") from None


def parse_bytes(data: bytes, filename: str, fmt: str | None, settings: ParsingSettings) -> pa.Table:
    """Parse one document in this process; a non-empty ``ELEMENTS`` table or a ``ParseError``.

    ``fmt`` None means detect it. No time or memory limit applies here: use ``parse_many`` for
    untrusted input.
    """
    _check_size(len(data), settings)
    fmt = fmt or detect_format(filename, data[:8192])
    if fmt not in SUPPORTED_FORMATS:
        raise _unsupported(filename, fmt)
    if fmt in PANDOC_FORMATS and not offline.pandoc_available():
        raise ParseError(f"pandoc not available for {fmt}", code="pandoc not available")
    _check_text_content(data, fmt)
    _check_inflated_size(data, fmt, settings)
    if fmt in _TRANSCODED_FORMATS:
        data = _to_utf8(data, fmt)
    if fmt == "html":
        _check_html_limits(data)
    if fmt in ("html", "md"):  # guardrails: mark hidden text and text-carrying link URLs
        from ingest_platform.hidden_html import mark_hidden

        data = mark_hidden(data, fmt)
    pdf = _pdf_facts(data) if fmt == "pdf" else None
    rows = _run_partitioner(data, filename, fmt, settings)
    if not rows:
        raise _no_elements_error(fmt, pdf)
    dates = {"created": pdf.created, "last_modified": pdf.modified} if pdf else _office_dates(data, fmt)
    if fmt in _GUESSED_TITLES:
        _guard_guessed_titles(rows)
    if fmt in _STYLED_FORMATS:
        _unstyled_headings(rows)
    if fmt in ("eml", "msg"):
        dates = {"created": rows[0].get("last_modified")}  # the sent date is when a mail was made
        rows = _subject_first(rows)
    return _rows_to_table(rows, {k: v for k, v in dates.items() if v})


def parse_path(
    path: str | os.PathLike, filename: str | None, fmt: str | None, settings: ParsingSettings
) -> pa.Table:
    """``parse_bytes`` for a file on disk, checking its size before reading it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        _check_size(size, settings)
        data = path.read_bytes()
    except OSError as exc:
        raise ParseError(f"unreadable file: {_describe(exc)}", code="unreadable file") from None
    return parse_bytes(data, filename or path.name, fmt, settings)


# ----------------------------------------------------------------------------------------------
# Worker processes: time and memory limits
# ----------------------------------------------------------------------------------------------


def _worker_init(max_memory_mb: int) -> None:
    """Cap the worker's address space, go offline and import/load everything once.

    Warming up here (imports take seconds: torch, onnxruntime, spaCy) keeps that cost out of the
    per-document timeout, which pebble starts when a task starts. Never raises: a failing
    initializer kills the worker and pebble then declares the whole pool broken, whereas a failed
    warm-up only means the first document reports the problem as its reason.
    """
    try:
        if max_memory_mb > 0:
            limit = max_memory_mb * 1024 * 1024
            _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            soft = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        offline.prepare()
        for fmt in _PARTITIONERS:
            _partitioner(fmt)
        _partitioner("txt")(text="Warm-up sentence for the parser worker. It loads spaCy once.")
    except BaseException as exc:  # noqa: BLE001
        logger.warning("parser worker warm-up failed: %s", _describe(exc))


def _parse_task(
    source: bytes | str, filename: str, fmt: str | None, settings: ParsingSettings
) -> pa.Table | ParseError:
    """What a worker runs: the table, or the ParseError returned (not raised) as a value.

    ``offline.prepare()`` is deliberately outside the try: if unstructured's spaCy hook is gone,
    every document would fail, so the error propagates to the caller instead of becoming a reason.
    """
    offline.prepare()
    faults.point("parse:worker")
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            return parse_bytes(bytes(source), filename, fmt, settings)
        return parse_path(source, filename, fmt, settings)
    except ParseError as exc:
        return exc
    except MemoryError:
        reason = f"out of memory (worker limit {settings.max_memory_mb} MiB)"
        return ParseError(reason, code="out of memory")


def _crash_error(exc: BaseException, settings: ParsingSettings) -> ParseError:
    """A worker that died (segfault, abort, OOM kill) -> a reason naming the signal."""
    code = getattr(exc, "exitcode", None)
    how = f"exit code {code}"
    if isinstance(code, int) and code < 0:
        try:
            how = signal.Signals(-code).name
        except ValueError:
            how = f"signal {-code}"
    hint = f"; may be the {settings.max_memory_mb} MiB memory limit" if settings.max_memory_mb > 0 else ""
    return ParseError(f"parser crashed ({how}{hint})", code="parser crashed")


def _outcome(future, settings: ParsingSettings) -> pa.Table | ParseError:
    """A finished future -> table or ParseError; only platform errors (e.g. offline setup) raise."""
    from concurrent.futures.process import BrokenProcessPool

    from pebble import ProcessExpired

    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise RuntimeError(
            "all parser workers died outside any document (while starting?); "
            f"is max_memory_mb={settings.max_memory_mb} too low?"
        ) from exc
    except FutureTimeoutError:
        return ParseError(f"timed out after {settings.timeout_s:g}s", code="timed out")
    except ProcessExpired as exc:
        return _crash_error(exc, settings)


Item = tuple[Hashable, "bytes | str | os.PathLike[str]", str, "str | None"]


class ParserPool:
    """Worker processes (spawned, address space capped) that parse documents under a time limit.

    Reuse one pool for many ``parse_many`` calls: starting a worker costs seconds of imports. A
    timed-out or crashed worker is killed and replaced by pebble.
    """

    def __init__(self, settings: ParsingSettings):
        from pebble import ProcessPool

        self.settings = settings
        self._pool = ProcessPool(
            max_workers=settings.workers,
            initializer=_worker_init,
            initargs=(settings.max_memory_mb,),
            context=multiprocessing.get_context("spawn"),
        )

    def parse_many(
        self, items: Iterable[Item], settings: ParsingSettings | None = None
    ) -> Iterator[tuple[Hashable, pa.Table | ParseError]]:
        """Yield ``(key, table or ParseError)`` in input order.

        ``settings`` (default: the pool's) supplies the per-call limits: ``timeout_s`` and
        ``max_file_bytes``. A bounded window of tasks is in flight, so a long iterable of byte
        strings is not all held in memory at once.
        """
        settings = settings or self.settings
        timeout = settings.timeout_s if settings.timeout_s and settings.timeout_s > 0 else None
        window: deque = deque()
        limit = max(2, 2 * self.settings.workers)
        try:
            for key, source, filename, fmt in items:
                if not isinstance(source, (bytes, bytearray, memoryview)):
                    source = os.fspath(source)
                args = (source, filename, fmt, settings)
                window.append((key, self._pool.schedule(_parse_task, args=args, timeout=timeout)))
                while len(window) >= limit:
                    key_done, future = window.popleft()
                    yield key_done, _outcome(future, settings)
            while window:
                key_done, future = window.popleft()
                yield key_done, _outcome(future, settings)
        finally:
            for _key, future in window:  # the caller stopped early: do not parse what nobody reads
                future.cancel()

    def close(self) -> None:
        """Stop the workers (pending tasks are cancelled) and wait for them."""
        self._pool.stop()
        self._pool.join()

    def __enter__(self) -> ParserPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def parse_many(
    items: Iterable[Item], settings: ParsingSettings, *, pool: ParserPool | None = None
) -> Iterator[tuple[Hashable, pa.Table | ParseError]]:
    """Parse ``(key, bytes or path, filename, fmt or None)`` items in worker processes.

    Each document gets ``settings.timeout_s`` (its worker is killed past it) and a worker's address
    space is capped at ``settings.max_memory_mb``; failures come back as ``ParseError`` values, in
    input order, keyed. Pass ``pool`` to reuse workers across calls; otherwise one is started and
    stopped around this call.
    """
    if pool is not None:
        yield from pool.parse_many(items, settings)
        return
    with ParserPool(settings) as own:
        yield from own.parse_many(items, settings)
