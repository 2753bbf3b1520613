"""Where reading goes on after damage: the next gzip member that decompresses to the start of a
record, or the next line that starts one (`WARC/1.0`, or an ARC v1 header line), whichever is first.

Common Crawl and most crawlers gzip each record on its own, so a damaged member costs that record
only. The file is scanned a window at a time: memory stays bounded whatever the file's size.
"""

from __future__ import annotations

import re
import zlib
from typing import BinaryIO

# Gzip magic, deflate, and no reserved flag bits set.
GZIP_MEMBER = rb"\x1f\x8b\x08[\x00-\x1f]"
WARC_START = rb"WARC/(?:1\.[01]|0\.1[78])\r?\n"
ARC_START = rb"[^\s]+ [^\s]+ [0-9]{14} [^\s]+ [0-9]+\r?\n"  # URL IP date content-type length
CANDIDATES = {
    arc: re.compile(rb"(%s)|\n(?=%s)" % (GZIP_MEMBER, start))
    for arc, start in ((False, WARC_START), (True, ARC_START))
}
RECORD_START = {False: re.compile(WARC_START), True: re.compile(ARC_START)}
WINDOW = 1 << 20
LOOKAHEAD = 1 << 16  # an ARC header line must fit (its URL)


def next_record_start(stream: BinaryIO, start: int, arc: bool) -> int | None:
    """The first offset at or after `start` where a record starts, or None."""
    base = max(start - 1, 0)  # from the newline before a line at `start`
    while True:
        stream.seek(base)
        window = stream.read(WINDOW + LOOKAHEAD)
        pos = 0
        while (match := CANDIDATES[arc].search(window, pos)) and match.start() < WINDOW:
            offset = base + match.start() + (0 if match.group(1) else 1)
            if offset >= start and (not match.group(1) or _member_starts_record(stream, offset, arc)):
                return offset
            pos = match.start() + 1
        if len(window) <= WINDOW:
            return None
        base += WINDOW


def _member_starts_record(stream: BinaryIO, offset: int, arc: bool) -> bool:
    stream.seek(offset)
    try:
        head = zlib.decompressobj(31).decompress(stream.read(LOOKAHEAD), LOOKAHEAD)
    except zlib.error:
        return False
    return RECORD_START[arc].match(head) is not None
