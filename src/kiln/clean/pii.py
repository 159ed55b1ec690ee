"""PII redaction: replace e-mail addresses, IP addresses, phone numbers, payment card numbers and IBANs.

Why: web text carries personal data (contact pages, forum signatures, leaked lists) that a model can memorise
and reproduce. FineWeb anonymises only e-mail addresses and IP addresses, with datatrove's `PIIFormatter`,
replacing each by one of a few fixed, real-looking stand-ins (`email@example.com`,
`firstname.lastname@example.org`, and public IPs of a few well-known servers) so the text still reads
naturally. kiln also covers phone numbers, card numbers and IBANs, and by default uses bracketed placeholders
`<EMAIL>`, `<IP>`, `<PHONE>`, `<CARD>`, `<IBAN>`: they cannot be mistaken for real data, they are easy to
count and filter later, and a model learns them as "a contact detail goes here" rather than memorising one
fixed address. Pass `replacements` (for example FineWeb's stand-ins) to change them.

Precision over recall: a redaction that hits a date, a price or an order number damages good text, so every
kind is validated beyond its shape:
- e-mail: local part @ dotted domain with an alphabetic top-level domain;
- IPv4: four dotted numbers 0-255 without leading zeros, not part of a longer dotted number. A four-part
  version number such as 1.2.3.4 *is* a valid address, and is redacted: it cannot be told apart;
- IPv6: validated by `ipaddress`, at least two non-empty groups (so "::" and "::1" are left alone), which
  also keeps times (12:30:45) and MAC addresses (00:1a:2b:3c:4d:5e) out;
- card: 13-19 digits in a row, optionally in groups separated by single spaces or dashes, starting with 2-6
  (the major networks' ranges), passing the Luhn checksum (so 9 in 10 random long numbers survive);
- IBAN: a country code with its registered length, two check digits, and the ISO 7064 mod-97 check
  (upper-case, optionally in groups of four separated by spaces);
- phone: an international number (+ country code, 8-15 digits in groups) or a national number in a common
  format: North American ((555) 123-4567, 555-123-4567, 1-800-555-0199) or trunk-prefixed (020 7946 0958,
  06 12 34 56 78, 030/1234567), 9-12 digits. Bare digit strings, 7-digit local numbers and anything shaped like
  a date (2023-10-05, 05.10.2023) are not phones.
Kinds are replaced in that order, e-mails first (an address may contain digits), phones last (after the
longer card and IBAN numbers are gone); the placeholders contain no digits, so a later kind never matches one.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Iterator

from kiln.clean.pipeline import Document, Step

KINDS = ("email", "iban", "card", "ip", "phone")
PLACEHOLDERS: dict[str, str] = {
    "email": "<EMAIL>",
    "ip": "<IP>",
    "phone": "<PHONE>",
    "card": "<CARD>",
    "iban": "<IBAN>",
}

# IBAN lengths by country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip

# Each pattern begins with the character class of its first character and checks what comes before that
# character with a lookbehind one character wider (`x(?<!...x)` rather than `(?<!...)x`): the same matches, but
# re then skips to the candidates in C instead of trying every position of the text (3-4x faster).
_EMAIL_RE = re.compile(
    r"[A-Za-z0-9](?<![\w.%+-][A-Za-z0-9])(?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
_IBAN_RE = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_CARD_RE = re.compile(r"\d(?<![\w+.,-]\d)(?<![A-Z]{2}\d{2} \d)(?:[ -]?\d){12,18}(?![\w]|[.,-]\d)")
_IPV6_RE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:]|\.\d)"
)
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")  # in every IPv6 match: a text without it has none
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4_RE = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")
_IPV4_HINT = re.compile(r"\.\d")  # in every IPv4 match
# The first character is one of + ( or a digit; each alternative checks which with a lookbehind, in the order
# (and with the same backtracking) of the plain pattern:
#     (?<![\w+.,/-])(?<![A-Z]{2}\d{2}\ )(?:
#         \+\d{1,3}(?:[ .-]?\(0?\d{1,4}\))?(?:[ .-]?\d{1,8}){1,6}         # +44 20 7946 0958, +1 (555) 123-4567
#       | (?:1[ .-]?)?(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4}          # (555) 123-4567, 1-800-555-0199
#       | (?:\(0\d{1,4}\)[ ]?|0\d{1,4}[ .\-/])\d{2,8}(?:[ .-]\d{2,8}){0,4}  # 020 7946 0958, 030/1234567
#     )(?![\w]|[.,-]\d)
_PHONE_RE = re.compile(
    r"""[+(\d](?<![\w+.,/-][+(\d])(?<![A-Z]{2}\d{2}\ [+(\d])(?:
        (?<=\+)\d{1,3}(?:[ .-]?\(0?\d{1,4}\))?(?:[ .-]?\d{1,8}){1,6}
      | (?:(?<=1)[ .-]?(?:\(\d{3}\)[ ]?|\d{3}[ .-])|(?<=\()\d{3}\)[ ]?|(?<=\d)\d{2}[ .-])\d{3}[ .-]\d{4}
      | (?:(?<=\()0\d{1,4}\)[ ]?|(?<=0)\d{1,4}[ .\-/])\d{2,8}(?:[ .-]\d{2,8}){0,4}
    )(?![\w]|[.,-]\d)""",
    re.X,
)
_DATE_LIKE_RE = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}(?:\D|$)")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a card number (digits only): every second digit from the right is doubled."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """A compact IBAN (no spaces) with a known country, its registered length and a valid mod-97 check."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _iban(m: re.Match[str], out: list[str]) -> str:
    """Redact the IBAN at the start of the match; the match may run into a following upper-case word."""
    cand = m.group()
    length = IBAN_LENGTHS.get(cand[:2])
    if length is None:
        return cand
    end = seen = 0
    while end < len(cand) and seen < length:
        seen += cand[end] != " "
        end += 1
    if seen < length:
        return cand
    if end < len(cand) and cand[end] != " ":  # the IBAN must end at a group boundary
        return cand
    if not iban_ok(cand[:end].replace(" ", "")):
        return cand
    out.append("iban")
    return PLACEHOLDERS["iban"] + _IBAN_RE.sub(lambda m: _iban(m, out), cand[end:])  # the rest may be one too


def _card(m: re.Match[str], out: list[str]) -> str:
    cand = m.group()
    if " " in cand and "-" in cand:
        return cand
    digits = cand.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or digits[0] not in "23456" or not luhn_ok(digits):
        return cand
    out.append("card")
    return PLACEHOLDERS["card"]


def _ipv6(m: re.Match[str], out: list[str]) -> str:
    cand = m.group()
    if sum(1 for g in cand.split(":") if g) < 2:
        return cand
    try:
        ipaddress.IPv6Address(cand)
    except ValueError:
        return cand
    out.append("ip")
    return PLACEHOLDERS["ip"]


def _phone(m: re.Match[str], out: list[str]) -> str:
    cand = m.group()
    digits = sum(ch.isdigit() for ch in cand)
    if cand.startswith("+"):
        if not 8 <= digits <= 15:
            return cand
    elif not 9 <= digits <= 12 or _DATE_LIKE_RE.match(cand):
        return cand
    out.append("phone")
    return PLACEHOLDERS["phone"]


def redact(text: str, replacements: dict[str, str] | None = None) -> tuple[str, Counter[str]]:
    """Replace the PII in `text`; return the new text and the number of replacements per kind.

    `replacements` maps a kind ("email", "ip", "phone", "card", "iban") to its stand-in; unlisted kinds keep
    the default placeholder. A pure function: the same text gives the same result in any process."""
    found: list[str] = []
    if "@" in text:
        text = _EMAIL_RE.sub(lambda m: (found.append("email"), PLACEHOLDERS["email"])[1], text)
    text = _IBAN_RE.sub(lambda m: _iban(m, found), text)
    text = _CARD_RE.sub(lambda m: _card(m, found), text)
    if _IPV6_HINT.search(text):
        text = _IPV6_RE.sub(lambda m: _ipv6(m, found), text)
    if _IPV4_HINT.search(text):
        text = _IPV4_RE.sub(lambda m: (found.append("ip"), PLACEHOLDERS["ip"])[1], text)
    text = _PHONE_RE.sub(lambda m: _phone(m, found), text)
    counts = Counter(found)
    if replacements:
        for kind, stand_in in replacements.items():
            if counts[kind] and stand_in != PLACEHOLDERS[kind]:
                text = text.replace(PLACEHOLDERS[kind], stand_in)
    return text, counts


class PIIRedactor(Step):
    """Rewrite each document's text with its PII replaced (see `redact`); documents are never dropped.

    Counts per kind go to `doc.metadata["pii"]` (only when something was replaced) and, summed over all
    documents, to `self.replaced`; `self.docs_with_pii` counts the documents that had any."""

    name = "pii"

    def __init__(self, replacements: dict[str, str] | None = None) -> None:
        super().__init__()
        unknown = set(replacements or ()) - set(PLACEHOLDERS)
        if unknown:
            raise ValueError(f"unknown PII kinds: {sorted(unknown)}")
        self.replacements = replacements
        self.replaced: Counter[str] = Counter()
        self.docs_with_pii = 0

    def process(self, docs: Iterable[Document]) -> Iterator[Document]:
        for doc in docs:
            text, counts = redact(doc.text, self.replacements)
            if counts:
                doc.text = text
                doc.metadata["pii"] = dict(counts)
                self.replaced.update(counts)
                self.docs_with_pii += 1
            yield doc
