"""Generate the binary documents of the shipped sample corpus (``data/sample/``).

The sample corpus describes Halvorsen Lantern Works, a fictional maker of outdoor lighting
with the Glowkeeper subscription service. Text formats (.md, .html, .txt, .csv, .eml) are
written by hand and live in git as they are; this script writes the formats that need a
library or a binary container:

- ``engineering/design-note-mothgate.docx``   (python-docx)
- ``products/glowkeeper-overview.pptx``       (python-pptx)
- ``products/spare-parts-price-list.xlsx``    (openpyxl)
- ``company/onboarding-guide.pdf``            (a small built-in PDF 1.4 writer)

Output is deterministic: document properties and zip entry timestamps are fixed, so running
the script again gives identical bytes.

Usage: ``.venv/bin/python scripts/make_sample_corpus.py [--out DIR]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import re
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "data" / "sample"

FIXED_DATETIME = dt.datetime(2026, 3, 1, 9, 0, 0)
FIXED_ISO = "2026-03-01T09:00:00Z"
FIXED_ZIP_TIME = (2026, 3, 1, 9, 0, 0)
AUTHOR = "Halvorsen Lantern Works"


# --------------------------------------------------------------------------------------
# Deterministic zip containers (docx / pptx / xlsx)
# --------------------------------------------------------------------------------------


def _normalize_ooxml(data: bytes) -> bytes:
    """Rewrite an OOXML zip with fixed entry timestamps and fixed core-property dates."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            blob = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = blob.decode("utf-8")
                for tag in ("created", "modified"):
                    text = re.sub(
                        rf"(<dcterms:{tag}[^>]*>)[^<]*(</dcterms:{tag}>)",
                        rf"\g<1>{FIXED_ISO}\g<2>",
                        text,
                    )
                blob = text.encode("utf-8")
            zi = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zi.create_system = 0
            dst.writestr(zi, blob)
    return out.getvalue()


def _set_core_properties(cp, title: str, subject: str, keywords: str) -> None:
    cp.author = AUTHOR
    cp.title = title
    cp.subject = subject
    cp.keywords = keywords
    cp.last_modified_by = AUTHOR
    cp.revision = 1
    cp.created = FIXED_DATETIME
    cp.modified = FIXED_DATETIME


# --------------------------------------------------------------------------------------
# DOCX: engineering design note
# --------------------------------------------------------------------------------------


def make_docx() -> bytes:
    from docx import Document

    doc = Document()
    _set_core_properties(
        doc.core_properties,
        "Design note: MothGate adaptive dimming controller",
        "Engineering design note DN-031",
        "MothGate, dimming, firmware, Hearthbeam, Cinderpost",
    )

    doc.add_heading("Design Note DN-031: MothGate Adaptive Dimming Controller", level=1)
    doc.add_paragraph(
        "Author: Sunniva Okonkwo, Firmware Platform team. Reviewers: Tomas Reyes-Halloran "
        "and Henrik Bakke. Status: approved on 20 January 2026 for firmware train Cedar."
    )

    doc.add_heading("Problem", level=2)
    doc.add_paragraph(
        "Customers with Hearthbeam floodlights and Cinderpost bollards near water or woodland "
        "complain that swarms of moths and midges gather at the lights on summer evenings. "
        "Insects are drawn mostly by blue and ultraviolet light. Turning the light off is not "
        "acceptable for safety lighting, and a fixed warm colour makes the light look dim "
        "for the rest of the year."
    )

    doc.add_heading("Proposal", level=2)
    doc.add_paragraph(
        "MothGate is a firmware component that detects insect swarms and temporarily shifts "
        "the light to a warm amber output at reduced brightness. It runs on the light's own "
        "microcontroller, so it works even when the Lanternhall hub is offline."
    )

    doc.add_heading("How detection works", level=3)
    doc.add_paragraph(
        "The ambient light sensor is sampled at 2 kHz. Insects flying through the beam cause "
        "short reflections that show up as flicker between 40 Hz and 300 Hz. MothGate counts "
        "flicker events in a sliding dwell window and compares the count with the baseline "
        "measured during calibration. When the count stays above the swarm threshold for a "
        "full dwell window, MothGate engages."
    )

    doc.add_heading("What happens when MothGate engages", level=3)
    doc.add_paragraph(
        "The colour temperature glides to 2200 K amber over 4 seconds and the output drops to "
        "no less than 35% of the scheduled brightness. Motion triggers still raise the light "
        "to full brightness for safety. MothGate releases after 10 minutes without swarm "
        "activity, or at the end of the scheduled on-period."
    )

    doc.add_heading("Calibration", level=3)
    doc.add_paragraph(
        "On first power-up, and after each firmware update, MothGate measures the flicker "
        "baseline for 20 minutes after dusk. If the light is switched off during calibration "
        "or a nearby light source flickers, calibration fails and the light reports error "
        "E-330 to the Glowkeeper app."
    )

    doc.add_heading("Parameters", level=2)
    doc.add_paragraph("The default parameters below were tuned in the test garden in Duluth.")
    rows = [
        ("Parameter", "Default", "Range", "Notes"),
        ("Sensor sample rate", "2 kHz", "fixed", "Shared with the dusk sensor"),
        ("Dwell window", "900 ms", "500 to 2000 ms", "Shorter windows cause false triggers"),
        ("Swarm threshold", "3x baseline", "2x to 6x", "Flicker events per dwell window"),
        ("Amber colour temperature", "2200 K", "1800 to 2700 K", "Only on tunable-white models"),
        ("Minimum brightness", "35%", "20% to 60%", "Never below 20% for safety lighting"),
        ("Release delay", "10 minutes", "2 to 30 minutes", "Time without swarm activity"),
        ("Calibration period", "20 minutes", "fixed", "Starts at dusk"),
    ]
    table = doc.add_table(rows=len(rows), cols=len(rows[0]))
    table.style = "Table Grid"
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            table.cell(r, c).text = value

    doc.add_heading("Supported products", level=2)
    doc.add_paragraph(
        "MothGate ships on mains-powered models with tunable-white LEDs: the Hearthbeam "
        "HB-3000, Hearthbeam HB-1500M, Cinderpost CP-90 and Cinderpost CP-90S. Battery models "
        "such as the Fjordlight range do not have the processing headroom and are out of scope."
    )

    doc.add_heading("Alternatives considered", level=2)
    doc.add_paragraph(
        "A passive amber filter was rejected because it cuts light output by 40% all year. "
        "A cloud-side schedule based on weather and season was rejected because it does not "
        "react to actual insect activity and fails when the hub is offline."
    )

    doc.add_heading("Rollout", level=2)
    doc.add_paragraph(
        "MothGate is disabled by default in firmware train Cedar and enabled by default from "
        "train Elm once the field trial at 40 homes around Duluth has finished. Customers can "
        "switch it off under Advanced settings in the Glowkeeper app."
    )

    buf = io.BytesIO()
    doc.save(buf)
    return _normalize_ooxml(buf.getvalue())


# --------------------------------------------------------------------------------------
# PPTX: Glowkeeper overview deck
# --------------------------------------------------------------------------------------


PPTX_SLIDES: list[tuple[str, list[str]]] = [
    (
        "What Glowkeeper does",
        [
            "Schedules every light from sunset and sunrise offsets, scenes and holidays",
            "Sends motion alerts from Hearthbeam and Cinderpost sensors to the phone",
            "Monitors battery health and warns before a pack drops below 70% capacity",
            "Delivers signed firmware updates through the Lampwick bootloader",
            "Needs one Lanternhall LH-1 hub per site, covering up to 60 metres",
        ],
    ),
    (
        "Tiers and pricing",
        [
            "Glowkeeper Home: USD 4 per month or USD 40 per year, up to 15 devices",
            "Glowkeeper Plus: USD 9 per month or USD 90 per year, unlimited devices",
            "Plus adds phone support and 2 extra years of hardware warranty",
            "Glowkeeper Fleet: USD 2.50 per device per month, minimum 25 devices",
            "Fleet is sold only under a master services agreement",
        ],
    ),
    (
        "Launch timeline",
        [
            "Public beta with 1,200 households: May 2023",
            "Home and Plus general availability: 15 September 2023",
            "Fleet tier general availability: 1 October 2024",
            "Android and iOS widgets: March 2025",
        ],
    ),
    (
        "Results so far",
        [
            "61,000 paying subscribers at the end of 2025",
            "Plus is chosen by 34% of new subscribers",
            "Monthly churn on Home is 2.1%, on Plus 1.2%",
            "Fleet has 212 customers, largest is 1,450 devices on one campus",
        ],
    ),
    (
        "Reseller programme",
        [
            "Resellers earn 15% commission on the first year of a subscription",
            "Activations must use the reseller's partner code in the app",
            "Demo kits: one Lanternhall hub, two Fjordlight FL-200 and one Hearthbeam HB-3000",
            "Partner support line answers within 4 business hours",
        ],
    ),
]


def make_pptx() -> bytes:
    from pptx import Presentation
    from pptx.oxml.ns import qn

    prs = Presentation()
    _set_core_properties(
        prs.core_properties,
        "Glowkeeper subscription overview",
        "Reseller briefing, spring 2026",
        "Glowkeeper, subscription, pricing, resellers",
    )

    title_slide = prs.slides.add_slide(prs.slide_layouts[0])
    title_slide.shapes.title.text = "Glowkeeper Subscription Overview"
    title_slide.placeholders[1].text = "Reseller briefing, spring 2026 - Halvorsen Lantern Works"

    for title, bullets in PPTX_SLIDES:
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = title
        body = slide.placeholders[1].text_frame
        body.text = bullets[0]
        for bullet in bullets[1:]:
            body.add_paragraph().text = bullet
        for paragraph in body.paragraphs:
            # An explicit bullet character (instead of the one inherited from the layout),
            # so that readers that only look at the paragraph see a list item.
            p_pr = paragraph._p.get_or_add_pPr()
            p_pr.append(p_pr.makeelement(qn("a:buChar"), {"char": "\u2022"}))

    buf = io.BytesIO()
    prs.save(buf)
    return _normalize_ooxml(buf.getvalue())


# --------------------------------------------------------------------------------------
# XLSX: spare parts price list
# --------------------------------------------------------------------------------------


SPARE_PARTS = [
    ("part_number", "description", "compatible_models", "unit_price_usd", "lead_time_days", "in_stock"),
    ("HLW-BAT-3S18", "Battery pack 3S 18650, 7.8 Ah", "FL-200, FL-420, FL-420W", 34.00, 5, "yes"),
    ("HLW-BAT-LFP12", "LiFePO4 battery pack 12 Ah", "TW-7", 79.00, 12, "yes"),
    ("HLW-BAT-SK", "Skerry battery cartridge 2.4 Ah", "SK-12, SK-24", 14.50, 5, "yes"),
    ("HLW-PNL-FL6", "Solar panel 6 W with 2 m lead", "FL-200, FL-420", 27.00, 10, "yes"),
    ("HLW-LNS-FL-PC", "Polycarbonate lens, frosted", "FL-420, FL-420W", 9.00, 21, "yes"),
    ("HLW-LNS-HB-GL", "Tempered glass front, Hearthbeam", "HB-3000, HB-1500M", 22.00, 21, "no"),
    ("HLW-GSK-CP", "Silicone gasket set, Cinderpost", "CP-90, CP-90S", 6.50, 5, "yes"),
    ("HLW-CAP-CP-ENG", "Custom-engraved bollard cap", "CP-90", 45.00, 28, "made to order"),
    ("HLW-ZNC-TW", "Sacrificial zinc anode", "TW-7", 8.00, 5, "yes"),
    ("HLW-DRV-24V", "24 V LED driver module", "CP-90, CP-90S", 38.00, 35, "yes"),
    ("HLW-PSU-LH1", "USB-C power adapter for hub", "LH-1", 19.00, 5, "yes"),
    ("HLW-DOCK-USBC", "USB-C charging dock", "FL-200, FL-420, SK-12, SK-24", 24.00, 5, "yes"),
]

ACCESSORIES = [
    ("sku", "name", "price_usd", "notes"),
    ("HLW-ACC-SPIKE", "Ground spike, pack of 4", 12.00, "For Fjordlight path lights"),
    ("HLW-ACC-PIER", "Pier mounting bracket", 29.00, "Stainless steel, for Tidewatch TW-7"),
    ("HLW-ACC-EXT10", "Northglim 10 m extension string", 39.00, "Max 3 extensions per controller"),
    ("HLW-ACC-DEMO", "Reseller demo kit", 199.00, "Partners only"),
]


def make_xlsx() -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    _set_core_properties(
        wb.properties,
        "Spare parts price list 2026",
        "Spare parts and accessories",
        "spare parts, price list, Halvorsen",
    )
    wb.properties.creator = AUTHOR
    wb.properties.lastModifiedBy = AUTHOR

    ws = wb.active
    ws.title = "Spare parts"
    for row in SPARE_PARTS:
        ws.append(list(row))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for col, width in zip("ABCDEF", (18, 36, 30, 15, 15, 14)):
        ws.column_dimensions[col].width = width

    ws2 = wb.create_sheet("Accessories")
    for row in ACCESSORIES:
        ws2.append(list(row))
    for cell in ws2[1]:
        cell.font = Font(bold=True)

    buf = io.BytesIO()
    wb.save(buf)
    return _normalize_ooxml(buf.getvalue())


# --------------------------------------------------------------------------------------
# PDF: a small dependency-free PDF 1.4 writer (Helvetica base-14, text only)
# --------------------------------------------------------------------------------------

# Glyph widths of Helvetica for ASCII 32..126, in 1/1000 em (from the base-14 AFM metrics).
_HELV_WIDTHS = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
]
_BULLET = "\u2022"  # bullet; cp1252 / WinAnsiEncoding code 0x95


def _text_width(text: str, size: float, bold: bool = False) -> float:
    total = 0
    for ch in text:
        code = ord(ch)
        total += _HELV_WIDTHS[code - 32] if 32 <= code <= 126 else 556
    return total * size / 1000 * (1.06 if bold else 1.0)


def _wrap(text: str, width: float, size: float, bold: bool = False) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if current and _text_width(candidate, size, bold) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


class SimplePdf:
    """Lays out headings, paragraphs and bullet items on US Letter pages."""

    PAGE_W, PAGE_H = 612, 792
    MARGIN_X, TOP, BOTTOM = 72, 720, 80
    STYLES = {  # kind: (font, size, leading, space_before, space_after)
        "h1": ("F2", 18, 22, 0, 10),
        "h2": ("F2", 13, 16, 12, 6),
        "p": ("F1", 10.5, 14, 0, 8),
        "li": ("F1", 10.5, 14, 0, 4),
    }

    def __init__(self, title: str, footer: str) -> None:
        self.title = title
        self.footer = footer
        self.pages: list[list[str]] = []
        self._y = 0.0
        self._new_page()

    def _new_page(self) -> None:
        self.pages.append([])
        self._y = self.TOP

    def _line(self, font: str, size: float, x: float, y: float, text: str) -> None:
        self.pages[-1].append(f"BT /{font} {size:g} Tf {x:g} {y:g} Td ({_pdf_escape(text)}) Tj ET")

    def add(self, kind: str, text: str) -> None:
        font, size, leading, before, after = self.STYLES[kind]
        bold = font == "F2"
        indent = 8 if kind == "li" else 0
        width = self.PAGE_W - 2 * self.MARGIN_X - indent
        lines = _wrap(text, width, size, bold)
        if kind == "li" and len(lines) > 1:
            # Wrapped bullet lines are split apart by PDF text extraction; keep items short.
            raise ValueError(f"list item does not fit on one line: {text!r}")
        needed = before + leading * len(lines) + (leading * 2 if kind.startswith("h") else 0)
        if self._y - needed < self.BOTTOM:
            self._new_page()
        elif self.pages[-1]:
            self._y -= before
        for line in lines:
            self._y -= leading
            if kind == "li":
                line = f"{_BULLET}  {line}"
            self._line(font, size, self.MARGIN_X + indent, self._y, line)
        self._y -= after

    def page_break(self) -> None:
        if self.pages[-1]:
            self._new_page()

    def render(self) -> bytes:
        n_pages = len(self.pages)
        # Object numbers: 1 catalog, 2 pages, 3 Helvetica, 4 Helvetica-Bold, 5 info,
        # then for page i: 6 + 2i (page), 7 + 2i (content stream).
        objects: dict[int, bytes] = {}
        kids = " ".join(f"{6 + 2 * i} 0 R" for i in range(n_pages))
        objects[1] = b"<< /Type /Catalog /Pages 2 0 R >>"
        objects[2] = f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode()
        objects[3] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
        objects[4] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"
        objects[5] = (
            f"<< /Title ({_pdf_escape(self.title)}) /Author ({AUTHOR}) "
            f"/Producer (make_sample_corpus.py) /CreationDate (D:20260301090000Z) "
            f"/ModDate (D:20260301090000Z) >>"
        ).encode()
        for i, ops in enumerate(self.pages):
            footer = f"{self.footer} - page {i + 1} of {n_pages}"
            content = "\n".join(ops + [f"BT /F1 8 Tf {self.MARGIN_X} 40 Td ({_pdf_escape(footer)}) Tj ET"])
            stream = content.encode("cp1252")
            objects[6 + 2 * i] = (
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {self.PAGE_W} {self.PAGE_H}] "
                f"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {7 + 2 * i} 0 R >>"
            ).encode()
            objects[7 + 2 * i] = (
                f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream"
            )

        out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        offsets: dict[int, int] = {}
        for num in sorted(objects):
            offsets[num] = len(out)
            out += f"{num} 0 obj\n".encode() + objects[num] + b"\nendobj\n"
        xref_at = len(out)
        size = max(objects) + 1
        out += f"xref\n0 {size}\n".encode()
        out += b"0000000000 65535 f \n"
        for num in range(1, size):
            out += f"{offsets[num]:010d} 00000 n \n".encode()
        out += (
            f"trailer\n<< /Size {size} /Root 1 0 R /Info 5 0 R >>\nstartxref\n{xref_at}\n%%EOF\n"
        ).encode()
        return bytes(out)


ONBOARDING: list[tuple[str, str]] = [
    ("h1", "Welcome to Halvorsen Lantern Works: New Starter Onboarding Guide"),
    ("p", "This guide is for everyone joining Halvorsen Lantern Works, whether you work in the "
          "Duluth head office, the Grand Marais factory or the Bergen design studio. It explains "
          "what happens in your first weeks, which tools you will use and who to ask for help. "
          "Version 5, January 2026, maintained by the People Team."),
    ("h2", "About Halvorsen"),
    ("p", "Halvorsen Lantern Works was founded in 1987 by Sigrid Halvorsen in a garage in Duluth, "
          "Minnesota, making hand-soldered brass lanterns for lake cabins. Today we employ about "
          "340 people and design outdoor lighting for homes, marinas and campuses: the Fjordlight, "
          "Skerry, Cinderpost, Hearthbeam, Tidewatch and Northglim ranges, the Lanternhall hub, "
          "and the Glowkeeper subscription service that ties them together."),
    ("h2", "Before your first day"),
    ("li", "Sign your contract and tax forms in Lanternbook, our HR portal, using the link in your offer email."),
    ("li", "Choose your laptop: Linux or macOS for engineering, Windows for everyone else."),
    ("li", "Send a badge photo to the People Team at least 5 working days before you start."),
    ("h2", "Your first day"),
    ("p", "Arrive at 09:00. Your onboarding buddy meets you at reception, gives you your badge and "
          "laptop, and takes you to lunch. In the afternoon IT sets up your accounts and your "
          "hardware security key, which you need to log in to every internal system."),
    ("h2", "Your first week"),
    ("li", "Monday: welcome session with the Head of People and a tour of the test garden."),
    ("li", "Tuesday: product basics and a hands-on Fjordlight FL-200 installation."),
    ("li", "Wednesday: meet your team and agree your 30-60-90 day goals with your manager."),
    ("li", "Thursday: shadow a Customer Operations agent for two hours on the support line."),
    ("li", "Friday: the weekly all-hands at 15:00 Central, where new starters introduce themselves."),
    ("h2", "Everyday tools"),
    ("li", "Lanternbook: HR portal for leave, payslips, benefits and your personal details."),
    ("li", "Coinlamp: expense claims and supplier invoice approvals."),
    ("li", "Wickdesk: customer support tickets and the internal IT helpdesk."),
    ("li", "The Beacon: our internal wiki, where every team keeps its runbooks and decisions."),
    ("li", "Chat and video calls for day-to-day work; email for customers and suppliers."),
    ("h2", "Mandatory training"),
    ("p", "Complete the following courses in Lanternbook within your first 10 working days. Your "
          "access to production systems and customer data is switched on only after the security "
          "and privacy courses are done."),
    ("li", "Information security basics (45 minutes)."),
    ("li", "Privacy and customer data handling (30 minutes)."),
    ("li", "Workshop and factory safety (60 minutes, needed for Grand Marais access)."),
    ("li", "Code of conduct and anti-bribery (30 minutes)."),
    ("h2", "The buddy programme"),
    ("p", "Every new starter gets a buddy from a different team for the first 3 months. Your buddy "
          "is not your manager: they are there for the questions you might not want to ask your "
          "manager, like where to find the good coffee or how the Friday demo works. Buddies meet "
          "you at least once a week for the first month."),
    ("h2", "Probation and check-ins"),
    ("p", "The probation period is 6 months. You will have check-ins with your manager at 30, 60 "
          "and 90 days and a probation review at the end of month 5. Either side can end the "
          "employment with 2 weeks of notice during probation."),
    ("h2", "Hours and locations"),
    ("li", "Core hours are 10:00 to 15:00 local time; otherwise you plan your day with your team."),
    ("li", "Office-based roles work on site at least 3 days a week."),
    ("li", "Remote roles visit the Duluth head office twice a year."),
    ("li", "Factory shifts in Grand Marais run 06:00-14:30 and 14:30-23:00."),
    ("h2", "Key contacts"),
    ("li", "Laptop, accounts or security key: the IT helpdesk queue in Wickdesk."),
    ("li", "Pay, leave and benefits: the People Team through Lanternbook."),
    ("li", "Expenses: the Finance team through Coinlamp."),
    ("li", "Anything else: your buddy first, then your manager."),
    ("p", "Welcome aboard. We are glad you are here to help people light up the dark."),
]


def make_pdf() -> bytes:
    pdf = SimplePdf(
        "Welcome to Halvorsen Lantern Works: New Starter Onboarding Guide",
        "Halvorsen Lantern Works - Onboarding Guide",
    )
    for kind, text in ONBOARDING:
        if kind == "h2" and text in ("Everyday tools", "Probation and check-ins"):
            pdf.page_break()
        pdf.add(kind, text)
    return pdf.render()


# --------------------------------------------------------------------------------------


OUTPUTS = {
    "engineering/design-note-mothgate.docx": make_docx,
    "products/glowkeeper-overview.pptx": make_pptx,
    "products/spare-parts-price-list.xlsx": make_xlsx,
    "company/onboarding-guide.pdf": make_pdf,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="corpus root (default: data/sample)")
    args = parser.parse_args()
    for rel, maker in OUTPUTS.items():
        path = args.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = maker()
        path.write_bytes(data)
        print(f"wrote {rel} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
