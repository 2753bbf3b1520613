"""The careful reader: warcio reads the record at a given offset, or every record of the gzip member
there, and finds the damaged regions on the way.

A gzip member is decompressed here (`members`) and warcio parses its bytes record after record, as
it parses a plain file, so that the member's end and its damage are known exactly: a member cut
short, or failing its check, damages the record being read when it failed, whatever warcio made of
the bytes it got. A plain record is read by warcio from the file itself.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from warcio.archiveiterator import ARCIterator, ArchiveIterator, WARCIterator
from warcio.bufferedreaders import BufferedReader
from warcio.exceptions import ArchiveLoadFailed
from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeadersParserException

from stages.extract.classify import HtmlPage, Record, classify
from stages.extract.http_head import HttpHead
from stages.extract.members import GzipMember, read_fully
from stages.extract.resync import HISTORY, LOOKAHEAD, RECORD_START, next_record_start

GZIP_MAGIC = b"\x1f\x8b"
# What warcio raises on bytes that are not a record. AttributeError: a request or response header
# block cut before its WARC-Target-URI (warcio calls None.startswith).
WARC_DAMAGE = (
    ArchiveLoadFailed, StatusAndHeadersParserException, EOFError, zlib.error, ValueError, AttributeError
)
HEADER_END = re.compile(rb"\n\r?\n")

# warcio ends quietly (EOFError) at a record whose block ends before its HTTP headers do.
QUIET_STOP = "corrupt_truncated"


@dataclass(frozen=True)
class Damage:
    """A damaged region, `skipped` bytes of the file long, counting as `records` records (the record
    ids seen in it, at least one); `to_end` when it runs to the end of the file."""

    reason: str
    skipped: int
    to_end: bool
    records: int = 1


Outcome = HtmlPage | str | Damage


class Step(NamedTuple):
    """What warcio made of the bytes at an offset: `next` is where the next record may start (None
    after damage: to be searched for); `record_read` whether there was a record at all."""

    outcomes: list[HtmlPage | str]
    damage: str | None
    next: int | None
    record_read: bool


Reading = Generator[Outcome, None, int]  # yields outcomes, returns where reading goes on


def read_one(stream: BinaryIO, offset: int, size: int, arc: bool, max_html_bytes: int) -> Reading:
    """Yield the outcome of the record at `offset`, or of every record of the gzip member there, and
    the damaged regions met; return the offset reading goes on at."""
    offset = skip_blank(stream, offset)
    if offset is None:
        return size
    stream.seek(offset)
    if stream.read(2) == GZIP_MAGIC:
        return (yield from _read_member(stream, offset, size, arc, max_html_bytes))
    step = _read_plain(stream, offset, arc, max_html_bytes, (offset, 0))
    yield from step.outcomes
    if step.damage:
        return (yield from _skip_damage(stream, step.damage, offset, size, arc))
    return step.next


def _skip_damage(stream: BinaryIO, reason: str, start: int, size: int, arc: bool) -> Reading:
    """The damaged region from `start` to the next record in the file."""
    found = next_record_start(stream, start + 1, arc)
    end = size if found.offset is None else found.offset
    yield Damage(reason, end - start, end >= size, max(found.record_ids, 1))
    return end


def _read_member(stream: BinaryIO, offset: int, size: int, arc: bool, max_html_bytes: int) -> Reading:
    """The records of the gzip member at `offset`, one or several (a whole-file gzip), each outcome
    passed on as soon as read. Bytes of the member that are not a record cost the records there;
    a member that is cut, stops decompressing or fails its check costs the record being read then,
    and reading goes on at the next record of the file."""
    member = GzipMember(stream, offset, HISTORY)
    position = first = skip_blank(member, 0)
    start, step = offset, None
    while position is not None and not member.ends_before(position):
        start = offset if position == first else member.file_offset(position)
        step = _read_plain(member, position, arc, max_html_bytes, (offset, position - first))
        if member.damage:
            break
        if not step.damage:
            yield from step.outcomes
            position, step = step.next, None  # warcio has passed the blank lines after the record
            continue
        found = next_record_start(member, max(position, member.oldest()) + 1, arc, members=False)
        if member.damage:
            break
        end = member.end if found.offset is None else member.file_offset(found.offset)
        yield Damage(step.damage, end - start, end >= size, max(found.record_ids, 1))
        position, step = found.offset, None
    if member.damage:
        return (yield from _skip_damage(stream, _member_damage(member, step), start, size, arc))
    return member.end


def _member_damage(member: GzipMember, step: Step | None) -> str:
    if member.damage == "corrupt_truncated":  # the file ends inside the member
        return "corrupt_truncated"
    if step and step.record_read and step.damage:
        return step.damage  # what the record was found to be, as its bytes stopped
    return "corrupt_record"


def _read_plain(
    stream: BinaryIO, offset: int, arc: bool, max_html_bytes: int, page_at: tuple[int, int]
) -> Step:
    """The record at `offset` of `stream`; a page's offset and offset in its member are `page_at`."""
    stream.seek(offset)
    records = _records(stream, arc)
    record = None
    try:
        record = next(records)
        if record.length is None:  # no Content-Length: a mangled header block, or one cut short
            return Step([], _cut_short(stream, offset, arc) or "corrupt_record", None, True)
        outcome = classify(_record(record, arc), page_at[0], max_html_bytes, page_at[1])
        records.read_to_end()
    except StopIteration:
        return Step([], QUIET_STOP, None, False)
    except WARC_DAMAGE:
        if record is None:  # its header block: cut short, or not a record
            return Step([], _cut_short(stream, offset, arc) or "corrupt_record", None, False)
        return Step([], "corrupt_record", None, True)
    if record.raw_stream.limit > 0:
        return Step([], "corrupt_truncated", None, True)  # the bytes ended before the Content-Length
    if not record.length and _cut_short(stream, offset, arc):
        return Step([], "corrupt_truncated", None, True)  # cut after "Content-Length:", read as 0
    return Step([outcome, *_stray_line(records)], None, records.offset, True)


def _cut_short(stream: BinaryIO, offset: int, arc: bool) -> str | None:
    """corrupt_truncated if the bytes end inside the header block of the WARC record at `offset`."""
    if arc:
        return None
    stream.seek(offset)
    head = read_fully(stream, LOOKAHEAD)
    if len(head) < LOOKAHEAD and RECORD_START[False].match(head) and not HEADER_END.search(head):
        return "corrupt_truncated"
    return None


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
