"""Render a BEIR corpus as real files: one PDF, DOCX or HTML document per record.

    python -m benchmarks.render [DATASET_DIR] OUT_DIR [--formats pdf,docx,html] [--limit N]

Why: retrieval measured on records says nothing about what parsing and chunking do to real files.
Rendered documents carry the same texts, so the records path is the reference the file paths must
match (``benchmarks.fidelity``).

- **PDF** (reportlab): US Letter, 1-inch margins; the title in 14 pt DejaVu Sans Bold, the text in
  11 pt DejaVu Sans (embedded: Greek letters and signs survive) wrapped to the text width with 1.6x
  line spacing (wide enough that pdfminer keeps
  every printed line apart, as in many real reports), a page number in the footer, the title in the
  document information. Long texts run over several pages.
- **DOCX** (python-docx): the title as Heading 1, the text as one paragraph, the title in the
  core properties.
- **HTML**: ``<title>``, ``<h1>`` and one ``<p>``.

File names are the record ids (``<id>.pdf``), so a document id maps back to the BEIR id. Nothing
here is committed: the files are generated into ``OUT_DIR`` (``benchmarks/.work/`` by default in
``benchmarks.fidelity``).
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

from benchmarks.common import SCIFACT, read_jsonl

FORMATS = ("pdf", "docx", "html")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def file_name(record_id: str, fmt: str) -> str:
    return f"{_SAFE.sub('_', record_id)}.{fmt}"


def _fonts() -> tuple[str, str]:
    """DejaVu Sans (regular, bold), embedded in the PDF: the standard PDF fonts have no Greek or
    mathematical signs, which the abstracts use (β, γ, ≥). The TTF files come with matplotlib."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if "DejaVuSans" not in pdfmetrics.getRegisteredFontNames():
        import matplotlib

        folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        pdfmetrics.registerFont(TTFont("DejaVuSans", str(folder / "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", str(folder / "DejaVuSans-Bold.ttf")))
    return "DejaVuSans", "DejaVuSans-Bold"


def render_pdf(path: Path, title: str, text: str) -> None:
    from reportlab.lib.pagesizes import letter
    from reportlab.lib.utils import simpleSplit
    from reportlab.pdfgen import canvas

    regular, bold = _fonts()

    width, height = letter
    margin = 72
    text_width = width - 2 * margin
    c = canvas.Canvas(str(path), pagesize=letter)
    c.setTitle(title)
    page = 1
    y = height - margin

    def footer():
        c.setFont(regular, 9)
        c.drawCentredString(width / 2, margin / 2, str(page))

    c.setFont(bold, 14)
    for line in simpleSplit(title, bold, 14, text_width):
        c.drawString(margin, y, line)
        y -= 14 * 1.3
    y -= 14
    for line in simpleSplit(text, regular, 11, text_width):
        if y < margin:
            footer()
            c.showPage()
            page += 1
            y = height - margin
        c.setFont(regular, 11)
        c.drawString(margin, y, line)
        y -= 11 * 1.6
    footer()
    c.save()


def render_docx(path: Path, title: str, text: str) -> None:
    import docx

    document = docx.Document()
    document.core_properties.title = title[:255]  # the property holds at most 255 characters
    document.add_heading(title, level=1)
    document.add_paragraph(text)
    document.save(str(path))


def render_html(path: Path, title: str, text: str) -> None:
    t, body = html.escape(title), html.escape(text)
    path.write_text(f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\n"
                    f"<body>\n<h1>{t}</h1>\n<p>{body}</p>\n</body></html>\n", encoding="utf-8")


RENDERERS = {"pdf": render_pdf, "docx": render_docx, "html": render_html}


def render(corpus: Path, out: Path, formats: tuple[str, ...] = FORMATS, limit: int | None = None,
           ids: set[str] | None = None) -> dict[str, Path]:
    """Render ``corpus`` (a BEIR ``corpus.jsonl``) into ``out/<format>/``; existing files are kept.
    Returns format -> folder."""
    folders = {}
    for fmt in formats:
        folders[fmt] = out / fmt
        folders[fmt].mkdir(parents=True, exist_ok=True)
    n = 0
    for rec in read_jsonl(corpus):
        rid = str(rec["_id"])
        if ids is not None and rid not in ids:
            continue
        title, text = (rec.get("title") or "").strip(), (rec.get("text") or "").strip()
        for fmt in formats:
            path = folders[fmt] / file_name(rid, fmt)
            if not path.exists():
                tmp = path.with_name(f".{path.name}.tmp")
                RENDERERS[fmt](tmp, title, text)
                tmp.replace(path)
        n += 1
        if limit is not None and n >= limit:
            break
    return folders


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.render", description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path, nargs="?", default=SCIFACT)
    ap.add_argument("out", type=Path)
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--limit", type=int)
    args = ap.parse_args(argv)
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    if bad := set(formats) - set(FORMATS):
        ap.error(f"unknown formats: {', '.join(sorted(bad))}")
    folders = render(args.dataset / "corpus.jsonl", args.out, formats, args.limit)
    for fmt, folder in folders.items():
        print(f"{fmt}: {sum(1 for _ in folder.glob(f'*.{fmt}'))} files in {folder}")


if __name__ == "__main__":
    main(sys.argv[1:])
