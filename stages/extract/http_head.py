"""The HTTP headers the extract stage uses, read from bytes in memory exactly as warcio reads them.

warcio's StatusAndHeadersParser (as ArcWarcRecordLoader runs it on responses, without a status-line
check): lines end at LF, are decoded as UTF-8 (else Latin-1) and right-stripped; the first line blank
after that ends the block; a line starting with a space or tab continues the previous value (appended
as it is); `get_header` finds the first header of a name, case-insensitively. The FastWARC reader
uses `parse_http_head` so that its records get the same headers, and the same payload start, as
warcio's; it finds only the three headers used, which is what makes it fast.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from warcio.statusandheaders import StatusAndHeaders

NAMES = ("content-type", "content-encoding", "transfer-encoding")
# A line that is blank before any right-stripping: warcio's block ends there or before.
BLANK_BYTES = re.compile(rb"\n\r?\n")
# The end of the line before a line blank after right-stripping (patterns lead with a newline: fast).
BLANK_LINE = re.compile(r"\n[^\S\n]*(?:\n|\Z)")
CANDIDATE = re.compile(r"\n(?:%s)[ \t]*:.*(?:\n[ \t].*)*" % "|".join(NAMES), re.IGNORECASE)


class HttpHead(NamedTuple):
    """The status code (warcio's get_statuscode) and the first of each header used, or None."""

    status: str
    content_type: str | None
    content_encoding: str | None
    transfer_encoding: str | None

    @classmethod
    def of(cls, headers: StatusAndHeaders) -> HttpHead:
        return cls(headers.get_statuscode(), *(headers.get_header(name) for name in NAMES))


def parse_http_head(data: bytes, complete: bool) -> tuple[HttpHead, int] | None:
    """(headers, length of the header block) of a block starting with `data`; None when the header
    block may go on past `data` (`complete`: `data` is the whole block)."""
    bound = BLANK_BYTES.search(data)
    if bound:
        head = data[: bound.end()]
    elif complete:
        head = data
    else:
        return None
    text = _decode(head)
    statusline = text.partition("\n")[0].rstrip()
    if not statusline:  # warcio: a blank first line is the whole block
        return HttpHead("", None, None, None), _line_end(head, 0)
    end = BLANK_LINE.search(text)
    block = text[: end.start()] if end else text
    values = {}
    for match in CANDIDATE.finditer(block):
        first, *continued = match.group()[1:].split("\n")
        name, _, value = first.rstrip().partition(":")
        value = value.lstrip() + "".join(line.rstrip() for line in continued)
        values.setdefault(name.rstrip(" \t").lower(), value)
    protocol_status = statusline.split(" ", 1)
    status = protocol_status[1].strip() if len(protocol_status) > 1 else ""
    headers = HttpHead(status.split(" ", 1)[0], *map(values.get, NAMES))
    if len(text) == len(head):  # one byte a character: offsets agree
        return headers, (text.find("\n", len(block) + 1) + 1 or len(text))
    return headers, _line_end(head, block.count("\n") + 1)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "\n".join(_decode_line(line) for line in data.split(b"\n"))


def _decode_line(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("iso-8859-1")


def _line_end(data: bytes, line: int) -> int:
    """The offset after line number `line` (and its LF) in `data`."""
    end = -1
    for _ in range(line + 1):
        end = data.find(b"\n", end + 1)
        if end < 0:
            return len(data)
    return end + 1
