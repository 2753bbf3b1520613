"""Books: real Project Gutenberg files to documents (header, footer, producer credits, metadata,
BOM, CRLF/CR, Latin-1), gzip and jsonl inputs and their damage, ids across collections,
determinism, fastText language identification (the bundled lid.176 model) and its keep-list, and
book-level near-duplicate removal with BOOK_NEAR_DEDUP through
stages.near_dedup's four phases called directly (no Ray)."""

import gzip
import json
import random
import re

import numpy as np
import pyarrow.parquet as pq
import pytest

from stages import near_dedup as nd
from stages.books import (
    BOOK_NEAR_DEDUP,
    BOOK_SCHEMA,
    LANGID_SLICE_CHARS,
    LANGID_SLICES,
    extract_books,
    language_sample,
    strip_gutenberg,
    tidy_whitespace,
)
from stages.documents import read_documents
from tests.support import SAMPLES

GUTENBERG = SAMPLES / "books" / "gutenberg"
PP, DQ, WP = GUTENBERG / "pg1342-0.txt", GUTENBERG / "pg2000.txt", GUTENBERG / "pg2600-0.txt"

PP_START = "PRIDE AND PREJUDICE\n\nBy Jane Austen\n\nChapter 1\n\nIt is a truth universally acknowledged, that"
PP_END = "had been the means of uniting them."
WP_START = "WAR AND PEACE\n\nBy Leo Tolstoy/Tolstoi\n\n    CONTENTS"
WP_END = "to recognize a dependence of which we are not\nconscious."
DQ_START = "El ingenioso hidalgo don Quijote de la Mancha\n\npor Miguel de Cervantes Saavedra"
DQ_END = "van ya tropezando, y han de caer del todo, sin duda alguna. Vale.\n\nFin"


def run(tmp_path, paths, collection="gutenberg", name="out", **options):
    """(documents by book_id, dropped documents in order, stats) of one extract_books call."""
    out, dropped = tmp_path / f"{name}.parquet", tmp_path / f"{name}-dropped.parquet"
    stats = extract_books([str(p) for p in paths], str(out), collection=collection, dropped_path=str(dropped),
                          **options)
    assert pq.read_schema(out) == BOOK_SCHEMA
    docs = list(read_documents(out))
    assert len(docs) == stats.docs_out
    by_id = {d["book_id"]: d for d in docs}
    assert len(by_id) == len(docs)
    return by_id, list(read_documents(dropped)), stats


def write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    return run(tmp_path_factory.mktemp("books"), [WP, DQ, PP])


# -- real Gutenberg files ---------------------------------------------------------------------------


def test_real_books_lose_header_footer_and_credits(extracted):
    docs, dropped, stats = extracted
    assert list(docs) == ["1342-0", "2000", "2600-0"]  # sorted by input path
    pp, dq, wp = docs["1342-0"], docs["2000"], docs["2600-0"]
    assert pp["text"].startswith(PP_START) and pp["text"].endswith(PP_END)
    assert wp["text"].startswith(WP_START) and wp["text"].endswith(WP_END)  # "An Anonymous Volunteer..." gone
    assert dq["text"].startswith(DQ_START) and dq["text"].endswith(DQ_END)
    for doc in docs.values():
        text = doc["text"]
        assert "gutenberg" not in text.lower() and "Produced by" not in text[:1000]
        assert "\r" not in text and "\ufeff" not in text and "\n\n\n" not in text
        assert not re.search(r"[ \t]$", text, re.MULTILINE)
        assert doc["source"] == "books" and doc["id"] == f"books/gutenberg/{doc['book_id']}"
    assert "señor" in dq["text"] and "Béjar" in dq["text"]  # decoded as UTF-8
    assert len(wp["text"]) > 3_150_000 and len(pp["text"]) > 680_000 and len(dq["text"]) > 2_050_000
    assert dropped == [] and stats.docs_in == stats.docs_out == 3
    assert stats.counters["gutenberg_header_stripped"] == stats.counters["gutenberg_footer_stripped"] == 3
    assert stats.counters["gutenberg_credits_removed"] == 2  # P&P "Produced by ...", W&P's volunteers
    assert stats.counters["encoding_utf-8"] == 3 and stats.counters["files"] == 3


def test_real_books_metadata(extracted):
    docs, _, _ = extracted
    meta = lambda d: {k: d[k] for k in ("collection", "title", "author", "language", "ebook_number",  # noqa: E731
                                        "encoding", "source_file", "source_line")}
    assert meta(docs["1342-0"]) == {"collection": "gutenberg", "title": "Pride and Prejudice", "author": "Jane Austen",
                                    "language": "en", "ebook_number": 1342, "encoding": "utf-8",
                                    "source_file": "pg1342-0.txt", "source_line": None}
    assert meta(docs["2600-0"])["title"] == "War and Peace" and docs["2600-0"]["author"] == "Leo Tolstoy"
    assert (docs["2600-0"]["ebook_number"], docs["2600-0"]["language"]) == (2600, "en")
    assert meta(docs["2000"]) == {"collection": "gutenberg", "title": "Don Quijote",  # new style, "[eBook #2000]"
                                  "author": "Miguel de Cervantes Saavedra", "language": "es", "ebook_number": 2000,
                                  "encoding": "utf-8", "source_file": "pg2000.txt", "source_line": None}


def test_line_endings_and_bom(tmp_path, extracted):
    """P&P as shipped (BOM, LF), without BOM, with CRLF and with CR alone give the same text."""
    raw = PP.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r" not in raw and b"\r\n" in DQ.read_bytes()
    body = raw[3:]
    variants = {"nobom": body, "crlf": raw.replace(b"\n", b"\r\n"), "cr": body.replace(b"\n", b"\r")}
    for name, data in variants.items():
        docs, dropped, _ = run(tmp_path, [write(tmp_path / f"{name}.txt", data)], name=name)
        assert docs[name]["text"] == extracted[0]["1342-0"]["text"], name
        assert docs[name]["title"] == "Pride and Prejudice" and docs[name]["ebook_number"] == 1342


def test_latin1_files_declared_or_not(tmp_path, extracted):
    """Don Quijote in PG's 8-bit form (cp1252 bytes, as many files "ISO-8859-1" really hold), with
    the header's "Character set encoding" line and without it: the same text as the UTF-8 file."""
    text = DQ.read_bytes().decode("utf-8-sig")  # CRLF kept
    declared = text.replace("Language: Spanish\r\n", "Language: Spanish\r\n\r\nCharacter set encoding: ISO-8859-1\r\n")
    assert declared != text
    a = write(tmp_path / "2000-8.txt", declared.encode("cp1252"))
    b = write(tmp_path / "quijote.txt", text.encode("cp1252"))
    with pytest.raises(UnicodeDecodeError):
        a.read_bytes().decode("utf-8")
    docs, dropped, stats = run(tmp_path, [a, b])
    assert docs["2000-8"]["text"] == docs["quijote"]["text"] == extracted[0]["2000"]["text"]
    assert docs["2000-8"]["encoding"] == docs["quijote"]["encoding"] == "cp1252"
    assert docs["2000-8"]["ebook_number"] == docs["quijote"]["ebook_number"] == 2000  # from the header
    assert stats.counters["encoding_cp1252"] == 2


# -- gzip, jsonl, damage ------------------------------------------------------------------------------


def test_gzip_copy_and_damaged_gzip(tmp_path, extracted):
    whole = gzip.compress(PP.read_bytes(), mtime=0)
    cut = gzip.compress(WP.read_bytes(), mtime=0)
    paths = [
        write(tmp_path / "pg1342-0.txt.gz", whole),
        write(tmp_path / "pg2600-0.txt.gz", cut[: len(cut) // 2]),  # truncated
        write(tmp_path / "garbage.txt.gz", b"\x1f\x8b\x08\x00" + random.Random(0).randbytes(5000)),
        write(tmp_path / "flipped.txt.gz", whole[:500] + bytes([whole[500] ^ 0xFF]) + whole[501:]),
        write(tmp_path / "not-gzipped.txt.gz", DQ.read_bytes()),  # named .gz, read by content
    ]
    docs, dropped, stats = run(tmp_path, paths)
    assert docs["1342-0"]["text"] == extracted[0]["1342-0"]["text"]
    assert docs["1342-0"]["source_file"] == "pg1342-0.txt.gz" and docs["1342-0"]["ebook_number"] == 1342
    assert docs["not-gzipped"]["text"] == extracted[0]["2000"]["text"]
    assert sorted((d["book_id"], d["drop_reason"]) for d in dropped) == [
        ("2600-0", "corrupt_gzip"), ("flipped", "corrupt_gzip"), ("garbage", "corrupt_gzip")]
    assert stats.docs_in == 5 and stats.dropped == {"corrupt_gzip": 3} and stats.counters["gzip_files"] == 4


def jsonl(records) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)


def test_jsonl_books_and_bad_lines(tmp_path, extracted):
    pp = extracted[0]["1342-0"]["text"]
    wp = extracted[0]["2600-0"]["text"]
    lines = [
        {"id": "pp", "text": PP.read_text(encoding="utf-8-sig"), "title": "P&P"},  # 1: header stripped here too
        b'{"id": "broken", "text": "no closing quote}',  # 2
        b"",  # 3: blank, not a book
        {"text": wp[:50_000], "meta": {"short_book_title": "War and Peace, part", "language": "en"}},  # 4
        b'["a", "list"]',  # 5
        {"id": 7, "title": "no text"},  # 6
        b'{"id": "latin1", "text": "caf\xe9 ' + b"x" * 2000 + b'"}',  # 7: not UTF-8
        {"id": "pp", "text": pp},  # 8: same id again
        {"id": "short", "text": "A sonnet of fourteen lines would not reach a thousand characters."},  # 9
        b'{"id": "surrogate", "text": "lone \\ud800 surrogate ' + b"y" * 2000 + b'"}',  # 10
        {"id": 42, "text": wp[50_000:60_000], "author": "Leo Tolstoy"},  # 11
    ]
    path = write(tmp_path / "other-00.jsonl", jsonl(lines)[:-1])  # the last line without its newline
    docs, dropped, stats = run(tmp_path, [path], collection="other")
    assert list(docs) == ["pp", "other-00:4", "surrogate", "42"]
    assert docs["pp"]["text"] == pp and docs["pp"]["title"] == "P&P"  # the jsonl's title wins
    assert docs["pp"]["author"] == "Jane Austen" and docs["pp"]["ebook_number"] == 1342  # from the header
    assert docs["pp"]["id"] == "books/other/pp" and docs["pp"]["source_line"] == 1
    assert docs["other-00:4"]["title"] == "War and Peace, part" and docs["other-00:4"]["language"] == "en"
    assert docs["other-00:4"]["text"] == wp[:50_000].strip()
    assert docs["surrogate"]["text"].startswith("lone \ufffd surrogate")
    assert (docs["42"]["id"], docs["42"]["author"], docs["42"]["source_line"]) == ("books/other/42", "Leo Tolstoy", 11)
    assert [(d["source_line"], d["drop_reason"]) for d in dropped] == [
        (2, "malformed_json"), (5, "malformed_json"), (6, "no_text"), (7, "undecodable"), (8, "duplicate_id"),
        (9, "text_too_short")]
    assert stats.docs_in == 10 and stats.counters["blank_lines"] == 1 and stats.counters["jsonl_lines"] == 10
    assert stats.counters["no_gutenberg_markers"] == 5  # lines 4, 8, 9, 10, 11 (cleaned before the id check)
    assert stats.counters["replaced_chars"] == 1


def test_truncated_jsonl_gz_keeps_the_books_before_the_damage(tmp_path, extracted):
    wp = extracted[0]["2600-0"]["text"]
    parts = [{"id": f"wp-{i:02d}", "text": wp[i * 100_000 : (i + 1) * 100_000]} for i in range(20)]
    data = gzip.compress(jsonl(parts), mtime=0)
    whole = write(tmp_path / "whole.jsonl.gz", data)
    cut = write(tmp_path / "cut.jsonl.gz", data[: len(data) * 6 // 10])
    docs, dropped, stats = run(tmp_path, [whole], name="whole")
    assert len(docs) == 20 and stats.docs_in == 20
    docs, dropped, stats = run(tmp_path, [cut], name="cut")
    kept = len(docs)
    assert 8 <= kept <= 14 and list(docs) == [f"wp-{i:02d}" for i in range(kept)]
    assert [d["text"] for d in docs.values()] == [p["text"].strip() for p in parts[:kept]]
    assert stats.docs_in == kept + 1 and stats.dropped == {"corrupt_gzip": 1}
    assert [(d["source_line"], d["drop_reason"]) for d in dropped] == [(kept + 1, "corrupt_gzip")]


def test_bad_files_never_crash(tmp_path):
    rng = random.Random(0)
    paths = [
        write(tmp_path / "random.txt", rng.randbytes(20_000)),  # NUL bytes
        write(tmp_path / "controls.txt", bytes(rng.randrange(1, 32) for _ in range(5000))),
        write(tmp_path / "image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.randbytes(3000)),
        write(tmp_path / "empty.txt", b""),
        write(tmp_path / "blank.txt", b"\r\n  \n\t\n"),
        write(tmp_path / "high-bytes.txt", bytes(rng.randrange(128, 256) for _ in range(3000)) + b"\xff\xfe\xfd"),
        write(tmp_path / "short.txt", PP.read_bytes()[: PP.read_bytes().index(b"*** START")]),  # header only
        write(tmp_path / "utf16.txt", "\ufeff".encode("utf-16-le") + PP.read_text(encoding="utf-8-sig")[:6000]
              .encode("utf-16-le")),
        write(tmp_path / "big.txt", b"word " * 5000),
        tmp_path / "missing.txt",
    ]
    docs, dropped, stats = run(tmp_path, paths, max_book_bytes=20_000)
    assert {d["book_id"]: d["drop_reason"] for d in dropped} == {
        "random": "binary", "controls": "binary", "image.png": "binary", "empty": "empty_text", "blank": "empty_text",
        "high-bytes": "undecodable", "big": "too_large", "missing": "unreadable",
        "short": "gutenberg_header_unparsed"}
    assert docs["utf16"]["encoding"] == "utf-16" and docs["utf16"]["text"].startswith("PRIDE AND PREJUDICE\n")
    assert stats.docs_in == len(paths) and stats.check()


# -- missing or unusual markers -----------------------------------------------------------------------


def test_missing_markers(tmp_path, extracted):
    """Licence text that no marker delimits is never kept; a book is never dropped only for
    lacking a header."""
    raw = PP.read_text(encoding="utf-8-sig")
    start = raw.index("*** START OF THIS")
    start_end = raw.index("\n", start) + 1
    footer = raw.index("End of the Project Gutenberg EBook")
    end_marker = raw.index("*** END OF THIS")
    variants = {
        "no-start": raw[:start] + raw[start_end:],
        "no-end-markers": raw[:footer] + raw[raw.index("\n", end_marker) + 1 :],
        "truncated": raw[:footer],
        "no-header": raw[start_end:],
        "body-only": extracted[0]["1342-0"]["text"],
    }
    paths = [write(tmp_path / f"{name}.txt", text.encode()) for name, text in variants.items()]
    docs, dropped, stats = run(tmp_path, paths)
    assert {d["book_id"]: d["drop_reason"] for d in dropped} == {
        "no-start": "gutenberg_header_unparsed", "no-end-markers": "gutenberg_footer_unparsed"}
    expected = extracted[0]["1342-0"]["text"]
    assert docs["truncated"]["text"] == expected and docs["truncated"]["title"] == "Pride and Prejudice"
    assert docs["no-header"]["text"] == "Produced by Anonymous Volunteers\n\n" + expected  # no header: no credits cut
    assert docs["body-only"]["text"] == expected
    assert {k: stats.counters[k] for k in ("gutenberg_end_missing", "gutenberg_start_missing",
                                           "no_gutenberg_markers")} == {
        "gutenberg_end_missing": 1, "gutenberg_start_missing": 1, "no_gutenberg_markers": 1}


def test_other_header_styles():
    """The 1990s small-print header, a START marker wrapped over two lines, markers without
    spaces, "End of Project Gutenberg's" footers, continued Title lines, "[Etext #]" numbers."""
    body = tidy_whitespace(PP.read_text(encoding="utf-8-sig").split("Chapter 1\n", 1)[1][:5000])
    old = ("The Project Gutenberg Etext of Some Book, by Some Author\n\nCopyright laws are changing all over"
           " the world.\n\n[Etext #123]\n\n**Welcome To The World of Free Plain Vanilla Electronic Texts**\n\n"
           "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***\nWhy is this \"Small Print!\" "
           "statement here? Project Gutenberg ...\n*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*"
           f"\n\n\n\nThis etext was prepared by A. Volunteer.\n\n\n{body}\n\n\nEnd of Project Gutenberg's Etext "
           "of Some Book\n")
    result = strip_gutenberg(old)
    assert result.reason is None and result.body == body
    assert result.header == {"title": "Some Book", "author": "Some Author", "ebook_number": 123}
    assert result.counters == ["gutenberg_header_stripped", "gutenberg_credits_removed", "gutenberg_footer_stripped"]

    wrapped = ("Title: The Life and Strange Surprizing Adventures\n       of a Mariner\n\nAuthor: Someone\n\n"
               "Language: English and French\n\nRelease Date: May 1, 2004 [EBook #12345]\n\n"
               "***START OF THE PROJECT GUTENBERG EBOOK THE LIFE AND STRANGE SURPRIZING\nADVENTURES OF A MARINER***"
               f"\n\n\n{body}\n\n***END OF THE PROJECT GUTENBERG EBOOK THE LIFE\nADVENTURES***\n\nlicence")
    result = strip_gutenberg(wrapped)
    assert result.reason is None and result.body == body
    assert result.header == {"title": "The Life and Strange Surprizing Adventures of a Mariner", "author": "Someone",
                             "language": "English and French", "ebook_number": 12345}


# -- ids, determinism ---------------------------------------------------------------------------------


def test_ids_unique_across_collections_and_within_a_shard(tmp_path, extracted):
    """The same book as "gutenberg" file, "pg19" file and "other" jsonl line: three ids (RedPajama's
    collided). Two copies of one file name in a shard: the first kept, the second duplicate_id."""
    other = write(tmp_path / "other.jsonl", jsonl([{"id": "1342-0", "text": PP.read_text(encoding="utf-8-sig")}]))
    a, _, _ = run(tmp_path, [PP], collection="gutenberg", name="a")
    b, _, _ = run(tmp_path, [PP], collection="pg19", name="b")
    c, _, _ = run(tmp_path, [other], collection="other", name="c")
    ids = [a["1342-0"]["id"], b["1342-0"]["id"], c["1342-0"]["id"]]
    assert ids == ["books/gutenberg/1342-0", "books/pg19/1342-0", "books/other/1342-0"]
    assert a["1342-0"]["text"] == b["1342-0"]["text"] == c["1342-0"]["text"] == extracted[0]["1342-0"]["text"]
    for folder, name in (("a", "pg1342-0.txt"), ("b", "1342-0.txt")):  # PG's two layouts of one file
        (tmp_path / folder).mkdir()
        write(tmp_path / folder / name, PP.read_bytes())
    docs, dropped, stats = run(tmp_path, [tmp_path / "b" / "1342-0.txt", tmp_path / "a" / "pg1342-0.txt"], name="twins")
    assert docs["1342-0"]["source_file"] == "pg1342-0.txt"  # first by path
    assert [(d["id"], d["source_file"], d["drop_reason"]) for d in dropped] == [
        ("books/gutenberg/1342-0", "1342-0.txt", "duplicate_id")]
    assert stats.dropped == {"duplicate_id": 1} and stats.docs_out == 1
    with pytest.raises(ValueError, match="collection"):
        extract_books([str(PP)], str(tmp_path / "x.parquet"), collection="a/b")


def test_output_is_deterministic(tmp_path):
    paths = [str(PP), str(DQ)]
    extract_books(paths, str(tmp_path / "1.parquet"), collection="gutenberg")
    extract_books(paths[::-1], str(tmp_path / "2.parquet"), collection="gutenberg")
    assert (tmp_path / "1.parquet").read_bytes() == (tmp_path / "2.parquet").read_bytes()


# -- language identification (the real lid.176 model, samples/models/lid.176.ftz) --------------------


def test_real_books_language_identified(extracted):
    docs, _, stats = extracted
    for book_id, language, floor in (("1342-0", "en", 0.99), ("2600-0", "en", 0.95), ("2000", "es", 0.95)):
        doc = docs[book_id]
        assert (doc["language"], doc["language_source"], doc["detected_language"]) == (language, "metadata", language)
        assert floor < doc["detected_language_score"] <= 1.0
    assert stats.counters["language_identified"] == 3 == stats.counters["language_agreements"]
    assert stats.counters["detected_en"] == 2 and stats.counters["detected_es"] == 1
    assert "language_disagreements" not in stats.counters and "language_low_score" not in stats.counters


def test_language_sample_is_bounded_and_spread(extracted):
    text = extracted[0]["2600-0"]["text"]  # 3.2 MB
    pieces = language_sample(text)
    assert len(pieces) == LANGID_SLICES and all(900 <= len(p) <= LANGID_SLICE_CHARS for p in pieces)
    starts = [text.index(p) for p in pieces]
    assert starts == sorted(starts) and starts[0] < len(text) // 10 and starts[-1] > len(text) * 9 // 10
    assert all(not p[0].isspace() and not p[-1].isspace() for p in pieces)  # ends moved to whitespace
    short = text[:2500]  # a short text: consecutive slices covering all of it
    assert "".join(language_sample(short)) == short and len(language_sample(short)) == 3


def test_language_filled_disagreement_and_keep_list(tmp_path, extracted):
    pp, dq = extracted[0]["1342-0"]["text"], extracted[0]["2000"]["text"]
    books = [
        {"id": "no-meta", "text": pp[:20_000]},  # English, no language field: filled from the detection
        {"id": "wrong-meta", "text": pp[20_000:40_000], "language": "fr"},  # metadata wrong
        {"id": "iso2", "text": dq[:20_000], "meta": {"language": "spa"}},  # ISO 639-2: agrees
        {"id": "odd-meta", "text": dq[20_000:40_000], "language": "Old Castilian"},  # not comparable
        {"id": "numbers", "text": " ".join(str(n) for n in range(2000))},  # no language to detect
        {"id": "numbers-en", "text": " ".join(str(n) for n in range(2000)), "language": "en"},
        {"id": "bilingual", "text": pp[40_000:50_000] + "\n\n" + dq[40_000:50_000]},
    ]
    path = write(tmp_path / "mixed.jsonl", jsonl(books))
    docs, dropped, stats = run(tmp_path, [path], collection="mixed")
    assert list(docs) == [b["id"] for b in books]  # no keep-list: every language kept
    view = {k: (d["language"], d["language_source"], d["detected_language"]) for k, d in docs.items()}
    assert view["no-meta"] == ("en", "detected", "en")
    assert view["wrong-meta"] == ("fr", "metadata", "en")  # the metadata stays; the disagreement is counted
    assert view["iso2"] == ("spa", "metadata", "es") and view["odd-meta"] == ("Old Castilian", "metadata", "es")
    assert docs["numbers"]["detected_language_score"] < 0.5 and docs["numbers"]["language"] is None
    assert docs["numbers"]["language_source"] is None
    assert 0.3 < docs["bilingual"]["detected_language_score"] < 0.7  # half the slices in each language
    assert stats.counters["language_identified"] == 7 and stats.counters["language_filled"] == 1
    assert stats.counters["language_disagreements"] == 1 and stats.counters["language_agreements"] == 1
    assert stats.counters["language_low_score"] == 3  # the numbers twice, the bilingual book

    docs, dropped, stats = run(tmp_path, [path], collection="mixed", name="en", languages=["en"])
    assert list(docs) == ["no-meta", "wrong-meta", "numbers-en"]  # the detection decides, else the metadata
    assert {d["book_id"]: d["drop_reason"] for d in dropped} == {
        "iso2": "language:es", "odd-meta": "language:es", "numbers": "language_unknown",
        "bilingual": "language_unknown"}
    assert dropped[0]["detected_language"] == "es"  # the audit rows carry the detection
    assert stats.docs_in == 7 == stats.docs_out + sum(stats.dropped.values())

    _, dropped, _ = run(tmp_path, [path], collection="mixed", name="fr", languages=["FR"])
    assert {d["book_id"]: d["drop_reason"] for d in dropped}["wrong-meta"] == "language:en"


def test_keep_list_on_real_books_and_without_a_model(tmp_path):
    docs, dropped, stats = run(tmp_path, [PP, DQ], languages=["en"])
    assert list(docs) == ["1342-0"] and [(d["book_id"], d["drop_reason"]) for d in dropped] == [("2000", "language:es")]
    assert stats.dropped == {"language:es": 1} and stats.counters["detected_es"] == 1
    # No model: the metadata alone decides, and nothing is detected.
    docs, dropped, stats = run(tmp_path, [PP, DQ], name="nomodel", language_model=None, languages=["es"])
    assert list(docs) == ["2000"] and docs["2000"]["detected_language"] is None
    assert docs["2000"]["detected_language_score"] is None and docs["2000"]["language_source"] == "metadata"
    assert stats.dropped == {"language:en": 1} and "language_identified" not in stats.counters
    with pytest.raises(FileNotFoundError):
        extract_books([str(PP)], str(tmp_path / "x.parquet"), collection="g", language_model=str(tmp_path / "no.ftz"))


# -- book-level near-duplicate removal ----------------------------------------------------------------


def paragraphs(text):
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def replace_paragraphs(text, share, donor, seed):
    """`text` with a share of its paragraphs replaced by paragraphs of `donor`: shares 1-share of it."""
    rng = random.Random(seed)
    return "\n\n".join(rng.choice(donor) if rng.random() < share else p for p in paragraphs(text))


def test_book_near_dedup_settings():
    """The S-curve and the verification cut sit between "more than 90% shared" (Jaccard >= 0.818
    for a copy with 10% other text) and "70% or less" (Jaccard <= 0.70 for a 70% part)."""
    p = BOOK_NEAR_DEDUP
    assert p["bands"] * p["rows"] <= p["num_perm"] and p["verify"]
    assert nd.candidate_probability(0.818, p["bands"], p["rows"]) > 0.999
    assert nd.candidate_probability(0.03, p["bands"], p["rows"]) < 1e-9
    assert 0.70 < p["threshold"] < 0.818
    assert set(p) == {"num_perm", "bands", "rows", "ngram", "seed", "verify", "threshold", "batch_size"}


def test_book_near_dedup_removes_90_percent_copies_only(tmp_path, extracted):
    """Shard 0: the three real books (gutenberg). Shard 1 (collection "other", jsonl): Pride and
    Prejudice with 5% of its paragraphs replaced by War and Peace paragraphs (shares 95%: removed),
    Don Quijote with 40% of its paragraphs replaced (shares 60%: kept) and the first 60% of Pride
    and Prejudice (an abridged copy: kept)."""
    pp, dq, wp = (extracted[0][k]["text"] for k in ("1342-0", "2000", "2600-0"))
    donor = paragraphs(wp)
    copies = [
        {"id": "pp-95", "text": replace_paragraphs(pp, 0.05, donor, seed=1)},
        {"id": "dq-60", "text": replace_paragraphs(dq, 0.40, donor, seed=2)},
        {"id": "pp-first-60", "text": pp[: len(pp) * 6 // 10]},
    ]
    shard0, shard1 = tmp_path / "shard-0.parquet", tmp_path / "shard-1.parquet"
    extract_books([str(PP), str(DQ), str(WP)], str(shard0), collection="gutenberg")
    extract_books([str(write(tmp_path / "other.jsonl", jsonl(copies)))], str(shard1), collection="other")
    shards = [str(shard0), str(shard1)]

    signature_options = {k: BOOK_NEAR_DEDUP[k] for k in ("num_perm", "bands", "rows", "ngram", "seed", "batch_size")}
    pair_options = {k: BOOK_NEAR_DEDUP[k] for k in ("verify", "threshold")}
    signatures = [str(tmp_path / "sig" / f"{s}.npz") for s in range(2)]
    for s, path in enumerate(shards):
        nd.minhash_signatures(path, signatures[s], shard_index=s, **signature_options)
    pair_files = [str(tmp_path / "pairs" / f"{p}.npz") for p in range(2)]
    pair_stats = [nd.find_candidate_pairs(signatures, f, partition=p, partitions=2, **pair_options)
                  for p, f in enumerate(pair_files)]
    clusters = nd.cluster_duplicates(pair_files, str(tmp_path / "clusters"))
    removal = [nd.remove_near_duplicates(path, str(tmp_path / "clusters" / f"shard-{s:05d}.npy"),
                                         str(tmp_path / "dedup" / f"{s}.parquet"),
                                         dropped_path=str(tmp_path / "dedup" / f"{s}-dropped.parquet"))
               for s, path in enumerate(shards)]

    kept = [d for s in range(2) for d in read_documents(tmp_path / "dedup" / f"{s}.parquet")]
    dropped = [d for s in range(2) for d in read_documents(tmp_path / "dedup" / f"{s}-dropped.parquet")]
    assert [(d["id"], d["cluster_id"], d["cluster_size"], d["drop_reason"]) for d in dropped] == [
        ("books/other/pp-95", "0:0", 2, "near_duplicate")]
    assert [(d["id"], d["cluster_id"]) for d in kept] == [
        ("books/gutenberg/1342-0", "0:0"), ("books/gutenberg/2000", None), ("books/gutenberg/2600-0", None),
        ("books/other/dq-60", None), ("books/other/pp-first-60", None)]
    assert clusters.counters == {"clusters": 1, "duplicates": 1, "largest_cluster": 2}
    assert sum(s.docs_in for s in removal) == 6 and sum(s.docs_out for s in removal) == 5

    # The margins: the estimates (from the signature files) of the planted pairs are far from the cut.
    sig = [np.load(f)["signatures"] for f in signatures]
    threshold = BOOK_NEAR_DEDUP["threshold"]
    assert nd.estimate_jaccard(sig[0][0], sig[1][0]) > threshold + 0.08  # P&P, 95% shared
    assert nd.estimate_jaccard(sig[0][1], sig[1][1]) < threshold - 0.2  # Don Quijote, 60% shared
    assert nd.estimate_jaccard(sig[0][0], sig[1][2]) < threshold - 0.08  # P&P, first 60%
    edges = np.unique(np.concatenate([np.load(f)["edges"] for f in pair_files]), axis=0)
    assert edges.tolist() == [[0, (1 << 32) | 0]]
    assert sum(s.counters["rejected_pairs"] for s in pair_stats) >= 0


def test_book_sized_signatures_are_quick():
    """MinHash of War and Peace (3.2 MB) with book settings is well under a second on one core."""
    import time

    text = strip_gutenberg(WP.read_text(encoding="utf-8-sig")).body
    hasher = nd.MinHasher(BOOK_NEAR_DEDUP["num_perm"], BOOK_NEAR_DEDUP["ngram"], BOOK_NEAR_DEDUP["seed"])
    hasher.signatures([text[:1000]])
    start = time.process_time()
    signature = hasher.signatures([text])
    assert time.process_time() - start < 2.0
    assert signature.shape == (1, 256) and not np.all(signature == nd.MAX_HASH)
