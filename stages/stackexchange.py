"""StackExchange: one site's `Posts.xml` in, one parquet shard of question documents out, each
question followed by its answers sorted by score (LLaMA: "the 28 largest websites, HTML tags
removed, answers sorted by score from highest to lowest").

Input (`input_path`): a per-site archive as published on archive.org (`coffee.stackexchange.com.7z`
holding Posts.xml, Users.xml, ...; Stack Overflow is split, `stackoverflow.com-Posts.7z` holds its
Posts.xml), a site directory holding `Posts.xml`, or a `Posts.xml` path (the site is its parent
directory's name; a RedPajama-style `<site>.xml` file is also read). `site_name` gives the site.
A `.7z` is read with py7zr 1.1.4: only the `Posts.xml` member is decompressed, streamed from a
producer thread through a small bounded queue (1 MiB slices, at most 4 waiting), so neither the XML
nor the archive is ever held in memory or written to disk. (A solid archive must still decompress,
to nothing, the members stored before Posts.xml.)

Site selection: `count_posts` counts the `<row` tags of Posts.xml without parsing XML or HTML (the
size RedPajama ranked sites by: questions + answers + every other post type);
`select_sites(counts, n=28)` takes the n largest, ties broken by site name. Meta sites are ranked
like any other site (RedPajama downloaded them too; its `.meta.` filter is commented out).

Parsing: the XML is fed to expat (`xml.parsers.expat`, the parser under `xml.etree.iterparse`,
used directly because resuming after damage needs push feeding and error line numbers) in blocks
of whole lines; a `<row>` is used from its start tag's attributes, so no tree is built and nothing
needs clearing. The dumps hold one `<row>` a line (Body newlines are `&#xA;`), which lets a damaged
row be skipped instead of ending the file: on an expat error the rows parsed before it are kept,
the first damaged line (the one after the last complete tag: a row cut inside an attribute only
fails on the next line) is dropped as one docs_in, and a fresh parser resumes on the line after it
inside a synthetic `<posts>` root. A UTF-8 BOM, the XML declaration, a `<!DOCTYPE posts SYSTEM ...>`
line (history.meta has one) and CRLF line ends are ordinary XML to expat; no DTD is fetched.

The join (rows are in Id order, and an answer can come years after its question): a private
temporary directory (beside `output_path` unless `tmp_dir` is given; always removed) holds an
SQLite database, journaling off, page cache `cache_mb`. Pass 1 streams the rows once, converts each
body to text and appends questions to `questions(id INTEGER PRIMARY KEY, ...)` and answers to
`answers(id INTEGER PRIMARY KEY, parent, ...)` with an index on (parent, id). Pass 2 walks
`questions ORDER BY id` and `answers ORDER BY parent, id` (both in index order: no sort, see
JOIN_TABLES) side by side, a merge join, holding in Python only the answers of one question.
Memory is the page cache, the expat and queue buffers, a parquet batch and one question; it does
not grow with the site. bench/stackexchange.py memory (history.meta's real rows repeated k times
with shifted Ids, one fresh process each, peak RSS from VmHWM, 65 MB after imports):

    k (rows, MB of XML)      1x (1.7k, 2.6)  16x (27k, 42)  64x (106k, 168)  128x (212k, 336)
    cache_mb=64 (default)    142 MB          184 MB         229 MB           229 MB
    cache_mb=8               141 MB          159 MB         171 MB           171 MB

128x with every answer moved after every question (no question can be finished early): 229 MB too;
a .7z of 16x: 212 MB. The database takes about 0.8x the size of the XML on disk (2.0 MB for
history.meta's 2.6 MB).

HTML to text (`html_to_text`, the stdlib `html.parser` building a small tree, then rendered):
paragraphs, headings, `<div>`s, tables and `<hr>` become blocks separated by one blank line; `<br>`
a line break; list items start with `- ` (`<ul>`) or `1. ` (`<ol>`, honouring `start`), nested and
continuation lines indented under their marker; blockquote lines start with `> `; `<pre>` blocks
are kept verbatim (every space and line break, `<code>` and other tags inside stripped); inline code
keeps its text as is; entities are decoded; elsewhere whitespace runs become one space. Titles are
plain text in the dump (their whitespace is collapsed). Links and images keep their URL, readably:
- `<a href="URL">text</a>` becomes `text (URL)`; just `text` when the text already shows the URL
  (it is the URL, contains it, or is it without the scheme, `www.` or a trailing slash:
  `skeptics.stackexchange.com` for http://skeptics.stackexchange.com), and just `URL` when the
  link has no text. A link whose content is an image of the same URL (SE's "click for full size"
  wrapper) is the image alone; an image linking elsewhere is the image, then ` (URL)`.
- `<img src="SRC" alt="ALT">` becomes `[image: ALT (SRC)]`, or `[image: SRC]` when the alt text is
  missing, SE's placeholder "enter image description here" (69 of the samples' 172 images),
  or the URL itself; `[image: ALT]` without a usable src. So a post that is only an image is no
  longer an `empty_body`.
- Relative URLs (`/questions/123`, `//i.stack.imgur.com/x.png`) are made absolute against the
  site, `https://<site>/`, when the site name is a host name (`coffee.stackexchange.com`; always
  for the archive.org dumps); with any other site name, or html_to_text called without
  `base_url`, they are left as written.
- A URL that is not a web address keeps only the link text: same-page anchors (`#note-1`),
  `mailto:` (the address is either the link text already or private), `javascript:`, `data:`
  (what a web page shows as a link target is http, https or ftp). Tag badges (`rel="tag"` or
  class `post-tag`: `<a href="/questions/tagged/moka">moka</a>`) keep only the tag name.
  Tabs and line breaks inside a URL are removed and spaces written %20 (as a browser does), so a
  URL is one token of the text. Links inside `<pre>` keep only their text (code blocks are verbatim).

Document layout (`text`):

    <title>

    <question body>

    Answer 1 (score 26, accepted):
    <answer body>

    Answer 2 (score 9):
    <answer body>

Answers are sorted by score as integers, high to low (RedPajama compared the strings, putting
"9" before "10" and "-1" after "-13"); ties: the accepted answer first, then the older (lower) Id.
A question without answers is its title and body alone, and is kept by default, as RedPajama kept
every titled post without answers (its filter.py); `keep_unanswered=False` drops them.
Document fields: id `stackexchange/<site>/<question Id>`, source `stackexchange`, and the metadata
in STACKEXCHANGE_SCHEMA: site, question_id, url (`https://<site>/questions/<Id>`), title, score
(the question's), answer_count (answers in the text), accepted_answer_id (the dump's, null when none),
tags (from `<a><b>` or the newer `|a|b|` form), creation_date (verbatim from the dump, UTC), and
post_type (`question` for documents; a dropped row of another type names its type).

Accounting: every `<row>` read is one docs_in; docs_out counts the question documents written; every
other row is dropped under exactly one reason (the audit file, `dropped_path`, has one row per drop:
the raw HTML body for rows dropped in pass 1, the text for answers and question documents):
- `malformed_row`: Id, PostTypeId or Score is missing or not an integer, or an answer has no
  integer ParentId.
- `post_type_<name>`: neither a question nor an answer: `orphaned_tag_wiki` (3), `tag_wiki_excerpt`
  (4), `tag_wiki` (5), `moderator_nomination` (6), `wiki_placeholder` (7), `privilege_wiki` (8),
  `article` (9), `help_article` (10), `collection` (12), `moderator_questionnaire_response` (13),
  `announcement` (14), `collective_discussion` (15), `collective_collection` (17); `post_type_<n>`
  for any other number.
- `duplicate_id`: a question (or an answer) whose Id was already read as a question (an answer).
- `empty_body`: a question or answer whose Body is missing or has no text (deleted content: the
  dumps leave deleted posts out, but keep a few empty rows).
- `answer_merged_into_question`: an answer written inside its question's document.
- `orphan_answer`: an answer whose question is not in the file (deleted, or another post type).
- `answer_of_dropped_question`: an answer whose question was dropped (any reason below or above).
- `unanswered_question`: a question with no answer, only with `keep_unanswered=False`.
- `text_too_short`: a document shorter than `min_text_chars` characters (default 50: Stack Exchange
  requires 15-character titles and 30-character bodies, so this only catches degenerate rows; none
  in the samples).
File damage never raises; each piece counts as one docs_in under its own reason and the rows read
before it are kept as usual:
- `undecodable_row`: a line with bytes that are not UTF-8 (the dumps are UTF-8); reading goes on.
- `malformed_row` also covers a line expat rejects (an invalid character reference such as `&#x1;`,
  broken markup); reading goes on at the next line.
- `corrupt_xml`: the file is truncated (no closing `</posts>`, a row cut off: the cut row is that
  one docs_in), empty, or has garbage after `</posts>`.
- `corrupt_archive`: the .7z cannot be opened or fails while decompressing; reading stops there.
  A truncated .7z loses everything (its header is at the end); corrupt LZMA data loses the 1 MiB
  of compressed input being decoded; a CRC mismatch is only known after the last row (all kept).
- `no_posts_xml`: the archive or directory has no Posts.xml.

Counters: `rows` (every `<row>`), `questions`, `answers`, `other_posts` (rows of other types),
`damaged_lines` (lines skipped by a resync), `xml_bytes` (bytes of Posts.xml read), `html_bytes`
(UTF-8 bytes of the bodies converted), `text_chars` (characters of the documents written),
`unanswered_kept` (documents without answers), `accepted_in_text` (documents whose accepted answer
is among their answers).

Speed (bench/stackexchange.py speed: CPU time, one core of the shared 2-core machine, best of 3,
the whole stage from site directory to parquet): coffee 592 posts in 0.053 s = 11.2k posts/s,
14.4 MB/s of XML; history.meta 1,657 posts in 0.171 s = 9.7k posts/s, 15.3 MB/s. html_to_text is
about 62% of it (16-18 MB/s of HTML alone); keeping link and image URLs costs it under 5% (history.meta,
the most link-dense sample, html_to_text best of 5 before and after). The synthetic 128x site runs at the same rate (21.8 s
CPU for 336 MB), so Stack Overflow's ~100 GB Posts.xml is roughly 2 hours on one core.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from xml.parsers import expat

import pyarrow as pa

from stages.accounting import ShardStats
from stages.documents import DOCUMENT_SCHEMA, DroppedDocuments, ShardWriter, schema_with

SOURCE = "stackexchange"

STACKEXCHANGE_SCHEMA = schema_with(
    DOCUMENT_SCHEMA,
    pa.field("site", pa.string(), nullable=False),
    pa.field("question_id", pa.int64()),
    pa.field("url", pa.string()),
    pa.field("title", pa.string()),
    pa.field("score", pa.int64()),
    pa.field("answer_count", pa.int32()),
    pa.field("accepted_answer_id", pa.int64()),
    pa.field("tags", pa.list_(pa.string())),
    pa.field("creation_date", pa.string()),
    pa.field("post_type", pa.string()),
)

POST_TYPES = {
    1: "question",
    2: "answer",
    3: "orphaned_tag_wiki",
    4: "tag_wiki_excerpt",
    5: "tag_wiki",
    6: "moderator_nomination",
    7: "wiki_placeholder",
    8: "privilege_wiki",
    9: "article",
    10: "help_article",
    12: "collection",
    13: "moderator_questionnaire_response",
    14: "announcement",
    15: "collective_discussion",
    17: "collective_collection",
}

READ_BYTES = 1 << 20  # bytes read (or taken from the archive queue) at a time
MAX_LINE_BUFFER = 16 << 20  # a "line" longer than this is fed without waiting for its newline
QUEUE_SLICES = 4
ROW_START = re.compile(rb"<row[\s/>]")
TAG_ANGLE = re.compile(r"<([^<>]+)>")
INSERT_BATCH = 2000

# The on-disk join. Both tables are rowid tables filled in file (Id) order, so rows are appended
# and packed densely; the (parent, id) index is what pass 2 walks, so neither query sorts.
JOIN_TABLES = (
    "CREATE TABLE questions (id INTEGER PRIMARY KEY, status TEXT, title TEXT, body TEXT,"
    " score INTEGER, accepted INTEGER, tags TEXT, created TEXT)",
    "CREATE TABLE answers (id INTEGER PRIMARY KEY, parent INTEGER NOT NULL, score INTEGER, created TEXT, body TEXT)",
    "CREATE INDEX answers_by_question ON answers (parent, id)",
)
QUESTIONS_IN_ORDER = "SELECT id, status, title, body, score, accepted, tags, created FROM questions ORDER BY id"
ANSWERS_IN_ORDER = "SELECT parent, id, score, created, body FROM answers ORDER BY parent, id"


# --------------------------------------------------------------------------------------------
# Site names and selection
# --------------------------------------------------------------------------------------------


def site_name(input_path: str) -> str:
    """The site of an archive, site directory or Posts.xml path: `coffee.stackexchange.com.7z`,
    `stackoverflow.com-Posts.7z`, `.../coffee.stackexchange.com/`, `.../coffee.stackexchange.com/Posts.xml`
    and `coffee.stackexchange.com.xml` give `coffee.stackexchange.com` / `stackoverflow.com`."""
    path = Path(os.path.normpath(input_path))
    name = path.name
    lower = name.lower()
    if lower.endswith(".7z"):
        name = name[:-3]
    elif lower == "posts.xml":
        name = path.parent.name
    elif lower.endswith(".xml") and not path.is_dir():
        name = name[:-4]
    if name.lower().endswith("-posts"):
        name = name[: -len("-posts")]
    return name


def select_sites(post_counts: dict[str, int], n: int = 28) -> list[str]:
    """The `n` sites with the most posts, largest first; equal counts in site-name order."""
    if n <= 0:
        return []
    return [site for site, _ in sorted(post_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def count_posts(input_path: str) -> int:
    """Number of `<row` tags in the site's Posts.xml, counted on the raw bytes (no XML or HTML
    parsing); a damaged file or archive counts the rows before the damage."""
    count = 0
    tail = b""
    try:
        for chunk in _posts_chunks(input_path):
            buf = tail + chunk
            limit = len(buf) - 4  # a match starting at or after `limit` may be incomplete
            count += sum(1 for m in ROW_START.finditer(buf) if m.start() < limit)
            tail = buf[max(limit, 0):]
        count += len(ROW_START.findall(tail + b" "))  # "<row" at the very end of a cut file is still a row
    except (_ArchiveError, _NoPostsXml):
        pass
    return count


# --------------------------------------------------------------------------------------------
# Reading Posts.xml: plain file, directory or .7z member
# --------------------------------------------------------------------------------------------


class _ArchiveError(Exception):
    """The .7z could not be opened or failed while decompressing."""


class _NoPostsXml(Exception):
    """No Posts.xml in the archive or directory."""


class _Cancelled(Exception):
    """The reader stopped before the archive member was fully read."""


def _posts_file(directory: Path) -> Path:
    for child in sorted(directory.iterdir()):
        if child.name.lower() == "posts.xml" and child.is_file():
            return child
    raise _NoPostsXml(str(directory))


def _posts_chunks(input_path: str) -> Iterator[bytes]:
    """Yield the bytes of the site's Posts.xml in blocks. Raises FileNotFoundError for a missing
    path, _NoPostsXml, and _ArchiveError for a damaged .7z (after yielding what it could read)."""
    path = Path(input_path)
    if not path.exists():
        raise FileNotFoundError(input_path)
    if path.is_dir():
        path = _posts_file(path)
    if path.suffix.lower() == ".7z":
        yield from _archive_chunks(path)
        return
    with open(path, "rb") as f:
        while chunk := f.read(READ_BYTES):
            yield chunk


def _archive_chunks(path: Path) -> Iterator[bytes]:
    import py7zr
    from py7zr.io import Py7zIO, WriterFactory

    try:
        archive = py7zr.SevenZipFile(path, mode="r")
    except Exception as error:  # Bad7zFile, EOFError, lzma/CRC errors on the header, ...
        raise _ArchiveError(f"{type(error).__name__}: {error}") from error
    try:
        try:
            names = archive.getnames()
        except Exception as error:
            raise _ArchiveError(f"{type(error).__name__}: {error}") from error
        members = sorted(n for n in names if n.replace("\\", "/").rsplit("/", 1)[-1].lower() == "posts.xml")
        if not members:
            raise _NoPostsXml(str(path))
        member = min(members, key=lambda n: (n.count("/"), n))
        slices: queue.Queue = queue.Queue(maxsize=QUEUE_SLICES)
        cancelled = threading.Event()
        done = object()

        def put(item) -> None:
            while True:
                if cancelled.is_set():
                    raise _Cancelled
                try:
                    slices.put(item, timeout=0.2)
                    return
                except queue.Full:
                    continue

        class QueueWriter(Py7zIO):
            def write(self, s) -> int:
                view = memoryview(s)
                for start in range(0, len(view), READ_BYTES):
                    put(bytes(view[start:start + READ_BYTES]))
                return len(s)

            def read(self, size=None) -> bytes:
                return b""

            def seek(self, offset, whence=0) -> int:
                return 0

            def flush(self) -> None:
                pass

            def size(self) -> int:
                return 0

        class Factory(WriterFactory):
            def create(self, filename: str) -> Py7zIO:
                return QueueWriter()

        def produce() -> None:
            try:
                archive.extract(targets=[member], factory=Factory())
                put(done)
            except _Cancelled:
                pass
            except BaseException as error:  # noqa: BLE001 - handed to the reading thread
                try:
                    put(_ArchiveError(f"{type(error).__name__}: {error}"))
                except _Cancelled:
                    pass

        producer = threading.Thread(target=produce, name="stackexchange-7z", daemon=True)
        producer.start()
        try:
            while True:
                item = slices.get()
                if item is done:
                    break
                if isinstance(item, _ArchiveError):
                    raise item
                yield item
        finally:
            cancelled.set()
            producer.join()
    finally:
        archive.close()


# --------------------------------------------------------------------------------------------
# Rows: expat over whole lines, resynchronising after a damaged line
# --------------------------------------------------------------------------------------------


def _line_blocks(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Re-cut byte chunks so that each block ends with a newline (the last may not)."""
    pending = b""
    for chunk in chunks:
        buf = pending + chunk
        cut = buf.rfind(b"\n")
        if cut < 0 and len(buf) < MAX_LINE_BUFFER:
            pending = buf
            continue
        if cut < 0:
            yield buf
            pending = b""
        else:
            yield buf[: cut + 1]
            pending = buf[cut + 1:]
    if pending:
        yield pending


class _RowParser:
    """Push parser over Posts.xml blocks; yields ("row", attrs) and damage items:
    ("bad_line", (file line number, line bytes)), ("trailing_garbage", None), ("truncated", None).

    On an expat error the first damaged line is the one after the last complete tag (an
    unterminated attribute can swallow the next, good, row before expat notices): that line is
    skipped and parsing resumes on the line after it, inside a synthetic <posts> root, re-reading
    any good lines the error had swallowed."""

    def __init__(self):
        self.rows: list[dict] = []
        self.depth = 0
        self.root_closed = False
        self.base = 1  # file line of the current parser's line 1
        self.last_line = 0  # file line of the last complete tag
        self._new(first=True)

    def _new(self, first: bool) -> None:
        parser = expat.ParserCreate()
        parser.buffer_text = False
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        self.parser = parser
        if not first:
            # Resume inside the <posts> root: the next lines are rows.
            self.depth = 0
            parser.Parse(b"<posts>", False)
            self.last_line = self.base - 1

    def _start(self, name: str, attrs: dict) -> None:
        self.last_line = self.base + self.parser.CurrentLineNumber - 1
        if name == "row" and self.depth >= 1:
            self.rows.append(attrs)
        self.depth += 1

    def _end(self, name: str) -> None:
        self.last_line = self.base + self.parser.CurrentLineNumber - 1
        self.depth -= 1
        if self.depth == 0 or name == "posts":
            self.root_closed = True

    def _take(self) -> Iterator[tuple[str, object]]:
        rows, self.rows = self.rows, []
        for attrs in rows:
            yield "row", attrs

    def parse(self, blocks: Iterator[bytes]) -> Iterator[tuple[str, object]]:
        # `tail`: the bytes already fed after the last complete tag, from file line `tail_line`.
        tail, tail_line = b"", 1
        next_line = 1  # file line at which the next piece starts
        for block in blocks:
            pieces = [block]  # what is left of the block, last piece first
            while pieces:
                data = pieces.pop()
                try:
                    self.parser.Parse(data, False)
                except expat.ExpatError as error:
                    yield from self._take()
                    if self.root_closed:
                        yield "trailing_garbage", None
                        return
                    error_line = self.base + error.lineno - 1
                    lines = (tail + data).split(b"\n")
                    first_bad = min(max(self.last_line + 1, tail_line), max(error_line, tail_line))
                    index = min(first_bad - tail_line, len(lines) - 1)
                    yield "bad_line", (tail_line + index, lines[index])
                    # The rest of the block goes in line by line: a further error costs one line.
                    rest = [line + b"\n" for line in lines[index + 1:-1]]
                    if lines[-1] and index < len(lines) - 1:
                        rest.append(lines[-1])
                    pieces.extend(reversed(rest))
                    next_line = tail_line + index + 1
                    tail, tail_line = b"", next_line
                    self.base = next_line
                    self._new(first=False)
                    continue
                yield from self._take()
                pending = tail + data
                next_line += data.count(b"\n")
                tail, tail_line = _after_line(pending, tail_line, next_line, self.last_line)
        try:
            self.parser.Parse(b"", True)
            yield from self._take()
        except expat.ExpatError:
            yield from self._take()
            yield ("trailing_garbage" if self.root_closed else "truncated"), None


def _after_line(pending: bytes, first_line: int, end_line: int, line: int) -> tuple[bytes, int]:
    """The part of `pending` (file lines first_line..end_line) after file line `line`, with its
    first line number. Kept only up to MAX_LINE_BUFFER: beyond that the start is forgotten."""
    keep = end_line - line  # newlines to keep from the end
    if keep <= 0:
        return pending[pending.rfind(b"\n") + 1:], end_line
    if line < first_line or len(pending) > MAX_LINE_BUFFER:
        if len(pending) > MAX_LINE_BUFFER:
            return b"", end_line
        return pending, first_line
    position = len(pending)
    for _ in range(keep):
        position = pending.rfind(b"\n", 0, position)
        if position < 0:
            return pending, first_line
    return pending[position + 1:], line + 1


# --------------------------------------------------------------------------------------------
# HTML to text
# --------------------------------------------------------------------------------------------

VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track",
             "wbr"}
# Removed with their contents (SE's sanitizer lets none but img through; the rest for safety).
SKIP_TAGS = {"img", "script", "style", "head", "title", "template", "noscript", "svg", "math", "iframe", "object",
             "video", "audio", "input", "button", "select", "textarea"}
BLOCK_TAGS = {
    "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "dl", "dt", "dd", "details", "summary", "figure",
    "figcaption", "section", "article", "aside", "header", "footer", "nav", "main", "address", "center",
    "caption", "fieldset", "legend", "form",
}
# A start tag of these closes an open <p> (HTML's implied end tag).
CLOSES_P = BLOCK_TAGS | {"ul", "ol", "pre", "blockquote", "table", "hr"}
BR = "\x00"  # XML text never contains NUL, so it can mark a <br> in inline text
WEB_SCHEMES = {"http", "https", "ftp"}
PLACEHOLDER_ALT = {"enter image description here", "image description", "image", "alt text"}
HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
URL_BREAKS = re.compile(r"[\t\n\r]")
URL_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://(?:www\.)?")


class _Node:
    __slots__ = ("tag", "attrs", "children")

    def __init__(self, tag: str, attrs: dict | None = None):
        self.tag = tag
        self.attrs = attrs or {}
        self.children: list = []


class _TreeBuilder(HTMLParser):
    """A forgiving HTML tree: void elements, implied </p> and </li>, stray end tags ignored."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = _Node("#root")
        self.stack = [self.root]

    def _close_to(self, tag: str, stop: set[str]) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            name = self.stack[i].tag
            if name == tag:
                del self.stack[i:]
                return
            if name in stop:
                return

    def handle_starttag(self, tag, attrs):
        if tag in CLOSES_P:
            self._close_to("p", {"blockquote", "li", "td", "th", "div", "dd", "ul", "ol"})
        if tag == "li":
            self._close_to("li", {"ul", "ol"})
        elif tag in ("dt", "dd"):
            self._close_to("dt", {"dl"})
            self._close_to("dd", {"dl"})
        elif tag in ("td", "th"):
            self._close_to("td", {"tr", "table"})
            self._close_to("th", {"tr", "table"})
        elif tag == "tr":
            self._close_to("tr", {"table"})
        node = _Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID_TAGS:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(_Node(tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag == "br":  # </br> is read as <br> by browsers
            self.stack[-1].children.append(_Node("br"))
            return
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def _collapse(inline: list[str]) -> list[str]:
    """Inline text to lines: whitespace runs become one space, BR marks become line breaks."""
    lines = [" ".join(part.split()) for part in "".join(inline).split(BR)]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return lines


class _Blocks:
    def __init__(self):
        self.blocks: list[list[str]] = []
        self.inline: list[str] = []

    def flush(self) -> None:
        if self.inline:
            lines = _collapse(self.inline)
            self.inline = []
            if lines:
                self.blocks.append(lines)

    def add(self, lines: list[str]) -> None:
        self.flush()
        if lines:
            self.blocks.append(lines)


def _render(node: _Node, base: str | None) -> list[list[str]]:
    out = _Blocks()
    _walk(node, out, base)
    out.flush()
    return out.blocks


def _walk(node: _Node, out: _Blocks, base: str | None) -> None:
    for child in node.children:
        if isinstance(child, str):
            out.inline.append(child)
            continue
        tag = child.tag
        if tag == "br":
            out.inline.append(BR)
        elif tag == "img":
            out.inline.append(_image_text(child, base))
        elif tag == "a":
            _link(child, out, base)
        elif tag in SKIP_TAGS:
            continue
        elif tag == "pre":
            out.add(_pre_lines(child))
        elif tag in ("ul", "ol"):
            out.add(_list_lines(child, tag == "ol", base))
        elif tag == "blockquote":
            inner = _flatten(_render(child, base), blank=True)
            out.add([("> " + line) if line else ">" for line in inner])
        elif tag == "table":
            out.add(_table_lines(child, base))
        elif tag == "hr":
            out.flush()
        elif tag in BLOCK_TAGS or tag == "li":
            out.flush()
            _walk(child, out, base)
            out.flush()
        else:  # inline: code, em, strong, span, kbd, sup, sub, s, del, ...
            _walk(child, out, base)


def resolve_url(href: str | None, base: str | None) -> str | None:
    """The web address a link or image points to, made absolute against `base` when relative and
    `base` is given; None for no address or one that is not a web address (module doc)."""
    url = URL_BREAKS.sub("", href or "").strip().replace(" ", "%20")
    if not url or url.startswith("#"):
        return None
    if url.startswith(("https://", "http://")):  # most of them: no parsing needed
        return url
    try:
        scheme = urlsplit(url).scheme.lower()
        if scheme:
            return url if scheme in WEB_SCHEMES else None
        return urljoin(base, url) if base else url
    except ValueError:  # an unparseable address ("http://[x")
        return None


def _shows(text: str, url: str) -> bool:
    """Whether link text already shows `url` (it, or it without scheme, www. and trailing slash)."""
    if url in text:
        return True
    bare = URL_SCHEME.sub("", url.lower()).rstrip("/")
    return bool(bare) and bare in text.lower()


def _image_text(node: _Node, base: str | None) -> str:
    src = resolve_url(node.attrs.get("src"), base)
    alt = " ".join((node.attrs.get("alt") or "").split())
    if not alt or alt.lower() in PLACEHOLDER_ALT or (src and _shows(alt, src)):
        return f"[image: {src}]" if src else ""
    return f"[image: {alt} ({src})]" if src else f"[image: {alt}]"


def _link(node: _Node, out: _Blocks, base: str | None) -> None:
    """A link's content, then its URL where the text does not show it (module doc)."""
    blocks, start = len(out.blocks), len(out.inline)
    _walk(node, out, base)
    url = resolve_url(node.attrs.get("href"), base)
    if url is None or "tag" in (node.attrs.get("rel") or "").split() or "post-tag" in (
        node.attrs.get("class") or ""
    ).split():
        return
    if len(out.blocks) != blocks:  # block content inside the link (rare): the URL after it
        out.inline.append(f" ({url})")
        return
    text = " ".join("".join(out.inline[start:]).replace(BR, " ").split())
    if not text:
        out.inline.append(f" {url}")
    elif not _shows(text, url):
        out.inline.append(f" ({url})")


def _flatten(blocks: list[list[str]], blank: bool) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        if lines and blank:
            lines.append("")
        lines.extend(block)
    return lines


def _raw_text(node: _Node, parts: list[str]) -> None:
    for child in node.children:
        if isinstance(child, str):
            parts.append(child)
        elif child.tag == "br":
            parts.append("\n")
        elif child.tag not in SKIP_TAGS:
            _raw_text(child, parts)


def _pre_lines(node: _Node) -> list[str]:
    parts: list[str] = []
    _raw_text(node, parts)
    text = "".join(parts).replace("\r\n", "\n").replace("\r", "\n")
    if text.startswith("\n"):  # HTML drops one newline right after <pre>
        text = text[1:]
    text = text.rstrip("\n")
    if not text.strip():
        return []
    return text.split("\n")


def _list_lines(node: _Node, ordered: bool, base: str | None) -> list[str]:
    try:
        number = int(node.attrs.get("start") or 1)
    except ValueError:
        number = 1
    lines: list[str] = []
    loose: list = []  # text or inline elements outside any <li>: rendered as an item of their own

    def item(inner: list[str]) -> None:
        nonlocal number
        if not inner:
            return
        marker = f"{number}. " if ordered else "- "
        number += 1
        lines.append(marker + inner[0])
        lines.extend((" " * len(marker) + line) if line else "" for line in inner[1:])

    def flush_loose() -> None:
        if loose:
            holder = _Node("li")
            holder.children = list(loose)
            loose.clear()
            item(_flatten(_render(holder, base), blank=False))

    for child in node.children:
        if isinstance(child, _Node) and child.tag == "li":
            flush_loose()
            item(_flatten(_render(child, base), blank=False))
        elif isinstance(child, str) and not child.strip():
            continue
        else:
            loose.append(child)
    flush_loose()
    return lines


def _table_lines(node: _Node, base: str | None) -> list[str]:
    rows: list[str] = []

    def visit(n: _Node) -> None:
        for child in n.children:
            if not isinstance(child, _Node):
                continue
            if child.tag == "tr":
                cells = []
                for cell in child.children:
                    if isinstance(cell, _Node) and cell.tag in ("td", "th"):
                        cells.append(" ".join(_flatten(_render(cell, base), blank=False)))
                if any(cells):
                    rows.append(" | ".join(cells))
            elif child.tag not in SKIP_TAGS:
                visit(child)

    visit(node)
    return rows


def html_to_text(html: str, base_url: str | None = None) -> str:
    """Plain text of a post body (see the module docstring for the rules); relative link and
    image URLs are resolved against `base_url` ("https://<site>/") when given."""
    if not html:
        return ""
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    blocks = _render(builder.root, base_url)
    return "\n\n".join("\n".join(block) for block in blocks).strip("\n")


# --------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------


def parse_tags(tags: str | None) -> list[str]:
    """`<a><b-c>` (older dumps) or `|a|b-c|` (2024 dumps) -> ["a", "b-c"]."""
    if not tags:
        return []
    if "<" in tags:
        return TAG_ANGLE.findall(tags)
    return [t for t in tags.split("|") if t]


def answer_order(answers: list[tuple], accepted_id: int | None) -> list[tuple]:
    """Answers as (id, score, ...) tuples sorted by integer score high to low, then the accepted
    answer first, then the older (lower) id."""
    return sorted(answers, key=lambda a: (-int(a[1]), a[0] != accepted_id, a[0]))


def layout(title: str, body: str, answers: list[tuple[int, int, str]], accepted_id: int | None) -> str:
    """The document text: title, question body, then each (id, score, text) answer in order."""
    parts = [p for p in (title, body) if p]
    for rank, (answer_id, score, text) in enumerate(answers, 1):
        accepted = ", accepted" if answer_id == accepted_id else ""
        label = f"Answer {rank} (score {score}{accepted}):"
        parts.append(f"{label}\n{text}")
    return "\n\n".join(parts)


def site_base_url(site: str) -> str | None:
    """`https://<site>/` for a site named by its host (coffee.stackexchange.com), else None."""
    return f"https://{site}/" if HOST_NAME.fullmatch(site) else None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def extract_stackexchange(
    input_path: str,
    output_path: str,
    *,
    dropped_path: str | None = None,
    site: str | None = None,
    keep_unanswered: bool = True,
    min_text_chars: int = 50,
    tmp_dir: str | None = None,
    cache_mb: int = 64,
) -> ShardStats:
    """One site's Posts.xml (.7z, directory or file) -> a parquet shard of question documents."""
    stats = ShardStats()
    site = site or site_name(input_path)
    if not Path(input_path).exists():
        raise FileNotFoundError(input_path)
    output = Path(output_path)
    work_parent = Path(tmp_dir) if tmp_dir else output.parent
    work_parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.stackexchange-{uuid.uuid4().hex[:8]}-", dir=work_parent))
    try:
        db = sqlite3.connect(work / "join.sqlite", isolation_level=None)
        try:
            for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=FILE", "locking_mode=EXCLUSIVE",
                           f"cache_size=-{max(1, cache_mb) * 1024}"):
                db.execute(f"PRAGMA {pragma}")
            for statement in JOIN_TABLES:
                db.execute(statement)
            with ShardWriter(output_path, STACKEXCHANGE_SCHEMA) as writer, DroppedDocuments(
                dropped_path, STACKEXCHANGE_SCHEMA
            ) as dropped:
                _load(input_path, site, db, stats, dropped)
                _join(site, db, stats, writer, dropped, keep_unanswered, min_text_chars)
        finally:
            db.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stats.bytes_out = writer.bytes_written
    return stats.check()


def _row_doc(site: str, post_id: int | None, text: str, attrs: dict | None, post_type: str | None) -> dict:
    attrs = attrs or {}
    key = post_id if post_id is not None else (attrs.get("Id") or "unknown")
    parent = _int(attrs.get("ParentId"))
    qid = parent if post_type == "answer" and parent is not None else post_id
    return {
        "id": f"{SOURCE}/{site}/{key}",
        "source": SOURCE,
        "text": text,
        "site": site,
        "question_id": qid,
        "url": f"https://{site}/questions/{qid}" if qid is not None else None,
        "title": attrs.get("Title"),
        "score": _int(attrs.get("Score")),
        "answer_count": None,
        "accepted_answer_id": _int(attrs.get("AcceptedAnswerId")),
        "tags": parse_tags(attrs.get("Tags")),
        "creation_date": attrs.get("CreationDate"),
        "post_type": post_type,
    }


def _load(input_path: str, site: str, db: sqlite3.Connection, stats: ShardStats, dropped: DroppedDocuments) -> None:
    """Pass 1: stream the rows into the join tables; drop what cannot be a question or answer."""
    counters = stats.counters
    base_url = site_base_url(site)

    def damage(reason: str, text: str = "", where: str = "corrupt") -> None:
        stats.docs_in += 1
        stats.drop(reason)
        dropped.add(_row_doc(site, None, text, {"Id": where}, None), reason)

    def drop_row(reason: str, attrs: dict, post_id: int | None, post_type: str | None, text: str | None = None) -> None:
        stats.drop(reason)
        if text is None:
            text = attrs.get("Body") or ""
        dropped.add(_row_doc(site, post_id, text, attrs, post_type), reason)

    def counted(chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            counters["xml_bytes"] += len(chunk)
            yield chunk

    insert_q = "INSERT INTO questions VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    insert_a = "INSERT INTO answers VALUES (?, ?, ?, ?, ?)"
    db.execute("BEGIN")
    pending = 0
    items = _RowParser().parse(_line_blocks(counted(_posts_chunks(input_path))))
    try:
        for kind, item in items:
            if kind != "row":
                if kind == "bad_line":
                    counters["damaged_lines"] += 1
                    line_number, line = item
                    try:
                        damage("malformed_row", line.decode("utf-8").strip(), f"line-{line_number}")
                    except UnicodeDecodeError:
                        damage("undecodable_row", line.decode("utf-8", "replace").strip(), f"line-{line_number}")
                else:
                    damage("corrupt_xml")
                    break
                continue
            attrs = item
            stats.docs_in += 1
            counters["rows"] += 1
            post_id = _int(attrs.get("Id"))
            type_id = _int(attrs.get("PostTypeId"))
            score = _int(attrs.get("Score", "0"))
            if post_id is None or type_id is None or score is None:
                drop_row("malformed_row", attrs, post_id, None)
                continue
            post_type = POST_TYPES.get(type_id, str(type_id))
            if type_id == 2:
                parent = _int(attrs.get("ParentId"))
                if parent is None:
                    drop_row("malformed_row", attrs, post_id, post_type)
                    continue
            elif type_id != 1:
                counters["other_posts"] += 1
                drop_row(f"post_type_{post_type}", attrs, post_id, post_type)
                continue
            body = attrs.get("Body") or ""
            counters["html_bytes"] += len(body.encode("utf-8", "surrogatepass"))
            text = html_to_text(body, base_url)
            try:
                if type_id == 1:
                    counters["questions"] += 1
                    title = " ".join((attrs.get("Title") or "").split())
                    db.execute(insert_q, (
                        post_id, None if text else "empty_body", title, text, score,
                        _int(attrs.get("AcceptedAnswerId")), attrs.get("Tags"), attrs.get("CreationDate"),
                    ))
                else:
                    counters["answers"] += 1
                    if not text:
                        drop_row("empty_body", attrs, post_id, post_type, text)
                        continue
                    db.execute(insert_a, (post_id, parent, score, attrs.get("CreationDate"), text))
            except sqlite3.IntegrityError:
                drop_row("duplicate_id", attrs, post_id, post_type, text)
                continue
            pending += 1
            if pending >= INSERT_BATCH:
                db.execute("COMMIT")
                db.execute("BEGIN")
                pending = 0
    except _ArchiveError as error:
        damage("corrupt_archive", str(error))
    except _NoPostsXml as error:
        damage("no_posts_xml", str(error))
    finally:
        items.close()
    db.execute("COMMIT")


def _join(
    site: str,
    db: sqlite3.Connection,
    stats: ShardStats,
    writer: ShardWriter,
    dropped: DroppedDocuments,
    keep_unanswered: bool,
    min_text_chars: int,
) -> None:
    """Pass 2: merge questions (by id) with answers (by parent, id) into documents."""
    counters = stats.counters
    questions = db.execute(QUESTIONS_IN_ORDER)
    answers = db.execute(ANSWERS_IN_ORDER)

    def answer_doc(row: tuple, reason: str) -> None:
        parent, answer_id, score, created, body = row
        stats.drop(reason)
        dropped.add({
            "id": f"{SOURCE}/{site}/{answer_id}", "source": SOURCE, "text": body, "site": site,
            "question_id": parent, "url": f"https://{site}/questions/{parent}", "title": None,
            "score": score, "answer_count": None, "accepted_answer_id": None, "tags": [],
            "creation_date": created, "post_type": "answer",
        }, reason)

    def emit(question: tuple, group: list[tuple]) -> None:
        qid, status, title, body, score, accepted, tags, created = question
        ordered = answer_order([(a[1], a[2], a[4]) for a in group], accepted)
        text = layout(title, body or "", ordered, accepted)
        doc = {
            "id": f"{SOURCE}/{site}/{qid}", "source": SOURCE, "text": text, "site": site,
            "question_id": qid, "url": f"https://{site}/questions/{qid}", "title": title, "score": score,
            "answer_count": len(ordered), "accepted_answer_id": accepted, "tags": parse_tags(tags),
            "creation_date": created, "post_type": "question",
        }
        reason = status
        if reason is None and not group and not keep_unanswered:
            reason = "unanswered_question"
        if reason is None and len(text) < min_text_chars:
            reason = "text_too_short"
        if reason is not None:
            stats.drop(reason)
            dropped.add(doc, reason)
            for a in group:
                answer_doc(a, "answer_of_dropped_question")
            return
        stats.docs_out += 1
        counters["text_chars"] += len(text)
        if not group:
            counters["unanswered_kept"] += 1
        if accepted is not None and any(a[1] == accepted for a in group):
            counters["accepted_in_text"] += 1
        writer.write(doc)
        for a in group:
            answer_doc(a, "answer_merged_into_question")

    question = next(questions, None)
    answer = next(answers, None)
    while question is not None or answer is not None:
        if answer is None or (question is not None and question[0] < answer[0]):
            emit(question, [])
            question = next(questions, None)
            continue
        parent = answer[0]
        group = []
        while answer is not None and answer[0] == parent:
            group.append(answer)
            answer = next(answers, None)
        if question is not None and question[0] == parent:
            emit(question, group)
            question = next(questions, None)
        else:
            for a in group:
                answer_doc(a, "orphan_answer")
