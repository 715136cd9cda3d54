"""Sensitive-data detection: each type's positives and look-alike negatives, overlaps, redaction."""

from __future__ import annotations

import pytest

from ingest_platform.sensitive import (
    SENSITIVE_TYPES,
    find_matches,
    find_sensitive,
    iban_valid,
    luhn_valid,
    placeholder,
    redact,
    scan,
)

POSITIVES = {
    "email": ["john.doe@example.com", "a@b.co", "first+tag@mail.example.co.uk", "X_Y-z@sub-domain.org"],
    "phone": [
        "+1 555 123 4567", "+44 20 7946 0958", "+44 (0)20 7946 0958", "+4915112345678", "+33 6 12 34 56 78",
        "(555) 123-4567", "555-123-4567", "555.123.4567", "1-800-555-1234",
        "020 7946 0958", "030 1234567", "06 12 34 56 78", "06.12.34.56.78", "0171-1234567",
    ],
    "credit_card": [
        "4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "5555555555554444",
        "378282246310005", "3782 822463 10005", "6011111111111117", "4222222222222",
    ],
    "iban": [
        "DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "GB82WEST12345698765432", "GB82 WEST 1234 5698 7654 32",
        "FR14 2004 1010 0505 0001 3M02 606", "NL91ABNA0417164300", "NO9386011117947", "CH9300762011623852957",
    ],
    "us_ssn": ["123-45-6789", "078-05-1121", "899-99-9999"],
    "ipv4": ["192.168.1.1", "10.0.0.255", "8.8.8.8", "255.255.255.255", "0.0.0.0"],
}

NEGATIVES = {
    "credit_card (Luhn fails)": ["4111 1111 1111 1112", "4111111111111112", "1234567890123456"],
    "iban (bad checksum)": ["DE89 3704 0044 0532 0130 01", "GB82WEST12345698765433", "NL91ABNA0417164301"],
    "iban (wrong length)": ["DE89 3704 0044 0532 0130 0"],
    "us_ssn (never issued)": ["000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000"],
    "ipv4 (out of range)": ["256.1.1.1", "1.2.3", "01.02.03.04", "192.168.1.300"],
    "dates": ["2023-01-15", "01.02.2023", "01.02.2023 12:30", "15/01/2023", "12/25/2023", "2021-11-22T02:07:49"],
    "years": ["in 1999", "1999 2000 2001 2002", "1999-2005", "from 1990 to 2010"],
    "versions": ["1.2.3", "v2.0.1", "10.0.19041.1234", "version 3.11.4"],
    "prices": ["$1,299.00", "€1.234.567,89", "$5551234567", "12,345,678", "USD 1 234 567"],
    "other numbers": ["3.14159265", "1234567", "000-30653", "20-8143439", "ISBN 978-3-16-148410-0", "zip 02134"],
    "not emails": ["user@localhost", "@handle", "a@b", "name at example dot com"],
}


@pytest.mark.parametrize("kind,value", [(k, v) for k, vs in POSITIVES.items() for v in vs])
def test_positive(kind, value):
    text = f"Contact: {value}. Thanks"
    assert find_sensitive(text) == {kind: 1}
    (m,) = find_matches(text)
    assert text[m.start : m.end] == value


@pytest.mark.parametrize("value", [v for vs in NEGATIVES.values() for v in vs])
def test_negative(value):
    assert find_sensitive(f"Value {value} here.") == {}


def test_validators():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE88 3704 0044 0532 0130 00")
    assert not iban_valid("DE89370400440532013000X")


def test_card_is_not_also_a_phone_and_neighbours_stay_apart():
    text = "Card 4111 1111 1111 1111, call 555-123-4567 or 555-765-4321, ip 10.1.2.3."
    assert find_sensitive(text) == {"credit_card": 1, "phone": 2, "ipv4": 1}


def test_iban_stops_at_the_next_word():
    text = "Pay to DE89 3704 0044 0532 0130 00 AND REF 12"
    (m,) = find_matches(text)
    assert (m.type, text[m.start : m.end]) == ("iban", "DE89 3704 0044 0532 0130 00")


def test_counts_multiple():
    text = "a@b.co, c@d.org; SSN 123-45-6789; 192.168.0.1 and 192.168.0.2"
    assert find_sensitive(text) == {"email": 2, "us_ssn": 1, "ipv4": 2}
    assert find_sensitive("") == {} and find_sensitive("no digits or at signs here") == {}


def test_redaction_removes_every_value():
    values = [v for vs in POSITIVES.values() for v in vs]
    text = "Records: " + "; ".join(f"item {i}: {v}" for i, v in enumerate(values)) + "."
    counts, redacted = scan(text)
    assert sum(counts.values()) == len(values)
    for v in values:
        assert v not in redacted
    assert find_sensitive(redacted) == {}
    for kind in SENSITIVE_TYPES:
        assert placeholder(kind) in redacted
    assert redacted.startswith("Records: item 0: [REDACTED:email]; item 1:")
    assert redact(text) == redacted


def test_redaction_leaves_clean_text_alone():
    text = "Version 1.2.3 shipped on 2023-01-15 for $1,299.00."
    assert redact(text) == text


def test_compact_placeholders():
    assert redact("mail a@b.co now", compact=True) == "mail [email] now"
