"""Where reading goes on after damage: the next gzip member that decompresses to the start of a
record, or the next record line (`WARC/1.0`, wherever it is: garbage without a line end may run into
it; an ARC v1 header line at a line start), whichever is first. In a gzip member's own bytes (a
member holding several records) only record lines count.

Common Crawl and most crawlers gzip each record on its own, so a damaged member costs that record
only. The file is scanned a window at a time: memory stays bounded whatever the file's size. The
WARC-Record-ID lines passed on the way are counted: records whose start was damaged.
"""

from __future__ import annotations

import re
import zlib
from typing import BinaryIO, NamedTuple

from stages.extract.members import read_fully

# Gzip magic, deflate, and no reserved flag bits set.
GZIP_MEMBER = rb"\x1f\x8b\x08[\x00-\x1f]"
WARC_START = rb"WARC/(?:1\.[01]|0\.1[78])\r?\n"
ARC_START = rb"[^\s]+ [^\s]+ [0-9]{14} [^\s]+ [0-9]+\r?\n"  # URL IP date content-type length
RECORD_LINE = {False: rb"(?P<line>)%s" % WARC_START, True: rb"\n(?P<line>)(?=%s)" % ARC_START}
CANDIDATES = {
    (arc, members): re.compile(rb"(?P<member>%s)|%s" % (GZIP_MEMBER, line) if members else line)
    for arc, line in RECORD_LINE.items()
    for members in (False, True)
}
RECORD_START = {False: re.compile(WARC_START), True: re.compile(ARC_START)}
RECORD_ID = re.compile(rb"\nWARC-Record-ID:", re.IGNORECASE)
WINDOW = 1 << 20
LOOKAHEAD = 1 << 16  # an ARC header line must fit (its URL)
# What a gzip member holding several records keeps to seek back in: a scanned window, a header block.
HISTORY = WINDOW + 2 * LOOKAHEAD


class Found(NamedTuple):
    offset: int | None  # where a record starts, or None: none up to the end
    record_ids: int  # WARC-Record-ID lines before it


def next_record_start(stream: BinaryIO, start: int, arc: bool, members: bool = True) -> Found:
    """The first offset at or after `start` where a record starts, and the record ids on the way
    from `start - 1` (the damaged record's own, if its header is still there)."""
    base = max(start - 1, 0)  # from the newline before a line at `start`
    record_ids = 0
    while True:
        stream.seek(base)
        window = read_fully(stream, WINDOW + LOOKAHEAD)
        found = _first_start(stream, window, base, start, arc, members)
        end = WINDOW if found is None else found - base
        record_ids += sum(1 for match in RECORD_ID.finditer(window) if match.start() < end)
        if found is not None:
            return Found(found, record_ids)
        if len(window) <= WINDOW:
            return Found(None, record_ids)
        base += WINDOW


def _first_start(
    stream: BinaryIO, window: bytes, base: int, start: int, arc: bool, members: bool
) -> int | None:
    """The first record start in `window` (at `base` in the stream) at or after `start`."""
    pos = 0
    while (match := CANDIDATES[arc, members].search(window, pos)) and match.start() < WINDOW:
        member = members and match.group("member") is not None
        offset = base + match.start("member" if member else "line")
        if offset >= start and (not member or _member_starts_record(stream, offset, arc)):
            return offset
        pos = match.start() + 1
    return None


def _member_starts_record(stream: BinaryIO, offset: int, arc: bool) -> bool:
    stream.seek(offset)
    try:
        head = zlib.decompressobj(31).decompress(stream.read(LOOKAHEAD), LOOKAHEAD)
    except zlib.error:
        return False
    return RECORD_START[arc].match(head) is not None
