"""The fast reader: FastWARC over the healthy stretches of a WARC, vouching only for the records it
reads exactly as warcio would; `warcio_reader` reads the others.

FastWARC parses the WARC headers; the HTTP headers are parsed by `http_head`, to warcio's rules, and
payloads are decoded by warcio's readers, so pages and reasons are warcio's. warcio reads a record
instead when FastWARC fails on it, or where the two could differ:

- a version warcio refuses (FastWARC takes WARC/0.9), a Content-Length other than FastWARC's (a
  repeated one), whitespace or undecodable bytes in a field used here (FastWARC joins continuation
  lines with a space, warcio without), a value ending in a space (FastWARC continues a value with a
  blank-looking line, which ends warcio's header block), a record cut short;
- in a plain file, anything but blank lines between a record's content and the next record
  (FastWARC also reads a record right after the content);
- in a gzip file, anything but one record per member (warcio reads a member holding several, a
  whole-file gzip, on its own). FastWARC reads on across members, so this shows only in its offsets
  (`stream_pos`) and in gzip's size field: a second record in a member repeats the member's offset,
  or gives a position inside the member's compressed bytes, where no member starts, or the next
  member's, or the end of the file; a record split over members leaves its last member smaller
  than the record. So an outcome is passed on only
  once the two records after it have read well, and warcio takes over at the oldest record not yet
  passed on. At the end, the last member must end the file (FastWARC stops quietly at an empty
  member, where warcio reads on); the last records of a plain file are left to warcio.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Generator
from typing import BinaryIO

from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordPayloadReader

from stages.extract.classify import HTTP_SCHEMES, PAGE_TYPES, HtmlPage, Record, classify, type_reason
from stages.extract.http_head import HttpHead, parse_http_head
from stages.extract.members import GzipMember
from stages.extract.warcio_reader import GZIP_MAGIC, skip_blank

WARC_VERSIONS = ("WARC/1.1", "WARC/1.0", "WARC/0.17", "WARC/0.18")  # warcio's
HTTP_RECORDS = ("response", "request", "revisit")  # warcio parses their HTTP headers
UNSAFE_VALUE = re.compile(r"\s|\ufffd")
FIELDS = ("warc-type", "warc-target-uri", "warc-record-id", "warc-date", "content-length", "content-type")
HEAD_BYTES = 4096
MAX_HEAD_BYTES = 1 << 20
BLOCK_BYTES = 16384
MAX_WARC_HEAD_BYTES = 16384
MAX_GAP_BYTES = 1 << 16
WINDOW = 2


def read_healthy(
    stream: BinaryIO, offset: int, size: int, max_html_bytes: int
) -> Generator[HtmlPage | str, None, int]:
    """Yield the outcomes of the records from `offset` on while FastWARC reads them as warcio would;
    return the offset from which warcio must read (`size` when FastWARC read to the end)."""
    plain = os.pread(stream.fileno(), 2, offset) != GZIP_MAGIC
    stream.seek(offset)
    pending: deque[tuple[int, HtmlPage | str]] = deque()
    last, bound, ended = -1, None, False
    try:
        for record in ArchiveIterator(stream, parse_http=False):
            start = record.stream_pos
            if not last < start < size or last >= 0 and not _follows(stream, plain, bound, start):
                break
            read = _outcome(record, max_html_bytes)
            if read is None:
                break
            outcome, least_bytes = read
            last = start
            bound = _content_end(stream, start, record.content_length) if plain else least_bytes
            pending.append((start, outcome))
            if len(pending) > WINDOW:
                yield pending.popleft()[1]
        else:
            ended = True
    except OSError:
        pass
    if ended and pending and not plain and _member_ends_file(stream, pending[-1][0], size):
        for _, outcome in pending:
            yield outcome
        return size
    # Also where FastWARC stopped quietly: at an empty gzip member (warcio reads on), or at the end
    # of a plain file, where it is not known here that nothing but blank lines follows.
    return pending[0][0] if pending else offset


def _follows(stream: BinaryIO, plain: bool, bound: int | None, start: int) -> bool:
    """Whether the record at `start` follows the one before as warcio needs: in a plain file after
    blank lines only (FastWARC also reads a record right after the content); in a gzip file in a
    member of its own (FastWARC places a later record of a member inside the member's compressed
    bytes, where no member starts), the one before it holding the whole record before (at least
    `bound` bytes), not a tail: warcio calls a record split over two members cut short. os.pread:
    FastWARC is reading `stream`."""
    if plain:
        if bound is None or not 0 < start - bound <= MAX_GAP_BYTES:
            return False
        gap = os.pread(stream.fileno(), start - bound, bound)
        return gap.endswith(b"\n") and gap.isspace()
    around = os.pread(stream.fileno(), 8, start - 4)  # the member before's ISIZE, then this one's magic
    member_bytes = int.from_bytes(around[:4], "little")
    return bound < 1 << 32 and member_bytes >= bound and around.startswith(GZIP_MAGIC, 4)


def _content_end(stream: BinaryIO, start: int, length: int) -> int | None:
    """Where the content of the plain record at `start` ends."""
    head = os.pread(stream.fileno(), MAX_WARC_HEAD_BYTES, start)
    end = head.find(b"\r\n\r\n")
    return None if end < 0 else start + end + 4 + length


def _member_ends_file(stream: BinaryIO, start: int, size: int) -> bool:
    member = GzipMember(stream, start)
    member.read_to_end()
    return member.damage is None and skip_blank(stream, member.end) is None


def _outcome(record: WarcRecord, max_html_bytes: int) -> tuple[HtmlPage | str, int] | None:
    """The record's page or drop reason, as warcio's would be, and the fewest bytes the record can
    take; None when warcio must read it."""
    headers = record.headers
    if not headers.status_line.upper().startswith(WARC_VERSIONS):
        return None
    pairs = headers.astuples()
    if " \n" in "\n".join([value for _, value in pairs]) + "\n":
        return None  # FastWARC continued a value with a blank line, which ends warcio's block
    fields = {name.lower(): value for name, value in reversed(pairs)}  # the first of a repeated name
    rec_type, url, record_id, date, length, content_type = map(fields.get, FIELDS)
    if any(value and UNSAFE_VALUE.search(value) for value in (rec_type, url, record_id, date)):
        return None
    size = record.content_length
    if not (length and length.isdecimal() and int(length) == size):
        return None
    if url and url.startswith("<") and url.endswith(">"):  # warcio strips them (a wget 1.19 bug)
        url = url[1:-1]
    if url is None and size and rec_type in HTTP_RECORDS:
        return None  # warcio fails on it
    reader = record.reader
    if rec_type not in PAGE_TYPES:
        outcome = type_reason(rec_type)
    else:
        http, block = None, reader
        if rec_type == "response" and size and url.startswith(HTTP_SCHEMES):
            head = _http_head(reader, size)
            if head is None:
                return None
            http, block = head
        view = Record(rec_type, url, record_id, date, content_type, http, block)
        outcome = classify(view, record.stream_pos, max_html_bytes)
    reader.consume()
    if reader.tell() != size:
        return None
    header_bytes = len(headers.status_line) + sum(len(name) + len(value) + 3 for name, value in pairs) + 4
    return outcome, header_bytes + size


def _http_head(reader: WarcRecordPayloadReader, size: int) -> tuple[HttpHead, _Rest] | None:
    """(HTTP headers, a stream of the rest of the block), or None if they are too long to parse here."""
    data = b""
    while len(data) < MAX_HEAD_BYTES:
        more = reader.read(max(HEAD_BYTES, len(data)))
        data += more
        if not data:
            return None
        complete = not more or reader.tell() == size
        parsed = parse_http_head(data, complete)
        if parsed:
            http, end = parsed
            return http, _Rest(data[end:], reader)
        if complete:
            return None
    return None


class _Rest:
    """`buffered`, then the rest of `stream`; reads are full, like warcio's, so that warcio's
    decoders see the same blocks."""

    def __init__(self, buffered: bytes, stream):
        self._buf = buffered
        self._stream = stream

    def _fill(self) -> bool:
        if not self._buf:
            self._buf = self._stream.read(BLOCK_BYTES)
        return bool(self._buf)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            data, self._buf = self._buf + self._stream.read(), b""
            return data
        data, self._buf = self._buf[:size], self._buf[size:]
        while len(data) < size and (more := self._stream.read(size - len(data))):
            data += more
        return data

    def readline(self, size: int | None = -1) -> bytes:
        size = -1 if size is None else size
        parts = []
        while size != 0 and self._fill():
            end = self._buf.find(b"\n") + 1 or len(self._buf)
            if size > 0:
                end = min(end, size)
                size -= end
            part, self._buf = self._buf[:end], self._buf[end:]
            parts.append(part)
            if part.endswith(b"\n"):
                break
        return b"".join(parts)
