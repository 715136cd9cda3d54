"""Parse-time pass over raw HTML and Markdown: mark text a reader never sees, and link URLs that
carry text, before the partitioner flattens the markup away; and take a web page's own banner,
footer and navigation out, which are the site's, not the document's.

Why here: unstructured keeps the text of an element hidden by CSS (it does not evaluate styles) and
drops link and image URLs with the markup, so after partitioning neither can be told apart from
ordinary text. This pass wraps each hidden element's text in ``guardrails.HIDDEN_START`` /
``HIDDEN_END`` and inserts a suspicious URL as ``LINK_START url LINK_END`` where the link stood; the
markers travel through partitioning and chunking as ordinary characters, and enrichment
(``guardrails.assess``) counts them, removes them, and under the ``strip`` policy removes what they
enclose. The markers are private-use code points that the embedding tokenizer ignores.

Page furniture: a ``<header>`` or ``<footer>`` that belongs to the page rather than to an article
or section (HTML's ``banner`` and ``contentinfo`` landmarks, or any element with those roles or
``role=navigation``) holds the site menu, the address and the copyright, and a "Skip to main
content" link (an in-page link for keyboard users, hidden by the site's stylesheet) opens the
page. unstructured drops ``<nav>`` and, when a page has one, reads only its ``<main>``; on a page
without ``<main>`` the landmarks' text would open its first chunk and close its last. Pages laid
out in tables, with no landmarks, hold their menu in a table of nothing but links (three or more,
with no word outside them), which is navigation too.
unstructured's own ``skip_headers_and_footers`` removes every ``<header>``, an article's title
block included, so only the page's landmarks are taken here. Two guards keep content: a page
header holding the document's only ``<h1>`` is its title block, and nothing is taken from a page
that would be left with no text.

A document with nothing to mark is returned byte for byte, so this pass never changes how a clean
document parses. Only inline styles and attributes are read (no stylesheets, no scripts): what a
class in an external stylesheet hides is not detected.
"""

from __future__ import annotations

import re

from ingest_platform.guardrails import HIDDEN_END, HIDDEN_START, LINK_END, LINK_START, suspicious_url

_MARKERS = (HIDDEN_START, HIDDEN_END, LINK_START, LINK_END)

# ---- style predicates --------------------------------------------------------------------------

_DECL = re.compile(r"([a-zA-Z-]+)\s*:\s*([^;]+)")
_LENGTH = re.compile(r"^(-?\d*\.?\d+)\s*(px|pt|em|rem|%|vw|vh|cm|mm|in|ex|ch)?$")
_NAMED = {
    "white": (255, 255, 255), "black": (0, 0, 0), "red": (255, 0, 0), "green": (0, 128, 0),
    "blue": (0, 0, 255), "yellow": (255, 255, 0), "gray": (128, 128, 128), "grey": (128, 128, 128),
    "silver": (192, 192, 192), "navy": (0, 0, 128), "whitesmoke": (245, 245, 245),
    "snow": (255, 250, 250), "ivory": (255, 255, 240), "ghostwhite": (248, 248, 255),
}
DEFAULT_BACKGROUND = (255, 255, 255)


def style_of(value: str | None) -> dict[str, str]:
    """``style="..."`` as {property: value}, lower-cased, ``!important`` dropped."""
    if not value:
        return {}
    return {k.strip().lower(): v.replace("!important", "").strip().lower() for k, v in _DECL.findall(value)}


def _length_px(value: str) -> float | None:
    m = _LENGTH.match(value.strip())
    if not m:
        return None
    n, unit = float(m.group(1)), m.group(2) or "px"
    return n * {"pt": 1.33, "em": 16, "rem": 16, "ex": 8, "ch": 8, "cm": 37.8, "mm": 3.78, "in": 96}.get(unit, 1.0)


def parse_color(value: str | None) -> tuple[int, int, int] | None:
    """An RGB triple from a CSS colour (#rgb, #rrggbb, rgb()/rgba(), a few names); None otherwise
    (including transparent, or a colour with alpha 0)."""
    if not value:
        return None
    v = value.strip().lower()
    if v in _NAMED:
        return _NAMED[v]
    if m := re.fullmatch(r"#([0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})", v):
        h = m.group(1)
        if len(h) in (3, 4):
            h = "".join(c * 2 for c in h[:3])
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    if m := re.fullmatch(r"rgba?\(\s*(\d+)[\s,]+(\d+)[\s,]+(\d+)(?:[\s,/]+([\d.]+%?))?\s*\)", v):
        if m.group(4) is not None and float(m.group(4).rstrip("%")) == 0:
            return None
        return tuple(min(255, int(m.group(i))) for i in (1, 2, 3))  # type: ignore[return-value]
    return None


def _background(style: dict[str, str]) -> tuple[int, int, int] | None:
    for prop in ("background-color", "background"):
        if prop in style:
            for token in [style[prop]] + style[prop].split():
                if (c := parse_color(token)) is not None:
                    return c
    return None


def hides(style: dict[str, str], attrs: dict[str, str]) -> str | None:
    """Why an element with this inline style and these attributes is invisible, or None."""
    if "hidden" in attrs:
        return "hidden attribute"
    if style.get("display") == "none":
        return "display:none"
    if style.get("visibility") in ("hidden", "collapse"):
        return "visibility:hidden"
    if (size := _length_px(style.get("font-size", "x"))) is not None and size <= 0.5:
        return "zero font size"
    if style.get("opacity") not in (None, "") and _number(style["opacity"]) == 0:
        return "zero opacity"
    if style.get("position") in ("absolute", "fixed"):
        for prop in ("left", "top", "right"):
            if (px := _length_px(style.get(prop, "x"))) is not None and px <= -500:
                return "off-screen position"
    if (px := _length_px(style.get("text-indent", "x"))) is not None and px <= -500:
        return "off-screen text-indent"
    if "clip" in style and re.search(r"rect\(\s*0(?:px)?[\s,]+0(?:px)?[\s,]+0(?:px)?[\s,]+0(?:px)?\s*\)", style["clip"]):
        return "clipped to nothing"
    return None


def _number(value: str) -> float | None:
    try:
        return float(value.rstrip("%"))
    except ValueError:
        return None


def _same_colour(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return max(abs(x - y) for x, y in zip(a, b)) <= 8


# ---- HTML --------------------------------------------------------------------------------------

_DOCTYPE = re.compile(rb"\s*(?:\xef\xbb\xbf)?\s*<!doctype", re.IGNORECASE)
_SKIP = {"script", "style", "noscript", "template", "head", "title", "meta", "link"}


def _has_text(el) -> bool:
    return any(t.strip() for t in el.itertext())


_SECTIONING = frozenset({"article", "aside", "main", "nav", "section"})
_SKIP_LINK = re.compile(r"\s*(?:skip|jump)\s+(?:to|navigation)\b", re.IGNORECASE)
_WORD = re.compile(r"\w")
MENU_MIN_LINKS = 3


def _link_menu(table) -> bool:
    """A table of at least ``MENU_MIN_LINKS`` links and, outside them, no letter or digit (only
    separators such as ``|`` or ``->``): a layout table holding a site menu."""
    links = [a.text_content() for a in table.iter("a") if a.get("href")]
    if sum(1 for text in links if _WORD.search(text)) < MENU_MIN_LINKS:
        return False
    return len(_WORD.findall(table.text_content())) == sum(len(_WORD.findall(text)) for text in links)


def _page_furniture(body) -> list:
    """The page's own banner, footer and navigation elements (see the module docstring)."""
    found = []

    def visit(el, sectioned: bool) -> None:
        if not isinstance(el.tag, str):
            return
        tag, role = el.tag.lower(), (el.get("role") or "").strip().lower()
        if role == "navigation" or (not sectioned and (tag in ("header", "footer") or role in ("banner", "contentinfo"))):
            found.append(el)
            return
        if tag == "a" and (el.get("href") or "").startswith("#") and _SKIP_LINK.match(el.text_content() or ""):
            found.append(el)  # a skip link
            return
        if tag == "table" and _link_menu(el):
            found.append(el)
            return
        for child in el:
            visit(child, sectioned or tag in _SECTIONING)

    visit(body, False)
    if not found:  # most documents: no second pass over the body
        return []
    top_headings = len(body.findall(".//h1"))

    def title_block(el) -> bool:
        is_banner = el.tag.lower() == "header" or (el.get("role") or "").strip().lower() == "banner"
        return is_banner and 0 < len(el.findall(".//h1")) == top_headings

    found = [el for el in found if not title_block(el)]
    text = sum(len(t.strip()) for t in body.itertext())
    taken = sum(len(t.strip()) for el in found for t in el.itertext())
    return found if taken < text else []


def _mark_html(data: bytes) -> bytes:
    from lxml import etree, html

    try:  # parse_bytes hands every HTML document over as UTF-8
        root = html.fromstring(data, parser=html.HTMLParser(encoding="utf-8"))
    except (etree.ParserError, ValueError):
        return data
    body = root.find(".//body")
    body = body if body is not None else root
    furniture = _page_furniture(body)
    for el in furniture:
        el.drop_tree()  # its tail, text that follows it, stays
    changed = bool(furniture)

    def walk(el, colour, background, hidden: bool) -> None:
        nonlocal changed
        if not isinstance(el.tag, str) or el.tag.lower() in _SKIP:
            return
        style = style_of(el.get("style"))
        colour = parse_color(style.get("color")) or colour
        background = _background(style) or background
        now_hidden = hidden
        # The style test first: it is cheap, and the text test walks the subtree.
        if not hidden and (hides(style, dict(el.attrib)) or (
            colour is not None and "color" in style and _same_colour(colour, background)
        )) and _has_text(el):
            _wrap(el)
            changed = now_hidden = True
        tag = el.tag.lower()
        if tag in ("a", "img") and not now_hidden:
            url = el.get("href" if tag == "a" else "src") or ""
            if suspicious_url(url, image=tag == "img"):
                el.tail = f" {LINK_START}{url}{LINK_END} " + (el.tail or "")
                changed = True
        for child in el:
            walk(child, colour, background, now_hidden)

    walk(body, None, DEFAULT_BACKGROUND, False)
    if not changed:
        return data
    doctype = root.getroottree().docinfo.doctype if _DOCTYPE.match(data) else ""
    out = html.tostring(root, encoding="utf-8", method="html")
    return (doctype.encode() + b"\n" + out) if doctype else out


def _wrap(el) -> None:
    """Put the hidden markers around ``el``'s whole text content (not its tail, which is visible)."""
    el.text = HIDDEN_START + (el.text or "")
    children = list(el)
    if children:
        children[-1].tail = (children[-1].tail or "") + HIDDEN_END
    else:
        el.text += HIDDEN_END


# ---- Markdown ----------------------------------------------------------------------------------

_MD_LINK = re.compile(r"(!?)\[([^\]\n]{0,500})\]\(\s*<?([^()\s<>]+(?:\([^()\s]*\)[^()\s<>]*)*)>?(?:\s+[\"'][^\"'\n]*[\"'])?\s*\)")
_INLINE_HTML = re.compile(r"<(span|div|p|font|small|section|aside|a)\b([^>]*)>(.*?)</\1\s*>", re.IGNORECASE | re.DOTALL)
_ATTR = re.compile(r"([\w-]+)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>]+)))?")


def _mark_markdown(text: str) -> str:
    """Suspicious link URLs after their link, and inline HTML hidden by its own style, marked."""

    def link(m: re.Match) -> str:
        if suspicious_url(m.group(3), image=bool(m.group(1))):
            return f"{m.group(0)} {LINK_START}{m.group(3)}{LINK_END}"
        return m.group(0)

    def inline(m: re.Match) -> str:
        attrs = {a.lower(): (v1 or v2 or v3 or "") for a, v1, v2, v3 in _ATTR.findall(m.group(2))}
        style = style_of(attrs.get("style"))
        colour = parse_color(style.get("color"))
        if m.group(3).strip() and (hides(style, attrs) or (colour is not None and _same_colour(colour, _background(style) or DEFAULT_BACKGROUND))):
            return f"<{m.group(1)}{m.group(2)}>{HIDDEN_START}{m.group(3)}{HIDDEN_END}</{m.group(1)}>"
        return m.group(0)

    return _INLINE_HTML.sub(inline, _MD_LINK.sub(link, text))


def mark_hidden(data: bytes, fmt: str) -> bytes:
    """``data`` (UTF-8 HTML or Markdown) with hidden text and suspicious link URLs marked; the same
    bytes when there is nothing to mark or the format is neither.

    >>> mark_hidden(b'<p>Hi<span style="display:none">secret</span></p>', "html").count("\\ue000".encode())
    1
    """
    if fmt not in ("html", "md"):
        return data
    if any(m.encode() in data for m in _MARKERS):  # ours alone: a document cannot forge them
        data = data.decode("utf-8", "replace").translate({ord(m): None for m in _MARKERS}).encode("utf-8")
    if fmt == "html":
        return _mark_html(data)
    if fmt == "md":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return data
        marked = _mark_markdown(text)
        return data if marked == text else marked.encode("utf-8")
    return data
