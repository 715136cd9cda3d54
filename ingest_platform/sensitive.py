"""Detection and redaction of sensitive values in chunk text, with regular expressions only.

Why regexes plus checksums rather than an NER model: the types we flag have a fixed shape, and the
checksums (Luhn for cards, ISO 13616 mod-97 for IBANs) remove most false positives a loose pattern
would give, at a cost of microseconds per chunk and no new dependency.

Matches of different types can overlap (a card number also looks like a run of phone digits), so
all candidates are resolved by type priority: a span taken by a higher-priority type is never
counted again as a lower one.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Callable, Iterator

log = logging.getLogger(__name__)

# Priority order, most specific first: it decides overlaps.
SENSITIVE_TYPES: tuple[str, ...] = ("email", "iban", "credit_card", "us_ssn", "ipv4", "phone")


@dataclass(frozen=True, slots=True)
class Match:
    type: str
    start: int
    end: int


def placeholder(kind: str, *, compact: bool = False) -> str:
    """``[REDACTED:<type>]``, or ``[<type>]`` where tokens are scarce (see enrichment)."""
    return f"[{kind}]" if compact else f"[REDACTED:{kind}]"


def find_matches(text: str) -> list[Match]:
    """Non-overlapping sensitive spans in ``text``, in order of position."""
    if not text or not _MAYBE_SENSITIVE.search(text):
        return []
    taken: list[Match] = []
    blocked: list[tuple[int, int]] = []
    for kind in SENSITIVE_TYPES:
        for start, end in _FINDERS[kind](text):
            if not any(start < m.end and m.start < end for m in taken) and not any(
                start < b_end and b_start < end for b_start, b_end in blocked
            ):
                taken.append(Match(kind, start, end))
        if kind == "iban":  # an account-number-shaped string that failed the checksum is no phone
            blocked.extend(m.span() for m in _IBAN_SHAPED.finditer(text))
    taken.sort(key=lambda m: m.start)
    return taken


def find_sensitive(text: str) -> dict[str, int]:
    """Count of matches per type; types with no match are absent (so ``{}`` means clean)."""
    return _counts(find_matches(text))


def redact(text: str, *, compact: bool = False) -> str:
    """``text`` with every match replaced by its placeholder."""
    return _replace(text, find_matches(text), compact)


def scan(text: str, *, compact: bool = False) -> tuple[dict[str, int], str]:
    """Counts and redacted text from a single detection pass (what enrichment needs)."""
    matches = find_matches(text)
    return _counts(matches), _replace(text, matches, compact)


def _counts(matches: list[Match]) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in matches:
        out[m.type] = out.get(m.type, 0) + 1
    return out


def _replace(text: str, matches: list[Match], compact: bool) -> str:
    if not matches:
        return text
    parts, pos = [], 0
    for m in matches:
        parts.append(text[pos : m.start])
        parts.append(placeholder(m.type, compact=compact))
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)


# Every type needs a digit except email, which needs "@": most text is skipped with one search.
_MAYBE_SENSITIVE = re.compile(r"[\d@]")

# ---- email ---------------------------------------------------------------------------------------

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@" + _LABEL + r"(?:\." + _LABEL + r")*\.[A-Za-z]{2,24}(?![\w-])"
)


def _emails(text: str) -> Iterator[tuple[int, int]]:
    for m in _EMAIL.finditer(text):
        yield m.span()


# ---- payment cards: 13-19 digits, contiguous or in the printed 4-4-4-4 / 4-6-5 groupings ----------

_CARD = re.compile(
    r"(?<![\w+-])(?:\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{4,5}|\d{13,19})(?!\w)"
)


def luhn_valid(digits: str) -> bool:
    """The Luhn check digit test every payment card number passes (and ~90% of typos fail)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _cards(text: str) -> Iterator[tuple[int, int]]:
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits) and digits.strip("0"):
            yield m.span()


# ---- IBAN ----------------------------------------------------------------------------------------

# ISO 13616 registry lengths; a known country must have exactly its length, which is also how a
# candidate that ran on into the next word is cut back.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
_IBAN = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}")
# The printed shape (groups of four), checksum or not: digit groups inside it are not phones.
_IBAN_SHAPED = re.compile(r"(?<!\w)[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?!\w)")


def iban_valid(iban: str) -> bool:
    """ISO 13616 / ISO 7064 mod-97-10: country and check digits moved to the end, letters as
    10..35, the number mod 97 must be 1."""
    s = iban.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", s):
        return False
    expected = IBAN_LENGTHS.get(s[:2])
    if expected is not None and len(s) != expected:
        return False
    return int("".join(str(int(c, 36)) for c in s[4:] + s[:4])) % 97 == 1


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    for m in _IBAN.finditer(text):
        end = _iban_end(text, m.start(), m.group())
        if end is not None:
            yield m.start(), end


def _iban_end(text: str, start: int, candidate: str) -> int | None:
    """End offset of the valid IBAN that ``candidate`` starts with, if there is one."""
    positions = [i for i, c in enumerate(candidate) if c != " "]
    known = IBAN_LENGTHS.get(candidate[:2])
    lengths = [known] if known else range(min(len(positions), 34), 14, -1)
    for n in lengths:
        if n > len(positions):
            continue
        end = start + positions[n - 1] + 1
        if end < len(text) and text[end].isalnum():
            continue  # the number goes on: not this length
        if iban_valid(text[start:end]):
            return end
    return None


# ---- US social security numbers -------------------------------------------------------------------

# Area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")


def _ssns(text: str) -> Iterator[tuple[int, int]]:
    for m in _SSN.finditer(text):
        yield m.span()


# ---- IPv4 ----------------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(r"(?<![\w.])" + _OCTET + r"(?:\." + _OCTET + r"){3}(?!\w|\.\d)")


def _ipv4s(text: str) -> Iterator[tuple[int, int]]:
    for m in _IPV4.finditer(text):
        yield m.span()


# ---- phone numbers -------------------------------------------------------------------------------

# Shapes: international (+CC ...), North American (555-123-4567, (555) 123-4567, 1-800-...), and
# national numbers with a trunk 0 (020 7946 0958, 06 12 34 56 78, 030 1234567). Requiring a "+",
# a trunk 0 or the NANP 3-3-4 grouping, plus 8-15 digits after a "+" and 9-12 otherwise, keeps years, dates ("01.02.2023",
# "2023-01-15"), versions ("1.2.3") and prices ("$1,299.00") out; the lookarounds stop matches
# inside longer numbers, prices, dates with times and paths.
_PHONE = re.compile(
    r"""
    (?<![\w+$€£¥.,/:-])
    (?:
        \+[1-9]\d{0,2}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){2,6}
      | \(\d{2,5}\)[ .-]?\d{3,4}[ .-]?\d{3,4}
      | (?:1[ .-])?\d{3}([ .-])\d{3}\1\d{4}
      | 0[1-9]\d{0,3}(?:[ .-]?\d{2,5}){1,4}
    )
    (?![\w:-]|[.,/]\d)
    """,
    re.VERBOSE,
)


def _phones(text: str) -> Iterator[tuple[int, int]]:
    for m in _PHONE.finditer(text):
        value = m.group()
        digits = sum(c.isdigit() for c in value)
        low, high = (8, 15) if value.startswith("+") else (9, 12)
        if low <= digits <= high:
            yield m.span()


_FINDERS: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {
    "email": _emails,
    "iban": _ibans,
    "credit_card": _cards,
    "us_ssn": _ssns,
    "ipv4": _ipv4s,
    "phone": _phones,
}
