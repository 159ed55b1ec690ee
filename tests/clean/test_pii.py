"""PII redaction: each kind replaced in realistic sentences, look-alikes (dates, prices, versions, numbers
failing their checksums) left alone, and the counts right."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.clean import pii
from kiln.clean.pii import PLACEHOLDERS, PIIRedactor, iban_ok, luhn_ok, redact
from kiln.clean.pipeline import Document, run_steps


def check(text: str, want: str, **counts: int) -> None:
    got, found = redact(text)
    assert got == want
    assert dict(found) == counts


@pytest.mark.parametrize(
    ("text", "want", "n"),
    [
        ("Questions? Write to john.doe+news@example.co.uk today.", "Questions? Write to <EMAIL> today.", 1),
        ("Contact: jane_smith@mail.example.org, bob@b.io.", "Contact: <EMAIL>, <EMAIL>.", 2),
        ("(first.last@sub-domain.example.com)", "(<EMAIL>)", 1),
    ],
)
def test_emails(text, want, n):
    check(text, want, email=n)


def test_email_lookalikes_survive():
    for text in ["Follow @kiln on social media.", "user@localhost is not routable", "a@b", "price: 5 @ $3"]:
        check(text, text)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("The server at 192.168.0.1 refused.", "The server at <IP> refused."),
        ("Ping 8.8.8.8.", "Ping <IP>."),
        ("Link-local fe80::1ff:fe23:4567:890a is on eth0.", "Link-local <IP> is on eth0."),
        (
            "Docs use 2001:db8::8a2e:370:7334, full 2001:0db8:0000:0000:0000:ff00:0042:8329.",
            "Docs use <IP>, full <IP>.",
        ),
        ("Mapped ::ffff:192.0.2.128 too.", "Mapped <IP> too."),
        # decision: a four-part dotted number that is a valid IPv4 address is an IP, even as a version
        ("Upgrade to release 1.2.3.4 now.", "Upgrade to release <IP> now."),
    ],
)
def test_ip_addresses(text, want):
    check(text, want, ip=1 + text.count("full"))


def test_ip_lookalikes_survive():
    for text in [
        "Version 2.0.1 and v1.2.3.4.5 and 10.0.0.256 and 01.02.03.04.",
        "Meet at 10:30:00, MAC 00:1a:2b:3c:4d:5e, loopback ::1, std::vector<int>.",
        "Ratio 3:2:1, Bible John 3:16.",
    ]:
        check(text, text)


@pytest.mark.parametrize(
    "phone",
    [
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "1-800-555-0199",
        "+1 (555) 123-4567",
        "+1-555-123-4567",
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "020 7946 0958",
        "06 12 34 56 78",
        "+33 6 12 34 56 78",
        "030/1234567",
        "+49 30 1234567",
        "+91 98765 43210",
    ],
)
def test_phone_numbers(phone):
    check(f"Call us on {phone} between 9 and 5.", "Call us on <PHONE> between 9 and 5.", phone=1)


def test_dates_prices_and_numbers_are_not_phones():
    text = (
        "On 2023-10-05 (or 05.10.2023, 10/05/2023) the set cost $1,299.99, down from 1 299 999 rupees; "
        "order 12345678, ext 555-1234, years 1990-2000, ISBN 978-3-16-148410-0, population 8,336,817, "
        "at 12:30, pi is 3.14159265358979, id 20231005123045."
    )
    check(text, text)


@pytest.mark.parametrize(
    "card",
    ["4111 1111 1111 1111", "4111-1111-1111-1111", "5500000000000004", "3782 822463 10005", "6011111111111117"],
)
def test_card_numbers(card):
    check(f"Paid with card {card}, exp 12/27.", "Paid with card <CARD>, exp 12/27.", card=1)


def test_long_numbers_that_fail_luhn_survive():
    assert not luhn_ok("4111111111111112")
    check("Card 4111 1111 1111 1112 was declined.", "Card 4111 1111 1111 1112 was declined.")
    check("Tracking 1234567890123456.", "Tracking 1234567890123456.")  # fails Luhn
    assert luhn_ok("1000000000000008")
    check("Order 1000000000000008 shipped.", "Order 1000000000000008 shipped.")  # passes Luhn, no card prefix


@pytest.mark.parametrize(
    "iban",
    [
        "DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91ABNA0417164300",
    ],
)
def test_ibans(iban):
    check(f"Please transfer to IBAN {iban} by Friday.", "Please transfer to IBAN <IBAN> by Friday.", iban=1)


def test_invalid_ibans_survive():
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    for text in [
        "IBAN DE89 3704 0044 0532 0130 01 (typo).",  # check digits wrong
        "Code GB82WEST1234569876543 here.",  # one character short
        "Part ZZ12 3456 7890 1234 56.",  # no such country
    ]:
        check(text, text)


def test_iban_followed_by_an_upper_case_word_and_adjacent_ibans():
    check("DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX", "<IBAN> BIC COBADEFFXXX", iban=1)
    check("NL91ABNA0417164300 BE68 5390 0754 7034", "<IBAN> <IBAN>", iban=2)


def test_mixed_document_counts():
    text = (
        "Hi, I'm Ann (ann@example.com, +44 20 7946 0958). Send the 250.00 EUR to DE89 3704 0044 0532 0130 00 "
        "or pay by card 4111 1111 1111 1111. My box is 10.0.0.7 / 2001:db8::1; version 3.2.1 ships on 2024-01-02. "
        "Backup mail: ann.b@example.org, office (555) 123-4567."
    )
    got, counts = redact(text)
    assert counts == {"email": 2, "phone": 2, "iban": 1, "card": 1, "ip": 2}
    assert "250.00 EUR" in got and "version 3.2.1" in got and "2024-01-02" in got
    for kind, n in counts.items():
        assert got.count(PLACEHOLDERS[kind]) == n
    assert redact(got) == (got, {})  # idempotent: placeholders are never matched again


def test_custom_replacements_fineweb_style():
    got, counts = redact("a@b.com at 1.2.3.4", {"email": "email@example.com", "ip": "22.214.171.124"})
    assert got == "email@example.com at 22.214.171.124" and counts == {"email": 1, "ip": 1}


def test_step_keeps_documents_and_counts_per_kind():
    docs = [
        Document("1", "Mail me: a.b@example.com or c@example.net"),
        Document("2", "Nothing personal here, version 2.0.1, since 1999."),
        Document("3", "Call +1 (555) 123-4567 from 192.168.1.1"),
    ]
    step = PIIRedactor()
    out = list(run_steps(docs, [step]))
    assert [d.id for d in out] == ["1", "2", "3"] and step.stats.kept == 3 and not step.stats.dropped
    assert out[0].text == "Mail me: <EMAIL> or <EMAIL>" and out[0].metadata["pii"] == {"email": 2}
    assert out[1].text == "Nothing personal here, version 2.0.1, since 1999." and "pii" not in out[1].metadata
    assert out[2].metadata["pii"] == {"phone": 1, "ip": 1}
    assert step.replaced == {"email": 2, "phone": 1, "ip": 1} and step.docs_with_pii == 2
    with pytest.raises(ValueError):
        PIIRedactor({"ssn": "<SSN>"})


# --- the fast patterns are the plain ones ----------------------------------------------------------------------
# kiln's patterns start with their first character's class and check what precedes it with a lookbehind one
# character wider (so re skips to candidates in C), and IPs are only looked for where a cheap hint is found.
# The plain patterns they were written from, which must find exactly the same matches:

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
PLAIN = {
    "_EMAIL_RE": re.compile(
        r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
        r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
    ),
    "_IBAN_RE": re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])"),
    "_CARD_RE": re.compile(r"(?<![\w+.,-])(?<![A-Z]{2}\d{2} )\d(?:[ -]?\d){12,18}(?![\w]|[.,-]\d)"),
    "_IPV4_RE": re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)"),
    "_PHONE_RE": re.compile(
        r"""(?<![\w+.,/-])(?<![A-Z]{2}\d{2}\ )(?:
            \+\d{1,3}(?:[ .-]?\(0?\d{1,4}\))?(?:[ .-]?\d{1,8}){1,6}
          | (?:1[ .-]?)?(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4}
          | (?:\(0\d{1,4}\)[ ]?|0\d{1,4}[ .\-/])\d{2,8}(?:[ .-]\d{2,8}){0,4}
        )(?![\w]|[.,-]\d)""",
        re.X,
    ),
}
PII_PIECES = [
    "0", "1", "2", "5", "7", "9", "12", "123", "555", "0958", "020", "4111", "25", "255", "256", "01",
    " ", " ", "-", ".", ",", "/", ":", "::", "+", "(", ")", "(0)", "@", "a", "Z", "x", "GB", "DE", "BE", "_", "%",
    "ab.c", "example.com", "\n", "é",
]  # fmt: skip
pii_texts = st.one_of(
    st.lists(st.sampled_from(PII_PIECES), max_size=40).map("".join),
    st.text(alphabet="0123456789 .-+()/:,@AZGBDEaxf_%\n", max_size=60),
)


def _spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [m.span() for m in pattern.finditer(text)]


@settings(max_examples=1500, deadline=None)
@given(pii_texts)
def test_fast_patterns_find_what_the_plain_ones_find(text: str) -> None:
    for name, plain in PLAIN.items():
        assert _spans(getattr(pii, name), text) == _spans(plain, text), name
    if _spans(pii._IPV4_RE, text):
        assert pii._IPV4_HINT.search(text)
    if _spans(pii._IPV6_RE, text):
        assert pii._IPV6_HINT.search(text)


@pytest.mark.parametrize(
    "text",
    [
        "+44 20 7946 0958", "x+44 20 7946 0958", "GB82 1-800-555-0199", "GB82 (555) 123-4567", "1 (555) 123-4567",
        "11-555-123-4567", "(020) 7946 0958", "(0201)7946", "0(555) 123-4567", "a4111 1111 1111 1111",
        "DE89 4111111111111111", "255.255.255.255", "1.256.1.1.1", ".1.2.3.4", "aDE89370400440532013000",
        "a@b.co", ".a@b.co", "-a.b@c.de", "2001:db8::1", "1:2", "::",
    ],
)  # fmt: skip
def test_fast_patterns_on_edge_cases(text: str) -> None:
    for name, plain in PLAIN.items():
        for t in (text, f" {text} ", f"({text})", f"A{text}"):
            assert _spans(getattr(pii, name), t) == _spans(plain, t), (name, t)
