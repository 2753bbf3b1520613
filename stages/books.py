"""Books to documents: one shard's worth of book files of one collection in, one parquet shard out.

    extract_books(input_paths, output_path, *, collection, dropped_path=None,
                  min_text_chars=1000, max_book_bytes=64 MiB,
                  language_model=<bundled lid.176.ftz>, languages=None, language_threshold=0.5) -> ShardStats

Inputs (all of one collection, e.g. "gutenberg", "books3"; read in sorted path order, then line):
- one book per file: Project Gutenberg plain text (`pg1342.txt`, `pg1342-0.txt`, `1342-0.txt`,
  `1342.txt`, `1342-8.txt`) or any other plain-text book;
- one book per line: `.jsonl` / `.ndjson` files. Fields: `text` (string, required); `id` (string
  or integer; without one the book id is `<file stem>:<line>`); optional `title`, `author`,
  `language` (strings), looked up at the top level, then in a `meta` object (`meta.title`,
  `meta.short_book_title`, `meta.author`, `meta.language`: the Pile's and RedPajama's layout).
Any of them may be gzipped (recognised by the gzip magic bytes, whatever the name says).

Documents (`BOOK_SCHEMA` = DOCUMENT_SCHEMA + metadata): `id` = "books/<collection>/<book_id>",
`source` = "books". Ids are unique across collections (the collection is part of the id: the same
file read as "gutenberg" and as "pg19" gets two ids, which RedPajama's did not) and within the shard
(a repeated book id is dropped as `duplicate_id`, the first in path order kept); across the shards
of one collection they are unique when the source's ids and file names are (the per-shard function
cannot see other shards). `book_id` is, for a one-book file, its name without `.gz`/`.txt` and
without the `pg` of a Project Gutenberg name (pg1342-0.txt -> "1342-0", so PG's ASCII, UTF-8 and
Latin-1 files of one ebook, 1342.txt / 1342-0.txt / 1342-8.txt, keep distinct ids); for a jsonl
line, its `id`. Metadata columns: collection, book_id, title, author, language (ISO 639-1 code for a
Gutenberg "Language:" line naming one common language, else as written), ebook_number (the PG
number: "[EBook #1342]", "[eBook #2000]", "[Etext #..]" in the header, else the digits of a PG file
name), encoding (the codec the bytes were decoded with; "json" for a jsonl line), source_file (file
name, without its directory, so outputs do not depend on where inputs sit), source_line (1-based
jsonl line; null for a one-book file); language_source, detected_language, detected_language_score
(language identification, below).

Language identification (fastText lid.176 through classifiers.langid, the model the langid stage
uses; `language_model`, default the bundled samples/models/lid.176.ftz; None turns it off). Run on
every book that passes all the other checks, on a bounded sample of its cleaned text: LANGID_SLICES
(8) slices of LANGID_SLICE_CHARS (1,000) characters centred at 1/16, 3/16, ... 15/16 of the text,
their ends moved to the nearest whitespace (a book of at most 8,000 characters is cut into
consecutive 1,000-character slices instead), so the cost per book is fixed (3-4 ms on one core for
the sample books, most of it fastText) however long the book. Each slice gets its most likely
language and probability; the book's `detected_language` is the language with the largest
length-weighted sum of probabilities, `detected_language_score` that sum over the sampled
characters: the mean probability of the winning language over the slices, a slice won by another
language adding 0 (a bilingual edition half in each language scores ~0.5). Pride and Prejudice:
en 0.996; War and Peace: en 0.979; Don Quijote: es 0.973. A detection is confident when its score
is at least `language_threshold` (0.5, CCNet's). Columns:
- `language`: the metadata's (Gutenberg header or jsonl field) when it has one, as before; else the
  detected language when confident; else null. `language_source` says which: "metadata",
  "detected" or null.
- `detected_language`, `detected_language_score`: the detection, whatever its score (null when the
  book was not identified: dropped earlier, or no model). The scores are not named `language_score`
  because `language` need not be the detected language (the langid stage's `language_score` is the
  score of its `language`).
Metadata and detection are compared when the metadata reads as a language code (a PG language name
mapped to its ISO 639-1 code, "en", "en-US", "EN", ISO 639-2 "eng"/"fre" for the languages of
LANGUAGE_CODES; not "Middle English" or "English, French") and
the detection is confident: counters `language_agreements` / `language_disagreements` (a wrong or
defaulted metadata field, a translation catalogued under the original's language).
Keep-list (`languages`, e.g. ["en"]; default None keeps every language, as LLaMA's book collections
were English by construction but their metadata may be wrong): the deciding language is the
confident detection, else the metadata's code; a book whose deciding language is not in the list
is dropped as `language:<code>`, one with neither as `language_unknown`.

Decoding (one-book files; jsonl is UTF-8 by definition): a BOM decides (UTF-8, UTF-16, UTF-32);
else strict UTF-8; else the header's "Character set encoding:" charset (ISO-8859-1 and ASCII read
as cp1252, falling back to Latin-1 for cp1252's five undefined bytes); else UTF-8 with a few bad
bytes when most non-ASCII bytes form valid UTF-8 sequences (>= 10 per bad byte; replaced by U+FFFD,
counted in `replaced_chars`); else charset_normalizer's guess, except that a guess in the Western/
Central-European single-byte family is read as cp1252 (on Latin-1 Don Quijote it guesses cp1250,
which turns every n-tilde into n-acute; PG's 8-bit files are ISO-8859-1); a guessed decoding with
under 1% whitespace is refused (random bytes read as Big5 have none). Then: BOM removed; CRLF
and CR become LF; control characters other than tab and newline removed (form feed becomes LF).

Project Gutenberg header and footer, for any text of any collection that has them:
- the header ends at the START marker line: "*** START OF THE PROJECT GUTENBERG EBOOK X ***" (new
  style), "*** START OF THIS PROJECT GUTENBERG EBOOK X ***" (old style), with or without the spaces
  and "COPYRIGHTED"; a marker whose title wraps onto following lines ends at the line closing it
  with "***". Or at the 1990s small-print end "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*..."
  when that lies before the footer. The later of the two ends the header.
- producer credits right after it are removed (`gutenberg_credits_removed`): up to three leading
  paragraphs of at most 6 lines / 600 characters that start with "Produced by", "This etext was
  prepared by", "E-text prepared by", "Transcribed from/by" and the like, or contain "Distributed
  Proofreading", "pgdp.net", "Internet Archive", "Anonymous Volunteer", "David Widger" (War and
  Peace's credit line is "An Anonymous Volunteer, and David Widger", without "Produced by").
- the footer starts at the first later line beginning "End of the Project Gutenberg EBook of",
  "End of Project Gutenberg's", "*** END OF THE/THIS PROJECT GUTENBERG EBOOK", "***END OF ...",
  "Ende dieses Projekt Gutenberg", "Fin de(l) Proyecto Gutenberg" (any case).
- metadata from the header: Title, Author (continuation lines indented under them are joined),
  Language, "Character set encoding", the EBook number; an old header without a Title line gives
  title and author from "The Project Gutenberg EBook of <title>, by <author>".
Missing markers. The rule is: never keep Project Gutenberg licence text we could not delimit, and
never drop a book only because it has no PG header. So a text that names "Project Gutenberg" in
its first or last 20,000 characters (what remains after whatever marker was found) and lacks the
START marker is dropped as `gutenberg_header_unparsed`, and one that lacks the END marker as
`gutenberg_footer_unparsed`: such a text is a PG file whose header or footer uses a form these
patterns miss (rare: the licence would otherwise be repeated in thousands of books); the drop is
visible in the accounting and in the audit output. A text with no marker and no mention of Project
Gutenberg (an already stripped text such as PG-19's or RedPajama's jsonl, a Books3 book) is kept
whole (`no_gutenberg_markers`); with a START marker and no END marker and no PG mention at its end
(a truncated download) it is kept to its end (`gutenberg_end_missing`); with an END marker and no
START marker and no PG mention at its start, it is kept from its start (`gutenberg_start_missing`).

Whitespace: trailing spaces of every line removed, runs of blank lines collapsed into one blank
line, leading and trailing blank lines removed. Lines keep PG's hard wrapping.

Accounting: every book found is one docs_in: a one-book file, or a non-blank jsonl line (blank lines
are counted in `blank_lines`, not as books). It is written, or dropped for the first reason that
applies (a file: unreadable, corrupt_gzip, too_large, binary/undecodable, then the text checks; a
jsonl line: too_large, undecodable, malformed_json, no_text, binary, then the text checks):
    unreadable                  the file cannot be opened or read (OSError)
    corrupt_gzip                gzip data damaged or truncated (a one-book file: the book; a jsonl
                                file: the damage counts as one more book, the lines before it kept)
    too_large                   a book over max_book_bytes (decompressed bytes of a file or line)
    binary                      NUL bytes without a UTF-16/32 BOM, or over 1% control characters
    undecodable                 no charset decodes it (jsonl: a line that is not UTF-8)
    malformed_json              a jsonl line that is not a JSON object
    no_text                     a JSON object without a string `text`
    gutenberg_header_unparsed   Project Gutenberg text at the start that no START marker delimits
    gutenberg_footer_unparsed   Project Gutenberg text at the end that no END marker delimits
    empty_text                  nothing left after stripping and whitespace clean-up
    text_too_short              fewer than min_text_chars characters left
    duplicate_id                a book id already written in this call (the first kept)
    language:<code>             with `languages` given: the book's language (confident detection,
                                else metadata) is <code>, not in the list
    language_unknown            with `languages` given: no confident detection and no metadata code
Counters: files, jsonl_lines, blank_lines, gzip_files, text_bytes (UTF-8 bytes written),
replaced_chars, control_chars_removed, gutenberg_header_stripped, gutenberg_footer_stripped,
gutenberg_credits_removed, gutenberg_end_missing, gutenberg_start_missing, no_gutenberg_markers,
encoding_<codec> (one-book files by the codec that decoded them); language identification (books
identified, whether then written or dropped by the keep-list): language_identified,
language_low_score (under language_threshold), detected_<code> (confident detections by language),
language_filled (`language` taken from the detection), language_agreements, language_disagreements.
The stage never raises on bad input; it raises ValueError on a bad `collection` name and
FileNotFoundError when `language_model` is missing.

Book-level near-duplicate removal (`BOOK_NEAR_DEDUP`: settings for stages.near_dedup's four phases,
run over the books shards after this stage; minhash_signatures takes num_perm, bands, rows, ngram,
seed, batch_size, find_candidate_pairs verify and threshold). The recipe removes books sharing more
than 90% of their content. With word 5-gram shingles, a copy whose share s of the text is the
original's and the rest other text (paragraphs replaced, a chapter swapped) has Jaccard about
s/(2-s): 0.905 at 95%, 0.818 at 90%, 0.54 at 70%, 0.43 at 60%; a copy that is a part s of the
original (abridged, truncated) has Jaccard s. So "more than 90% shared" is J >= 0.818 and "70% or
less" J <= 0.70. Settings: 256 permutations, 32 bands x 8 rows, verification at 0.76:
- LSH: candidate probability 1-(1-J^8)^32 (stages.near_dedup.candidate_probability) is 0.9992 at
  J=0.818, 0.98 at 0.76, 0.85 at 0.70, 2e-11 at 0.03: no pair over 90% is missed, few others offered.
- Verification at 0.76, between 0.70 and 0.818 about as many standard deviations of a 256-value
  estimate from each (sqrt(J(1-J)/256) = 0.029 and 0.024): P(estimate >= 0.76) is 0.990 at
  J=0.818, 0.9999 at 0.85, 0.017 at 0.70, 1e-4 at 0.65 (binomial). 112 permutations (the web
  default) would give 0.93 and 0.07 at those two points; 256 cost ~1.2x the MinHash time.
Measured with bench/books.py (exact Jaccard of 5-gram sets; removal = a shared band key and the
estimate >= 0.76), Pride and Prejudice and Don Quijote, 20 seeds each:
    edit (vs the extracted book)                    exact J        estimate       removed
    5% of paragraphs replaced (War and Peace's)     0.886-0.926    0.863-0.938    40/40
    10%                                             0.797-0.845    0.766-0.867    40/40
    30%                                             0.521-0.588    0.480-0.633     0/40
    40%                                             0.385-0.477    0.340-0.523     0/40
    truncated to 90% (MinHash seeds varied)         0.900-0.902    0.844-0.938    40/40
    truncated to 70%                                0.697-0.704    0.633-0.746     0/40
    truncated to 60%                                0.599-0.604    0.531-0.664     0/40
    1% of words replaced (OCR-like)                 0.903-0.911    0.875-0.941    40/40
    2%                                              0.819-0.834    0.770-0.871    40/40
    3%                                              0.746-0.760    0.672-0.812    20/40
    5%                                              0.625-0.639    0.551-0.684     0/40
    unrelated sample books (after stripping)        0.000-0.001    0.000          -
Scattered word edits cost up to 5 shingles each: copies with up to ~2.5% of their words changed
are removed. Jaccard is symmetric: a book wholly contained in a larger one (an anthology, an
annotated edition with 40% of notes) is kept unless it is more than ~76% of the larger one.
`batch_size` 16 bounds the books minhash_signatures holds at once (its default, 1024, is sized
for web pages). MinHash of the three sample books (6.1 MB of text) takes ~0.1 s on one core.
"""

from __future__ import annotations

import codecs
import gzip
import json
import re
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import charset_normalizer
import pyarrow as pa

from classifiers.langid import load_identifier
from stages.accounting import ShardStats
from stages.documents import DOCUMENT_SCHEMA, DroppedDocuments, ShardWriter, schema_with

SOURCE = "books"
DEFAULT_MIN_TEXT_CHARS = 1000
DEFAULT_MAX_BOOK_BYTES = 64 << 20
# The bundled fastText lid.176 model (the langid stage's default), found from this file so that
# the default does not depend on the working directory.
DEFAULT_LANGUAGE_MODEL = str(Path(__file__).resolve().parent.parent / "samples" / "models" / "lid.176.ftz")
DEFAULT_LANGUAGE_THRESHOLD = 0.5
LANGID_SLICES = 8
LANGID_SLICE_CHARS = 1000
LANGID_SNAP_CHARS = 100  # how far a slice end moves to reach whitespace

# Settings for stages.near_dedup's phases over the books shards (module doc: the measurement).
# minhash_signatures takes num_perm, bands, rows, ngram, seed, batch_size; find_candidate_pairs
# takes verify, threshold; cluster_duplicates and remove_near_duplicates take none of them.
BOOK_NEAR_DEDUP = {
    "num_perm": 256,
    "bands": 32,
    "rows": 8,
    "ngram": 5,
    "seed": 1,
    "verify": True,
    "threshold": 0.76,
    "batch_size": 16,
}

BOOK_SCHEMA = schema_with(
    DOCUMENT_SCHEMA,
    pa.field("collection", pa.string(), nullable=False),
    pa.field("book_id", pa.string(), nullable=False),
    pa.field("title", pa.string()),
    pa.field("author", pa.string()),
    pa.field("language", pa.string()),
    pa.field("ebook_number", pa.int64()),
    pa.field("encoding", pa.string()),
    pa.field("source_file", pa.string(), nullable=False),
    pa.field("source_line", pa.int64()),
    pa.field("language_source", pa.string()),  # "metadata" | "detected" | null
    pa.field("detected_language", pa.string()),
    pa.field("detected_language_score", pa.float32()),
)

COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
GZIP_MAGIC = b"\x1f\x8b"
BOUNDARY_CHARS = 20_000  # how far from either end a leftover "Project Gutenberg" is looked for
MAX_CONTROL_SHARE = 0.01
UTF8_VALID_PER_BAD = 10
GZIP_DAMAGE = (EOFError, zlib.error, gzip.BadGzipFile)  # BadGzipFile is an OSError: listed first

LANGUAGE_CODES = {
    "afrikaans": "af", "arabic": "ar", "bulgarian": "bg", "catalan": "ca", "chinese": "zh", "croatian": "hr",
    "czech": "cs", "danish": "da", "dutch": "nl", "english": "en", "esperanto": "eo", "estonian": "et",
    "finnish": "fi", "french": "fr", "galician": "gl", "german": "de", "greek": "el", "hebrew": "he",
    "hungarian": "hu", "icelandic": "is", "irish": "ga", "italian": "it", "japanese": "ja", "korean": "ko",
    "latin": "la", "norwegian": "no", "polish": "pl", "portuguese": "pt", "romanian": "ro", "russian": "ru",
    "serbian": "sr", "slovenian": "sl", "spanish": "es", "swedish": "sv", "tagalog": "tl", "ukrainian": "uk",
    "welsh": "cy",
}
# ISO 639-2 (bibliographic and terminology) codes of those languages, for metadata that uses them.
ISO_639_2 = dict(pair.split(":") for pair in (
    "afr:af ara:ar bul:bg cat:ca chi:zh zho:zh hrv:hr cze:cs ces:cs dan:da dut:nl nld:nl eng:en epo:eo "
    "est:et fin:fi fre:fr fra:fr glg:gl ger:de deu:de gre:el ell:el heb:he hun:hu ice:is isl:is gle:ga "
    "ita:it jpn:ja kor:ko lat:la nor:no pol:pl por:pt rum:ro ron:ro rus:ru srp:sr slv:sl spa:es swe:sv "
    "tgl:tl ukr:uk wel:cy cym:cy"
).split())
# charset_normalizer's guesses that are read as cp1252 (module doc).
LATIN_FAMILY = {
    "cp1250", "cp1252", "latin_1", "iso8859_15", "iso8859_2", "iso8859_3", "iso8859_4", "iso8859_9",
    "iso8859_10", "iso8859_13", "iso8859_14", "iso8859_16", "cp1254", "cp1257", "mac_roman", "mac_latin2",
    "cp850", "cp437", "cp858",
}


class LinePattern:
    """A regex anchored at a line start. Searched as "\n" + body (a literal first character lets
    re skip ahead: ~3x faster than a MULTILINE "^" over a whole book), plus a match at 0."""

    def __init__(self, body: str, flags: int = re.IGNORECASE):
        self.at_start = re.compile(body, flags)
        self.after_newline = re.compile("\n" + body, flags)

    def search(self, text: str, pos: int = 0) -> tuple[int, int] | None:
        """(start, end) of the first match beginning a line at or after `pos`, or None."""
        if pos == 0:
            match = self.at_start.match(text)
            if match:
                return match.start(), match.end()
        match = self.after_newline.search(text, max(pos - 1, 0))
        return (match.start() + 1, match.end()) if match else None


START_MARKER = LinePattern(
    r"[ \t]*\*{2,}[ \t]*START[ \t]+OF[ \t]+(?:THE[ \t]+|THIS[ \t]+)?(?:COPYRIGHTED[ \t]+)?PROJECT[ \t]+GUTENBERG[^\n]*"
)
SMALL_PRINT_END = LinePattern(r"[ \t]*\*?END\*?[ \t]*THE[ \t]+SMALL[ \t]+PRINT[^\n]*")
END_MARKER = LinePattern(
    r"[ \t]*(?:\*+[ \t]*)?(?:END[ \t]+OF[ \t]+(?:THE[ \t]+|THIS[ \t]+)?(?:COPYRIGHTED[ \t]+)?PROJECT[ \t]+GUTENBERG"
    r"|ENDE[ \t]+DIESES[ \t]+PROJEK?C?T[ \t]+GUTENBERG|FIN[ \t]+DEL?[ \t]+(?:PROJECT|PROYECTO)[ \t]+GUTENBERG)"
)
PROJECT_GUTENBERG = re.compile(r"project[ \t\n]+gutenberg", re.IGNORECASE)
EBOOK_NUMBER = re.compile(r"\[\s*E-?(?:Book|Text)\s*#\s*(\d+)\s*\]|\bE-?Book\s*#\s*(\d+)", re.IGNORECASE)
OLD_TITLE_LINE = re.compile(
    r"Project Gutenberg(?:'s)?\s+(?:E-?Book|E-?text|eBook|Etext)\s+of\s+(.+?)(?:,\s+by\s+(.+))?$",
    re.IGNORECASE | re.MULTILINE,
)
RAW_CHARSET = re.compile(rb"^Character set encoding:[ \t]*([^\r\n]+)", re.IGNORECASE | re.MULTILINE)
CREDIT_START = re.compile(
    r"^(?:produced\s+by|(?:this\s+)?e-?(?:text|book)\s+(?:was\s+)?(?:prepared|produced|created|transcribed)\s+by"
    r"|prepared\s+by|transcribed\s+(?:from|by)|scanned\s+(?:and\s+proofread\s+)?by|html\s+version\s+by"
    r"|digiti[sz]ed\s+by|credits?:)",
    re.IGNORECASE,
)
CREDIT_PHRASE = re.compile(
    r"distributed\s+proofread|proofreading\s+team|pgdp\.net|internet\s+archive|anonymous\s+volunteer"
    r"|david\s+widger",
    re.IGNORECASE,
)
MAX_CREDIT_PARAGRAPHS, MAX_CREDIT_LINES, MAX_CREDIT_CHARS = 3, 6, 600
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
TRAILING_SPACE = " \t\u00a0\u3000"
BLANK_RUNS = re.compile(r"\n{3,}")
SURROGATES = re.compile(r"[\ud800-\udfff]")
NON_ASCII = re.compile(r"[^\x00-\x7f]")
WHITESPACE = re.compile(r"\s")
MIN_GUESSED_WHITESPACE = 0.01
LEADING_SPACE = re.compile(r"\s*")
HEADER_LINE = re.compile(r"(Title|Author|Language|Character set encoding):[ \t]*(.*)", re.IGNORECASE)
LABELLED_LINE = re.compile(r"\s*[A-Za-z][A-Za-z -]{0,30}:(\s|$)")


class Dropped(Exception):
    """A book leaves the shard for a named reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Book:
    """A book found in an input: its text (None when it could not be read) and what is known."""

    book_id: str
    source_file: str
    text: str | None = None
    source_line: int | None = None
    title: str | None = None
    author: str | None = None
    language: str | None = None
    ebook_number: int | None = None
    encoding: str | None = None
    reason: str | None = None  # set when the book is dropped before cleaning
    language_source: str | None = None
    detected_language: str | None = None
    detected_language_score: float | None = None


@dataclass
class GutenbergText:
    """The result of `strip_gutenberg`."""

    body: str
    reason: str | None = None  # gutenberg_header_unparsed / gutenberg_footer_unparsed
    header: dict = field(default_factory=dict)  # title, author, language, ebook_number, charset
    counters: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The stage


def extract_books(
    input_paths: list[str],
    output_path: str,
    *,
    collection: str,
    dropped_path: str | None = None,
    min_text_chars: int = DEFAULT_MIN_TEXT_CHARS,
    max_book_bytes: int = DEFAULT_MAX_BOOK_BYTES,
    language_model: str | None = DEFAULT_LANGUAGE_MODEL,
    languages: list[str] | None = None,
    language_threshold: float = DEFAULT_LANGUAGE_THRESHOLD,
) -> ShardStats:
    """Read the books in `input_paths` (one collection) into a parquet shard of BOOK_SCHEMA
    documents; dropped books go to `dropped_path` with their reason (see module doc).
    `language_model` (a fastText lid.176 file, None: no identification), `languages` (keep-list of
    ISO 639-1 codes, None: keep all) and `language_threshold`: language identification."""
    if not COLLECTION_NAME.fullmatch(collection or ""):
        raise ValueError(f"collection must be a name of letters, digits, '_', '.', '-', not {collection!r}")
    identifier = load_identifier(str(language_model)) if language_model else None
    keep = {code.strip().lower() for code in languages} if languages else None
    stats = ShardStats()
    seen: set[str] = set()

    def document(book: Book, text: str) -> dict:
        return {
            "id": f"{SOURCE}/{collection}/{book.book_id}",
            "source": SOURCE,
            "text": text,
            "collection": collection,
            "book_id": book.book_id,
            "title": book.title,
            "author": book.author,
            "language": book.language,
            "ebook_number": book.ebook_number,
            "encoding": book.encoding,
            "source_file": book.source_file,
            "source_line": book.source_line,
            "language_source": book.language_source,
            "detected_language": book.detected_language,
            "detected_language_score": book.detected_language_score,
        }

    with ShardWriter(output_path, BOOK_SCHEMA) as writer, DroppedDocuments(dropped_path, BOOK_SCHEMA) as dropped:
        for path in sorted(input_paths, key=str):
            for book in read_books(path, stats, max_book_bytes):
                stats.docs_in += 1
                text, reason = (book.text or "", book.reason) if book.reason else _clean(book, stats, min_text_chars)
                if not reason and book.book_id in seen:
                    reason = "duplicate_id"
                if not reason and (identifier is not None or keep is not None):
                    reason = _judge_language(book, text, identifier, keep, language_threshold, stats)
                if reason:
                    stats.drop(reason)
                    dropped.add(document(book, text), reason)
                    continue
                seen.add(book.book_id)
                stats.docs_out += 1
                stats.counters["text_bytes"] += len(text.encode("utf-8"))
                writer.write(document(book, text))
    stats.bytes_out = writer.bytes_written
    return stats.check()


def _clean(book: Book, stats: ShardStats, min_text_chars: int) -> tuple[str, str | None]:
    """(cleaned text, drop reason or None). Fills title/author/language/ebook_number gaps from a
    Gutenberg header."""
    stripped = strip_gutenberg(book.text or "")
    for counter in stripped.counters:
        stats.counters[counter] += 1
    header = stripped.header
    book.title = book.title or header.get("title")
    book.author = book.author or header.get("author")
    book.language = book.language or header.get("language")
    book.ebook_number = book.ebook_number if book.ebook_number is not None else header.get("ebook_number")
    if stripped.reason:
        return book.text or "", stripped.reason
    text = stripped.body
    if not text:
        return text, "empty_text"
    if len(text) < min_text_chars:
        return text, "text_too_short"
    return text, None


def _judge_language(book: Book, text: str, identifier, keep: set[str] | None, threshold: float,
                    stats: ShardStats) -> str | None:
    """Identify the book's language (when there is a model), fill the language columns, count
    agreement with the metadata; the keep-list's drop reason or None (module doc)."""
    counters = stats.counters
    metadata = language_code(book.language)
    book.language_source = "metadata" if book.language else None
    detected = None
    if identifier is not None:
        code, score = identify_language(identifier, text)
        book.detected_language, book.detected_language_score = code, score
        counters["language_identified"] += 1
        if score < threshold:
            counters["language_low_score"] += 1
        else:
            detected = code
            counters[f"detected_{code}"] += 1
            if not book.language:
                book.language, book.language_source = code, "detected"
                counters["language_filled"] += 1
            elif metadata is not None:
                counters["language_agreements" if metadata == code else "language_disagreements"] += 1
    if keep is None:
        return None
    deciding = detected or metadata
    if deciding is None:
        return "language_unknown"
    return None if deciding in keep else f"language:{deciding}"


def language_sample(text: str, slices: int = LANGID_SLICES, chars: int = LANGID_SLICE_CHARS) -> list[str]:
    """The slices of `text` that language identification reads (module doc): `slices` pieces of
    about `chars` characters spread through the text, ends moved to whitespace; consecutive pieces
    covering the whole text when it is at most slices * chars long."""
    if len(text) <= slices * chars:
        return [piece for i in range(0, len(text), chars) if (piece := text[i : i + chars]).strip()]
    pieces = []
    for i in range(slices):
        start = int((2 * i + 1) * len(text) / (2 * slices)) - chars // 2
        space = text.find(" ", start, start + LANGID_SNAP_CHARS)
        start = space + 1 if space >= 0 else start
        end = start + chars
        space = text.rfind(" ", end - LANGID_SNAP_CHARS, end)
        end = space if space > start else end
        pieces.append(text[start:end])
    return [piece for piece in pieces if piece.strip()] or [text[:chars]]


def identify_language(identifier, text: str) -> tuple[str, float]:
    """(language, score) of a text from its language_sample: the language with the largest sum of
    slice probabilities weighted by slice length, and that sum over the sampled characters."""
    pieces = language_sample(text)
    totals: dict[str, float] = {}
    for piece, (code, probability) in zip(pieces, identifier.predict(pieces)):
        totals[code] = totals.get(code, 0.0) + probability * len(piece)
    best = min(totals, key=lambda code: (-totals[code], code))
    return best, totals[best] / sum(map(len, pieces))


def language_code(value: str | None) -> str | None:
    """The ISO 639-1-style code a metadata language reads as ("English" -> "en", "en-US" -> "en",
    "EN" -> "en"), or None ("Middle English", "English, French", missing)."""
    code = (normalised_language(value) or "").strip().lower()
    code = re.split(r"[-_]", code, maxsplit=1)[0]
    code = ISO_639_2.get(code, code)
    return code if re.fullmatch(r"[a-z]{2,3}", code) else None


# ---------------------------------------------------------------------------------------------
# Reading inputs


def read_books(path: str, stats: ShardStats, max_book_bytes: int = DEFAULT_MAX_BOOK_BYTES) -> Iterator[Book]:
    """Every book of one input file, in order; a book that cannot be read carries its reason."""
    name = Path(path).name
    stem = name.removesuffix(".gz")
    stats.counters["files"] += 1
    try:
        stream = open(path, "rb")
    except OSError:
        yield Book(book_id=_file_book_id(name), source_file=name, reason="unreadable")
        return
    with stream:
        try:
            compressed = stream.read(2) == GZIP_MAGIC
            stream.seek(0)
        except OSError:
            yield Book(book_id=_file_book_id(name), source_file=name, reason="unreadable")
            return
        if compressed:
            stats.counters["gzip_files"] += 1
        reader = gzip.GzipFile(fileobj=stream, mode="rb") if compressed else stream
        if stem.lower().endswith(JSONL_SUFFIXES):
            yield from _jsonl_books(reader, name, stats, max_book_bytes)
        else:
            yield _file_book(reader, name, stats, max_book_bytes)


def _file_book_id(name: str) -> str:
    stem = name.removesuffix(".gz")
    stem = stem[:-4] if stem.lower().endswith(".txt") else stem
    return stem[2:] if re.fullmatch(r"pg\d+(?:-\d+)?", stem, re.IGNORECASE) else stem


def _file_ebook_number(name: str) -> int | None:
    match = re.fullmatch(r"(?:pg)?(\d+)(?:-\d+)?(?:\.txt)?(?:\.gz)?", name, re.IGNORECASE)
    return int(match.group(1)) if match else None


def _file_book(reader, name: str, stats: ShardStats, max_book_bytes: int) -> Book:
    book = Book(book_id=_file_book_id(name), source_file=name, ebook_number=_file_ebook_number(name))
    try:
        data = reader.read(max_book_bytes + 1)
    except GZIP_DAMAGE:
        book.reason = "corrupt_gzip"
        return book
    except OSError:
        book.reason = "unreadable"
        return book
    if len(data) > max_book_bytes:
        book.reason = "too_large"
        return book
    try:
        text, book.encoding, replaced = decode_book(data)
        book.text = _normalise_text(text, stats)
    except Dropped as dropped:
        book.reason = dropped.reason
        return book
    stats.counters[f"encoding_{book.encoding}"] += 1
    if replaced:
        stats.counters["replaced_chars"] += replaced
    return book


def _jsonl_books(reader, name: str, stats: ShardStats, max_book_bytes: int) -> Iterator[Book]:
    stem = name.removesuffix(".gz")
    for suffix in JSONL_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    lineno, pending = 0, None
    try:
        for raw in reader:
            if pending is not None:
                yield _json_book(pending, lineno, stem, name, stats, max_book_bytes)
            lineno += 1
            pending = raw if raw.strip() else None
            if pending is None:
                stats.counters["blank_lines"] += 1
    except (*GZIP_DAMAGE, OSError) as error:
        reason = "corrupt_gzip" if isinstance(error, GZIP_DAMAGE) else "unreadable"
        # The damage counts as one book; a line it cut short (no newline) is part of it.
        complete = pending is not None and pending.endswith(b"\n")
        if complete:
            yield _json_book(pending, lineno, stem, name, stats, max_book_bytes)
        damaged = lineno if pending is not None and not complete else lineno + 1
        yield Book(book_id=f"{stem}:{damaged}", source_file=name, source_line=damaged, reason=reason)
        return
    if pending is not None:
        yield _json_book(pending, lineno, stem, name, stats, max_book_bytes)


def _json_book(raw: bytes, lineno: int, stem: str, name: str, stats: ShardStats, max_book_bytes: int) -> Book:
    stats.counters["jsonl_lines"] += 1
    book = Book(book_id=f"{stem}:{lineno}", source_file=name, source_line=lineno, encoding="json")
    if len(raw) > max_book_bytes:
        book.reason = "too_large"
        return book
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        book.reason = "undecodable"
        return book
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        record = None
    if not isinstance(record, dict):
        book.reason = "malformed_json"
        book.text = _safe_str(line[:1000])
        return book
    meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
    book_id = record.get("id")
    if isinstance(book_id, str) and book_id.strip():
        book.book_id = _safe_str(book_id.strip())
    elif isinstance(book_id, int) and not isinstance(book_id, bool):
        book.book_id = str(book_id)
    book.title = _string(record.get("title")) or _string(meta.get("title")) or _string(meta.get("short_book_title"))
    book.author = _string(record.get("author")) or _string(meta.get("author"))
    book.language = _string(record.get("language")) or _string(meta.get("language"))
    text = record.get("text")
    if not isinstance(text, str):
        book.reason = "no_text"
        return book
    if SURROGATES.search(text):  # a lone "\ud800" escape: not encodable as UTF-8
        stats.counters["replaced_chars"] += len(SURROGATES.findall(text))
        text = SURROGATES.sub("\ufffd", text)
    try:
        book.text = _normalise_text(text, stats)
    except Dropped as dropped:
        book.reason = dropped.reason
    return book


def _string(value) -> str | None:
    return (_safe_str(value.strip()) or None) if isinstance(value, str) else None


def _safe_str(value: str) -> str:
    return SURROGATES.sub("\ufffd", value)


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_book(data: bytes) -> tuple[str, str, int]:
    """(text, codec, characters replaced) for the bytes of a one-book file (module doc: order);
    raises Dropped("binary"/"undecodable")."""
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                       (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            text = data.decode(codec, errors="replace")
            replaced = text.count("\ufffd") - data.decode(codec, errors="ignore").count("\ufffd")
            if replaced > MAX_CONTROL_SHARE * len(text):
                raise Dropped("undecodable")
            return text, "utf-8" if codec == "utf-8-sig" else codec, replaced
    if b"\x00" in data:
        raise Dropped("binary")
    try:
        return data.decode("utf-8"), "utf-8", 0
    except UnicodeDecodeError:
        pass
    declared = _declared_codec(data)
    if declared:
        try:
            return data.decode(declared), declared, 0
        except UnicodeDecodeError:
            if declared == "cp1252":
                return data.decode("latin-1"), "latin-1", 0
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - data.count("\ufffd".encode("utf-8"))
    valid = len(NON_ASCII.findall(text)) - text.count("\ufffd")
    if valid >= UTF8_VALID_PER_BAD * bad:
        return text, "utf-8", bad
    guess = charset_normalizer.from_bytes(data).best()
    if guess is None:
        raise Dropped("undecodable")
    codec = codecs.lookup(guess.encoding).name.replace("-", "_")
    try:
        if codec in LATIN_FAMILY:
            try:
                text, codec = data.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:
                text, codec = data.decode("latin-1"), "latin-1"
        else:
            text = data.decode(guess.encoding)
    except (UnicodeDecodeError, LookupError):
        raise Dropped("undecodable") from None
    # A guess is only trusted on what reads as text: byte noise decodes as CJK without any space.
    if len(WHITESPACE.findall(text)) < MIN_GUESSED_WHITESPACE * len(text):
        raise Dropped("undecodable")
    return text, codec, 0


def _declared_codec(data: bytes) -> str | None:
    """The codec of a Gutenberg header's "Character set encoding:" line (ISO-8859-1 and ASCII as
    cp1252: bytes that are not UTF-8 cannot be ASCII), or None."""
    match = RAW_CHARSET.search(data[:BOUNDARY_CHARS])
    if not match:
        return None
    label = match.group(1).decode("ascii", errors="ignore").strip().lower()
    label = re.sub(r"^iso[ -]?latin[ -]?1$", "latin-1", label)
    for candidate in (label, label.replace(" ", "-"), label.split()[0] if label.split() else ""):
        try:
            name = codecs.lookup(candidate).name
            b"".decode(name)
        except (LookupError, ValueError):
            continue
        if name in ("latin-1", "iso8859-1", "ascii", "cp1252"):
            return "cp1252"
        return None if name.startswith("utf") else name
    return None


def _normalise_text(text: str, stats: ShardStats) -> str:
    """BOM removed, line endings to LF, control characters other than tab/newline removed; raises
    Dropped("binary") when they are over MAX_CONTROL_SHARE of the text."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n")
    if CONTROL_CHARS.search(text):
        controls = len(CONTROL_CHARS.findall(text))
        if controls > MAX_CONTROL_SHARE * len(text):
            raise Dropped("binary")
        stats.counters["control_chars_removed"] += controls
        text = CONTROL_CHARS.sub("", text)
    return text


# ---------------------------------------------------------------------------------------------
# Project Gutenberg header and footer


def strip_gutenberg(text: str) -> GutenbergText:
    """The body of a (LF-normalised) text without Project Gutenberg's header, producer credits and
    licence footer, whitespace tidied (`tidy_whitespace`); the header's metadata; the counters that
    apply; or the reason to drop it, with the body untidied (module doc: the rules)."""
    start = START_MARKER.search(text)
    body_start, header_end, counters = 0, None, []
    if start:
        header_end = start[0]
        body_start = _marker_end(text, *start)
    end = END_MARKER.search(text, body_start)
    small_print = SMALL_PRINT_END.search(text, body_start)
    before_footer = small_print and (small_print[0] < end[0] if end else small_print[0] < len(text) // 2)
    if before_footer:
        header_end = start[0] if start else small_print[0]
        body_start = _line_end(text, small_print[1])
        end = END_MARKER.search(text, body_start)
    header = parse_gutenberg_header(text[:header_end]) if header_end is not None else {}
    body_end = end[0] if end else len(text)
    body = text[body_start:body_end]
    if header_end is None and PROJECT_GUTENBERG.search(body[:BOUNDARY_CHARS]):
        return GutenbergText(body, "gutenberg_header_unparsed", header)
    if end is None and PROJECT_GUTENBERG.search(body[-BOUNDARY_CHARS:]):
        return GutenbergText(body, "gutenberg_footer_unparsed", header)
    body = tidy_whitespace(body)
    if header_end is not None:
        counters.append("gutenberg_header_stripped")
        body, credits = _remove_credits(body)
        if credits:
            counters.append("gutenberg_credits_removed")
    if end is not None:
        counters.append("gutenberg_footer_stripped")
    if header_end is not None and end is None:
        counters.append("gutenberg_end_missing")
    elif header_end is None and end is not None:
        counters.append("gutenberg_start_missing")
    elif header_end is None:
        counters.append("no_gutenberg_markers")
    return GutenbergText(body, None, header, counters)


def _line_end(text: str, pos: int) -> int:
    newline = text.find("\n", pos)
    return len(text) if newline < 0 else newline + 1


def _marker_end(text: str, start: int, end: int) -> int:
    """Where the body starts after a START marker line; a marker whose title wraps (no closing
    "***" on its line) ends at the next of its following three lines that closes it."""
    line_end = _line_end(text, end)
    if re.search(r"GUTENBERG.*\*{2,}\s*$", text[start:end], re.IGNORECASE):
        return line_end
    pos = line_end
    for _ in range(3):
        following_end = _line_end(text, pos)
        line = text[pos:following_end].strip()
        if not line:
            break
        if line.endswith("***"):
            return following_end
        pos = following_end
    return line_end


def parse_gutenberg_header(header: str) -> dict:
    """title, author, language, ebook_number, charset from a Project Gutenberg header (those found)."""
    found: dict = {}
    lines = header.split("\n")
    for i, line in enumerate(lines):
        match = HEADER_LINE.match(line)
        if not match:
            continue
        key, value = match.group(1).lower(), match.group(2).strip()
        for following in lines[i + 1 : i + 6]:  # indented continuation lines
            if following[:1] not in (" ", "\t") or not following.strip() or LABELLED_LINE.match(following):
                break
            value = f"{value} {following.strip()}"
        if value and key not in found:
            found[key] = value
    result = {k: found[k] for k in ("title", "author") if k in found}
    if "title" not in result:
        old = OLD_TITLE_LINE.search(header[:2000])
        if old:
            result["title"] = old.group(1).strip().rstrip(",")
            if old.group(2) and "author" not in result:
                result["author"] = old.group(2).strip()
    if "language" in found:
        result["language"] = normalised_language(found["language"])
    if "character set encoding" in found:
        result["charset"] = found["character set encoding"]
    number = EBOOK_NUMBER.search(header)
    if number:
        result["ebook_number"] = int(number.group(1) or number.group(2))
    return result


def _remove_credits(body: str) -> tuple[str, int]:
    """`body` without up to MAX_CREDIT_PARAGRAPHS leading producer-credit paragraphs."""
    removed = 0
    pos = 0
    while removed < MAX_CREDIT_PARAGRAPHS:
        match = LEADING_SPACE.match(body, pos)
        start = match.end()
        paragraph_end = body.find("\n\n", start)
        paragraph_end = len(body) if paragraph_end < 0 else paragraph_end
        paragraph = body[start:paragraph_end]
        if (
            not paragraph
            or paragraph.count("\n") >= MAX_CREDIT_LINES
            or len(paragraph) > MAX_CREDIT_CHARS
            or not (CREDIT_START.match(paragraph) or CREDIT_PHRASE.search(paragraph))
        ):
            break
        pos = paragraph_end
        removed += 1
    return body[pos:].strip(), removed


def tidy_whitespace(text: str) -> str:
    """Trailing spaces of lines removed, runs of blank lines collapsed to one, ends stripped."""
    text = "\n".join([line.rstrip(TRAILING_SPACE) for line in text.split("\n")])
    return BLANK_RUNS.sub("\n\n", text).strip("\n").strip()


def normalised_language(name: str | None) -> str | None:
    """ISO 639-1 code of a language name PG uses ("English" -> "en"), else the name as given."""
    if not name:
        return None
    return LANGUAGE_CODES.get(unicodedata.normalize("NFKC", name).strip().lower(), name)
