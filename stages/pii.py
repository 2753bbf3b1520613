"""PII redaction: email addresses, public IP addresses and reliably formatted phone numbers.

LLaMA-2 removed data from sites known to hold much personal information (that is the quality
stage's URL blocklist); this module masks what is left inside pages kept, as FineWeb does with
datatrove's `PIIFormatter`. `redact_pii(text)` returns the new text and a Counter with
`emails_redacted`, `ips_redacted` and `phones_redacted`.

What is matched, and what it becomes (placeholders are cycled within a document, starting afresh
in each, so the output does not depend on document order):

- Emails: datatrove's `PIIFormatter` regex (RFC 5322-ish, domain with at least one dot), minus
  matches whose last domain label is not alphabetic or is a file extension (`icon@2x.png`,
  `lodash@4.17.21`) and addresses at RFC 2606 reserved names (`example.com`, `*.test`, ...).
  Replaced with datatrove's own placeholders `email@example.com`,
  `firstname.lastname@example.org`, which are at reserved names.
- IPv4: datatrove's regex, validated by datatrove's `public_ip_validator`: only globally routable
  addresses (ipaddress `is_global`). Private, loopback, link-local, CGNAT and documentation ranges
  are kept: `192.168.1.1` in a router manual identifies nobody. Added guards against version and
  section numbers: no letter, digit or dot right before it, nor a word character or `.digit`
  after it (`1.2.3.4.5`, `v10.2.3.4`), no "version/release/section/..." just before it, and not
  all four octets single digits (`2.3.1.4`; this also keeps `8.8.8.8`, `1.1.1.1`, public
  resolvers rather than people). Replaced with RFC 5737 documentation addresses (`192.0.2.1`,
  `198.51.100.1`, `203.0.113.1`), not datatrove's default replacements, which are routable
  public addresses that a second pass would redact (and count) again.
- IPv6 (datatrove has none): full or `::`-compressed form, valid for `ipaddress`, global, and in
  the global unicast block 2000::/3; so times (`12:30:45`) and hex words (`dead::beef`) stay.
  Replaced with `2001:db8::1` (documentation prefix).
- Phones, only formats that are hard to mistake for something else:
  - NANP (US, Canada, Caribbean) with separators: `(415) 555-2671`, `415-555-2671`,
    `415.555.2671`, `415 555 2671`, `+1 415 555 2671`, `1-800-555-2671`; area code and exchange
    start with 2-9; the fictional 555-0100..0199 block is left alone.
  - International E.164 with a leading `+` and separators: `+44 20 7946 0958`,
    `+33 1 23 45 67 89`, `+49 (0)30 1234567`: 8 to 15 digits; `+12 345 678` (thousands grouping)
    is not a phone.
  Not redacted: national formats without a country code outside NANP (`020 7946 0958`),
  7-digit local numbers, numbers without separators. Guards around each match reject years,
  dates (`2021-05-12`, `12.05.2021`), prices (`$1,234.56`), ISBNs (`978-0-306-40615-7`) and
  numbers glued to letters or other digits. Replaced with fictional NANP numbers
  (`202-555-0100`, `202-555-0123`, `202-555-0199`), which the NANP rule skips, so redaction is
  idempotent.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

from datatrove.pipeline.formatters.pii import PIIFormatter, public_ip_validator

_DATATROVE = PIIFormatter()  # only its compiled regexes and default email replacements are used

EMAIL_RE: re.Pattern = _DATATROVE.emails_replacer.regex
EMAIL_REPLACEMENTS: tuple[str, ...] = _DATATROVE.emails_replacer.replacements
_FILE_EXTENSIONS = frozenset(
    "png jpg jpeg gif svg webp bmp ico tif tiff pdf js mjs css json xml txt html htm php asp aspx "
    "mp3 mp4 wav zip gz tar md py".split()
)

# RFC 2606 reserved names identify nobody (and are the placeholders, so a second pass finds nothing)
_RESERVED_EMAIL_DOMAIN = re.compile(r"(?:^|\.)(?:example\.(?:com|org|net)|[^.]+\.(?:example|invalid|test|localhost))$")

IPV4_RE = re.compile(r"(?<![\w.])(?:" + _DATATROVE.ip_replacer.regex.pattern + r")(?!\w|\.\d)")
IPV4_REPLACEMENTS = ("192.0.2.1", "198.51.100.1", "203.0.113.1")
_VERSION_CONTEXT = re.compile(
    r"(?:\bv|\bver\.?|\bversion|\brelease|\brev\.?|\brevision|\bbuild|\bsection|\bsec\.?|\bchapter|"
    r"\bch\.?|\brule|\bclause|\bstep|§)\s*$",
    re.IGNORECASE,
)

IPV6_RE = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:]|\.\d)")
IPV6_REPLACEMENTS = ("2001:db8::1",)
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")

_PHONE_TAIL = r"(?![\w-]|[.,]\d)"
NANP_RE = re.compile(
    r"(?<![\w+.-])"
    r"(?:\+?1[ .-]?)?+"  # optional country code
    r"(?:\((?P<area_p>[2-9]\d\d)\)[ .-]?|(?P<area>[2-9]\d\d)[ .-])"  # (415) or 415-
    r"(?P<exchange>[2-9]\d\d)[ .-](?P<line>\d{4})" + _PHONE_TAIL
)
INTERNATIONAL_RE = re.compile(
    r"(?<![\w+])\+[1-9]\d{0,3}"  # + country code (and possibly the first digits after it)
    r"(?:(?:[ -]?\(\d{1,4}\)[ -]?|[ -])\d{1,8}){1,6}+" + _PHONE_TAIL
)
_THOUSANDS = re.compile(r"\+\d{1,3}(?: \d{3})+")
PHONE_REPLACEMENTS = ("202-555-0100", "202-555-0123", "202-555-0199")


def _valid_email(match: re.Match) -> bool:
    domain = match.group(0).rsplit("@", 1)[-1].lower()
    tld = domain.rsplit(".", 1)[-1]
    if not (tld.isalpha() or tld.startswith("xn--")) or tld in _FILE_EXTENSIONS:
        return False
    return not _RESERVED_EMAIL_DOMAIN.search(domain)


def _valid_ipv4(match: re.Match) -> bool:
    address = match.group(0)
    if all(len(octet) == 1 for octet in address.split(".")):
        return False
    if _VERSION_CONTEXT.search(match.string, max(0, match.start() - 12), match.start()):
        return False
    return public_ip_validator(address, public_only=True)


def _valid_ipv6(match: re.Match) -> bool:
    try:
        address = ipaddress.IPv6Address(match.group(0))
    except ValueError:
        return False
    return address.is_global and address in _GLOBAL_UNICAST


def _valid_nanp(match: re.Match) -> bool:
    return not (match["exchange"] == "555" and match["line"].startswith("01"))


def _valid_international(match: re.Match) -> bool:
    number = match.group(0)
    digits = sum(c.isdigit() for c in number)
    return 8 <= digits <= 15 and not _THOUSANDS.fullmatch(number)


_RULES = (
    ("emails_redacted", EMAIL_RE, _valid_email, EMAIL_REPLACEMENTS),
    ("ips_redacted", IPV4_RE, _valid_ipv4, IPV4_REPLACEMENTS),
    ("ips_redacted", IPV6_RE, _valid_ipv6, IPV6_REPLACEMENTS),
    ("phones_redacted", INTERNATIONAL_RE, _valid_international, PHONE_REPLACEMENTS),
    ("phones_redacted", NANP_RE, _valid_nanp, PHONE_REPLACEMENTS),
)


def redact_pii(text: str) -> tuple[str, Counter]:
    """Mask emails, public IP addresses and reliably formatted phone numbers in `text`."""
    counts: Counter = Counter()
    for counter, regex, valid, replacements in _RULES:
        found = 0

        def replace(match: re.Match) -> str:
            nonlocal found
            if not valid(match):
                return match.group(0)
            found += 1
            return replacements[(found - 1) % len(replacements)]

        text = regex.sub(replace, text)
        if found:
            counts[counter] += found
    return text, counts
