"""Bytes to HTML text: the HTTP charset, then the <meta> charset, then UTF-8, then detection."""

from __future__ import annotations

import codecs
import re

import charset_normalizer

MAX_REPLACED_SHARE = 0.01
CHARSET_SNIFF_BYTES = 4096

# Browsers decode these labels as the superset encoding; pages declaring the subset rely on it.
CHARSET_SUPERSETS = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
}
CONTENT_TYPE_CHARSET = re.compile(r"charset\s*=\s*[\"']?([^\"';\s]+)", re.IGNORECASE)
META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([a-z0-9_:.+-]+)", re.IGNORECASE)


def decode_html(body: bytes, http_charset: str | None) -> str | None:
    """Decode with the HTTP charset, then the <meta> charset, then UTF-8, then detection."""
    declared = [c for c in (_codec(http_charset), _codec(_meta_charset(body), from_meta=True)) if c]
    for codec in dict.fromkeys([*declared, "utf-8"]):
        try:
            return body.decode(codec)
        except UnicodeDecodeError:
            pass
    guess = charset_normalizer.from_bytes(body).best()
    if guess is not None:
        return str(guess)
    if declared:  # mostly right with a few bad bytes: what a browser would show
        text = body.decode(declared[0], errors="replace")
        if text.count("\ufffd") <= MAX_REPLACED_SHARE * len(text):
            return text
    return None


def content_type_charset(content_type: str) -> str | None:
    match = CONTENT_TYPE_CHARSET.search(content_type)
    return match.group(1) if match else None


def _meta_charset(body: bytes) -> str | None:
    match = META_CHARSET.search(body[:CHARSET_SNIFF_BYTES])
    return match.group(1).decode("ascii") if match else None


def _codec(label: str | None, from_meta: bool = False) -> str | None:
    """Python's codec for a charset label, or None for an unknown or non-text one."""
    if not label:
        return None
    try:
        name = codecs.lookup(label).name
        # Not a text codec (base64, rot13), or one that cannot decode bytes with replacement
        # (idna, undefined) raises here. (Empty bytes would decode without the check.)
        b"\xff".decode(name, "replace")
    except (LookupError, ValueError):
        return None
    # A page that reached us as bytes through a <meta> cannot really be UTF-16 (HTML spec).
    if from_meta and name.startswith(("utf-16", "utf-32")):
        return "utf-8"
    return CHARSET_SUPERSETS.get(name, name)
