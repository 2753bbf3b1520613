"""The careful reader: warcio reads one record, or finds one damaged region, at a given offset.

A gzip member is decompressed here (`GzipMember`) and warcio parses its bytes, so that the member's
end and its damage are known exactly: a member cut short, or failing its check, damages its record
whatever warcio made of the bytes it got. A plain record is read by warcio from the file itself.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO

from warcio.archiveiterator import ARCIterator, ArchiveIterator, WARCIterator
from warcio.bufferedreaders import BufferedReader
from warcio.exceptions import ArchiveLoadFailed
from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeadersParserException

from stages.extract.classify import HtmlPage, Record, classify
from stages.extract.http_head import HttpHead

GZIP_MAGIC = b"\x1f\x8b"
BLOCK_BYTES = 1 << 14  # warcio reads 16 KiB blocks; gzip members are often smaller
# What warcio raises on bytes that are not a record. AttributeError: a request or response header
# block cut before its WARC-Target-URI (warcio calls None.startswith).
WARC_DAMAGE = (
    ArchiveLoadFailed, StatusAndHeadersParserException, EOFError, zlib.error, ValueError, AttributeError
)

# warcio ends quietly (EOFError) at a record whose block ends before its HTTP headers do.
QUIET_STOP = "corrupt_truncated"

Step = tuple[list[HtmlPage | str], str | None, int | None]


def read_one(stream: BinaryIO, offset: int, size: int, arc: bool, max_html_bytes: int) -> Step:
    """Read the record at `offset`: (outcomes, damage reason or None, next offset), the next offset
    None when the bytes after the damage must be searched for the next record."""
    offset = skip_blank(stream, offset)
    if offset is None:
        return [], None, size
    stream.seek(offset)
    if stream.read(2) == GZIP_MAGIC:
        return _read_member(stream, offset, arc, max_html_bytes)
    stream.seek(offset)
    return _read_plain(stream, offset, arc, max_html_bytes)


def _read_plain(stream: BinaryIO, offset: int, arc: bool, max_html_bytes: int) -> Step:
    records = _records(stream, arc)
    try:
        record = next(records)
        outcome = classify(_record(record, arc), offset, max_html_bytes)
        records.read_to_end()
    except StopIteration:
        return [], QUIET_STOP, None
    except WARC_DAMAGE:
        return [], "corrupt_record", None
    damage = _record_damage(record)
    if damage:
        return [], damage, None
    return [outcome, *_stray_line(records)], None, records.offset


def _read_member(stream: BinaryIO, offset: int, arc: bool, max_html_bytes: int) -> Step:
    member = GzipMember(stream, offset)
    records = _records(member, arc)
    record, outcomes, damage = None, [], None
    try:
        record = next(records, None)
        if record is not None:
            outcome = classify(_record(record, arc), offset, max_html_bytes)
            records.read_to_end()
            damage = _record_damage(record)
            if not damage:
                outcomes = [outcome, *_stray_line(records)]
                if next(records, None) is not None:
                    damage = "corrupt_record"  # a second record in the member
    except WARC_DAMAGE:
        damage = "corrupt_record"
    member.read_to_end()
    if member.damage:  # whatever warcio made of the bytes it got, they are not the record's
        return [], damage or ("corrupt_record" if record else member.damage), None
    if record is None and not damage and member.tell():
        damage = QUIET_STOP
    return outcomes, damage, member.end


def _records(stream, arc: bool) -> ArchiveIterator:
    records = ARCIterator(stream, arc2warc=True) if arc else WARCIterator(stream)
    records.reader = BufferedReader(stream)  # never gzip: members come decompressed
    return records


def _record(record: ArcWarcRecord, arc: bool) -> Record:
    headers = record.rec_headers
    return Record(
        rec_type=record.rec_type,
        url=headers.get_header("WARC-Target-URI"),
        record_id=None if arc else headers.get_header("WARC-Record-ID"),  # warcio makes a random one
        date=headers.get_header("WARC-Date"),
        content_type=record.content_type,
        http=None if record.http_headers is None else HttpHead.of(record.http_headers),
        block=record.raw_stream,
    )


def _record_damage(record: ArcWarcRecord) -> str | None:
    if record.length is None:
        return "corrupt_record"  # no Content-Length: a mangled header block, or one cut short
    if record.raw_stream.limit > 0:
        return "corrupt_truncated"  # the bytes ended before the record's Content-Length
    return None


def _stray_line(records: ArchiveIterator) -> list[str]:
    """warcio skips one non-blank line after a record's content (and counts it in err_count)."""
    return ["corrupt_record"] if records.err_count else []


def skip_blank(stream: BinaryIO, offset: int) -> int | None:
    """The offset of the first byte from `offset` on that is not blank, or None."""
    stream.seek(offset)
    while chunk := stream.read(256):
        blank = len(chunk) - len(chunk.lstrip())
        if blank < len(chunk):
            return offset + blank
        offset += blank
    return None


class GzipMember:
    """The decompressed bytes of the gzip member at `start`, as a stream. Once read to its end, `end`
    is where the member ends in the file, or `damage` says why it stopped short."""

    def __init__(self, stream: BinaryIO, start: int):
        stream.seek(start)
        self._stream = stream
        self._start = start
        self._read = 0
        self._out = 0
        self._inflate = zlib.decompressobj(31)
        self.end: int | None = None
        self.damage: str | None = None

    def read(self, size: int = BLOCK_BYTES) -> bytes:
        out = b""
        while not out and self.end is None and self.damage is None:
            data = self._inflate.unconsumed_tail
            if not data:
                data = self._stream.read(BLOCK_BYTES)
                self._read += len(data)
            if not data:
                self.damage = "corrupt_truncated"
                break
            try:
                out = self._inflate.decompress(data, size)
            except zlib.error:
                self.damage = "corrupt_record"
                break
            if self._inflate.eof:
                self.end = self._start + self._read - len(self._inflate.unused_data)
        self._out += len(out)
        return out

    def read_to_end(self) -> None:
        while self.read():
            pass

    def tell(self) -> int:
        return self._out
