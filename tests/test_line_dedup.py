"""Corpus-wide line dedup on real extracted pages: CCNet normalisation and hash, duplicates across
and within shards, the keep rule, partition independence, short documents, accounting, a
brute-force reference and byte-identical re-runs (no Ray)."""

import hashlib
import re
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from stages import line_dedup as ld
from stages.documents import WEB_DOCUMENT_SCHEMA, read_documents, schema_with, write_documents
from stages.extract import extract_warc
from tests.support import SAMPLES

MIN_CHARS = 200
SCHEMA = schema_with(WEB_DOCUMENT_SCHEMA, pa.field("language", pa.string()), pa.field("language_score", pa.float32()))


# -- CCNet's normaliser, verbatim from facebookresearch/cc_net cc_net/text_normalizer.py ---------

UNICODE_PUNCT = {
    "，": ",", "。": ".", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"', "１": '"',
    "」": '"', "「": '"', "《": '"', "》": '"', "´": "'", "∶": ":", "：": ":", "？": "?", "！": "!",
    "（": "(", "）": ")", "；": ";", "–": "-", "—": " - ", "．": ". ", "～": "~", "’": "'",
    "…": "...", "━": "-", "〈": "<", "〉": ">", "【": "[", "】": "]", "％": "%", "►": "-",
}  # fmt: skip
UNICODE_PUNCT_RE = re.compile(f"[{''.join(UNICODE_PUNCT.keys())}]")
NON_PRINTING_CHARS_RE = re.compile(f"[{''.join(map(chr, list(range(0, 32)) + list(range(127, 160))))}]")
DIGIT_RE = re.compile(r"\d")
PUNCT_OR_NON_PRINTING_CHARS_RE = re.compile(
    (UNICODE_PUNCT_RE.pattern + NON_PRINTING_CHARS_RE.pattern).replace("][", "")
)


def ccnet_normalize_for_dedup(line: str) -> str:
    line = line.strip()
    if not line:
        return line
    line = line.lower()
    line = DIGIT_RE.sub("0", line)
    return PUNCT_OR_NON_PRINTING_CHARS_RE.sub("", line)


def ccnet_str_hash(s: str) -> int:
    return int(np.frombuffer(hashlib.sha1(bytes(s, encoding="utf-8")).digest()[:8], dtype="<u8")[0])


# -- corpus -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> list[dict]:
    """Real pages: two English academic crawls (pages of one site share navigation and footer
    lines) and multilingual news/blog pages (German, French, Chinese, ...)."""
    out = tmp_path_factory.mktemp("extracted")
    docs = []
    for name in ["wget-2024-academic-0", "wget-2024-academic-1", "web-pages-2019-2021"]:
        path = out / f"{name}.parquet"
        extract_warc(str(SAMPLES / "warc" / f"{name}.warc.gz"), str(path), min_text_chars=MIN_CHARS)
        docs.extend(read_documents(path))
    return [{**d, "language": "en", "language_score": 0.5 + i / 1000} for i, d in enumerate(docs)]


def fresh(text: str, tag: str) -> str:
    """New lines made from a real page: each non-blank line's words reversed behind `tag`, keeping
    only the first line of each normal form (so the text has no blank or repeated line)."""
    lines, seen = [], set()
    for line in text.split("\n"):
        new = f"{tag} " + " ".join(line.split()[::-1])
        if line.strip() and ld.normalise_line(new) not in seen:
            seen.add(ld.normalise_line(new))
            lines.append(new)
    return "\n".join(lines)


def disguised(text: str) -> str:
    """A copy a normalised hash still recognises: case, digits, punctuation, accents and spacing changed."""
    out = []
    for k, line in enumerate(text.split("\n")):
        if line.strip():
            line = line.upper() if k % 2 else line
            line = re.sub(r"\d", lambda m: str((int(m.group()) + 3) % 10), line)
            line = "  " + line.replace(",", ";").replace(" ", "  ").replace("e", "é") + " ¶"
        out.append(line)
    return "\n".join(out)


@pytest.fixture(scope="module")
def shards(pages, tmp_path_factory) -> list[Path]:
    """Four shards. 0-2: the real pages dealt round-robin, so each site's shared lines are spread
    over shards. 3: made from them: a disguised copy of a page of shard 0 (every line a duplicate:
    dropped), new lines followed by a page of shard 2 (kept, shorter), new lines repeated twice
    inside one document, and two documents that repeat the first new lines."""
    out = tmp_path_factory.mktemp("shards")
    dealt = [pages[i::3] for i in range(3)]
    fresh_a, fresh_b = fresh(dealt[1][2]["text"], "Variant A:"), fresh(dealt[2][3]["text"], "Variant B:")
    made = [
        {**dealt[0][1], "id": "copy-of-0-1", "text": disguised(dealt[0][1]["text"])},
        {**dealt[2][0], "id": "extended-2-0", "text": fresh_b + "\n" + dealt[2][0]["text"]},
        {**dealt[1][2], "id": "repeated-inside", "text": fresh_a + "\n\n" + fresh_a},
        {**dealt[2][4], "id": "shares-a", "text": fresh(dealt[2][4]["text"], "Variant C:") + "\n" + fresh_b},
        {**dealt[2][5], "id": "shares-b", "text": fresh_b + "\n" + fresh(dealt[2][5]["text"], "Variant D:")},
    ]
    paths = []
    for i, docs in enumerate([*dealt, made]):
        paths.append(out / f"shard-{i}.parquet")
        write_documents(paths[-1], docs, SCHEMA)
    return paths


def run_dedup(shards: list[Path], out: Path, partitions: int, min_text_chars: int = MIN_CHARS) -> dict:
    """The three phases in order, as the runner chains them."""
    hash_dirs = [out / "hashes" / f"s{i}" for i in range(len(shards))]
    dup_dirs = [out / "duplicates" / f"part-{p:05d}" for p in range(partitions)]
    hashed = [
        ld.hash_lines(str(s), str(h), shard_index=i, partitions=partitions)
        for i, (s, h) in enumerate(zip(shards, hash_dirs))
    ]
    found = [
        ld.find_duplicate_lines([str(h / ld.partition_file(p)) for h in hash_dirs], str(d), partition=p)
        for p, d in enumerate(dup_dirs)
    ]
    outputs = [out / "docs" / f"{i}.parquet" for i in range(len(shards))]
    dropped = [out / "dropped" / f"{i}.parquet" for i in range(len(shards))]
    removed = [
        ld.remove_duplicate_lines(str(s), [str(d / ld.shard_file(i)) for d in dup_dirs], str(o),
                                  min_text_chars=min_text_chars, dropped_path=str(x))
        for i, (s, o, x) in enumerate(zip(shards, outputs, dropped))
    ]
    return {"hashed": hashed, "found": found, "removed": removed, "outputs": outputs, "dropped": dropped,
            "hash_dirs": hash_dirs, "dup_dirs": dup_dirs}


def brute_force(shards: list[Path], min_text_chars: int = MIN_CHARS) -> dict:
    """The keep rule in plain Python: one set of normalised lines over the corpus, in corpus order."""
    seen, removed, kept_docs, dropped_ids, removed_bytes = set(), set(), [], [], 0
    for s, path in enumerate(shards):
        kept_docs.append([])
        for d, doc in enumerate(read_documents(path)):
            lines, lost = [], False
            for k, line in enumerate(doc["text"].split("\n")):
                key = ld.normalise_line(line)
                if key and key in seen:
                    removed.add((s, d, k))
                    removed_bytes += len(line.encode())
                    lost = True
                else:
                    seen.add(key)
                    lines.append(line)
            text = "\n".join(lines)
            if lost and len(text.strip()) < min_text_chars:
                dropped_ids.append(doc["id"])
            else:
                kept_docs[-1].append({**doc, "text": text})
    return {"removed": removed, "docs": kept_docs, "dropped": dropped_ids, "bytes": removed_bytes}


@pytest.fixture(scope="module")
def result(shards, tmp_path_factory) -> dict:
    return run_dedup(shards, tmp_path_factory.mktemp("run3"), partitions=3)


def removed_lines(run: dict) -> set[tuple[int, int, int]]:
    out = set()
    for d in run["dup_dirs"]:
        for s in range(len(run["outputs"])):
            out |= {(s, int(r["doc"]), int(r["line"])) for r in np.load(d / ld.shard_file(s))}
    return out


# -- normalisation and hash ---------------------------------------------------------------------


def test_normalisation_examples():
    n = ld.normalise_line
    assert n("The Quick BROWN Fox") == "the quick brown fox"  # case
    assert n("Posted 12/03/2024 at 10:45") == n("posted 01/11/1999 at 23:59") == "posted 00000000 at 0000"
    assert n("Hello, world!") == n("hello world") == n("«Hello» — world…") == "hello world"  # punctuation
    assert n("e-mail: x@y.org") == "email xyorg"  # punctuation is deleted, not a space
    assert n("Café crème à Zürich") == "cafe creme a zurich"  # accents
    assert n("İstanbul ΟΔΟΣ ١٢٣ ½") == "istanbul οδος 000 ½"  # Unicode case and digits; ½ is no digit
    assert n("  many\u00a0\u2003 spaces  here  ") == "many spaces here"  # Unicode spaces collapsed
    assert n("tab\tseparated") == "tabseparated"  # control characters deleted, as CCNet does
    assert n("soft\u00adhy\u200bphen") == "softhyphen"  # format characters
    assert n("") == n("   ") == n("*** | ---") == n("© ® ™ →") == ""  # blank: not hashed


def test_batch_normalisation_equals_reference_and_coarsens_ccnet(pages):
    """The vectorised phase-1 path equals `normalise_line` line for line on real multilingual pages;
    and lines equal under CCNet's own normalize_for_dedup are equal here too."""
    tricky = ["Ünïcödé  ñ 12,5 % İstanbul ŉ ǅ\r", "\t", "x\n\ny", "１ ２ —a—b—", "ΟΔΟΣ.\nΑ", "한국어 ଓଡ଼ିଆ ﬁ Å"]
    texts = [p["text"] for p in pages] + tricky
    lines = [line for t in texts for line in t.split("\n")]
    assert ld._normalised_lines(texts) == [ld.normalise_line(line).encode() for line in lines]
    assert all(ld.normalise_line(line) == ld.normalise_line(ccnet_normalize_for_dedup(line)) for line in lines)
    assert sum(1 for line in lines if line and not unicodedata.normalize("NFC", line).isascii()) > 100


def test_batch_normalisation_equals_reference_on_every_code_point():
    """Every assigned code point alone, and between a capital with an accent, a combining mark
    and a capital sigma (contextual lower-casing, reordering of marks), in batches that mix the
    fast per-character path with the exact one (Greek, Hangul, Indic vowel signs)."""
    codes = [c for c in (*range(0x40000), *range(0xE0000, 0xE1000), 0x10FFFD) if c != 10]  # 10 ends a line
    lines = [chr(c) for c in codes] + [f"Ä{chr(c)}\u0323{chr(c)}ΣA" for c in codes[::7]]
    for start in range(0, len(lines), 50_000):
        batch = lines[start : start + 50_000]
        assert ld._normalised_lines(batch) == [ld.normalise_line(x).encode() for x in batch]


def test_line_hash_is_ccnets_hash_of_the_normalised_line(pages):
    lines = [line for p in pages[:20] for line in p["text"].split("\n")]
    assert [ld.line_hash(x) for x in lines] == [ccnet_str_hash(ld.normalise_line(x)) for x in lines]
    assert ld._line_hashes(lines).tolist() == [ld.line_hash(x) for x in lines]
    assert ld.line_hash("Hello, World!") == ld.line_hash("hello world") == int.from_bytes(
        hashlib.sha1(b"hello world").digest()[:8], "little")


def test_partition_is_a_hash_range():
    h = np.random.default_rng(0).integers(0, 2**64, 10_000, dtype=np.uint64, endpoint=False)
    for partitions in (1, 3, 7, 64):
        part = ld.partition_of(h, partitions)
        assert part.max() < partitions and np.all(np.diff(part[np.argsort(h)].astype(np.int64)) >= 0)
        assert np.array_equal(np.searchsorted(ld._partition_starts(partitions), h, side="right") - 1, part)


# -- the three phases ---------------------------------------------------------------------------


def test_hash_files_hold_every_non_blank_line(shards, result):
    for i, (shard, directory) in enumerate(zip(shards, result["hash_dirs"])):
        names = sorted(p.name for p in directory.iterdir())
        assert names == ["meta.json"] + [ld.partition_file(p) for p in range(3)]
        entries = []
        for p in range(3):
            part = np.load(directory / ld.partition_file(p))
            assert part.dtype == ld.HASH_DTYPE and (ld.partition_of(part["hash"], 3) == p).all()
            assert part.tolist() == sorted(part.tolist())  # by (hash, doc, line)
            entries += part.tolist()
        expected = {
            (ld.line_hash(line), d, k)
            for d, doc in enumerate(read_documents(shard))
            for k, line in enumerate(doc["text"].split("\n"))
            if ld.normalise_line(line)
        }
        assert set(entries) == expected and len(entries) == len(expected)
        assert result["hashed"][i].counters["lines_hashed"] == len(expected)


def test_matches_brute_force(shards, result):
    expected = brute_force(shards)
    assert removed_lines(result) == expected["removed"]
    for docs, path in zip(expected["docs"], result["outputs"]):
        assert list(read_documents(path)) == docs
    assert [d["id"] for path in result["dropped"] for d in read_documents(path)] == expected["dropped"]
    assert sum(s.counters["lines_removed"] for s in result["removed"]) == len(expected["removed"])
    assert sum(s.counters["bytes_removed"] for s in result["removed"]) == expected["bytes"]
    assert sum(s.counters["duplicate_lines"] for s in result["found"]) == len(expected["removed"])
    # the real pages alone have duplicates across shards (site navigation, footers)
    assert {s for s, _, _ in expected["removed"]} >= {1, 2, 3}


def non_blank(text: str) -> list[str]:
    return [ld.normalise_line(line) for line in text.split("\n") if ld.normalise_line(line)]


def test_duplicates_across_shards_keep_the_first_in_shard_order(shards, pages, tmp_path, result):
    """The disguised copy (shard 3) of a shard-0 page loses every line and is dropped, while the
    lines stay in shard 0. With the shard order reversed, the copy comes first and stays whole,
    and the original page loses every line instead."""
    copy = [d for d in read_documents(shards[3]) if d["id"] == "copy-of-0-1"][0]
    original = pages[3]  # shard 0 holds pages 0, 3, 6, ...
    assert non_blank(copy["text"]) == non_blank(original["text"]) and copy["text"] != original["text"]
    lines = set(non_blank(copy["text"]))
    dropped = list(read_documents(result["dropped"][3]))
    assert [d for d in dropped if d["id"] == "copy-of-0-1"] == [{**copy, "drop_reason": ld.DROP_REASON}]
    assert lines <= {n for d in read_documents(result["outputs"][0]) for n in non_blank(d["text"])}

    reversed_run = run_dedup(shards[::-1], tmp_path, partitions=2)
    first = {d["id"]: d["text"] for d in read_documents(reversed_run["outputs"][0])}
    assert set(non_blank(first["copy-of-0-1"])) == lines
    assert original["id"] in {d["id"] for d in read_documents(reversed_run["dropped"][3])}
    assert removed_lines(reversed_run) == brute_force(shards[::-1])["removed"]


def test_duplicates_within_a_shard_and_within_a_document(shards, result):
    docs = {d["id"]: d["text"] for d in read_documents(shards[3])}
    out = {d["id"]: d["text"] for d in read_documents(result["outputs"][3])}
    fresh_a = docs["repeated-inside"].split("\n\n")[0]
    assert docs["repeated-inside"] == fresh_a + "\n\n" + fresh_a
    assert out["repeated-inside"] == fresh_a + "\n"  # the second copy is gone, the blank line stays
    fresh_b = docs["shares-b"].split("\nVariant D:")[0].split("\n")
    assert fresh_b[0].startswith("Variant B:") and len(fresh_b) >= 3
    # "extended-2-0" introduced fresh_b and keeps it; its copy of a shard-2 page is removed.
    assert non_blank(out["extended-2-0"]) == non_blank("\n".join(fresh_b))
    # Later documents of the same shard lose exactly those lines.
    assert non_blank(out["shares-a"]) == non_blank(docs["shares-a"])[: -len(fresh_b)]
    assert non_blank(out["shares-b"]) == non_blank(docs["shares-b"])[len(fresh_b) :]
    assert not set(non_blank("\n".join(fresh_b))) & set(non_blank(out["shares-a"] + "\n" + out["shares-b"]))


def test_partition_count_does_not_change_the_result(shards, result, tmp_path):
    one = run_dedup(shards, tmp_path / "p1", partitions=1)
    seven = run_dedup(shards, tmp_path / "p7", partitions=7)
    assert removed_lines(one) == removed_lines(seven) == removed_lines(result)
    files = [run["outputs"] + run["dropped"] for run in (one, seven, result)]
    for a, b, c in zip(*files):
        assert a.read_bytes() == b.read_bytes() == c.read_bytes()
    assert [s.counters for s in one["removed"]] == [s.counters for s in seven["removed"]]
    listed = sum(len(np.load(d / ld.shard_file(3))) for d in seven["dup_dirs"])
    assert listed == one["removed"][3].counters["lines_removed"]


def test_accounting_and_counters(shards, result):
    for stage in ("hashed", "found", "removed"):
        for stats in result[stage]:
            stats.check()
    for stats, path in zip(result["hashed"], shards):
        assert stats.docs_in == stats.docs_out == len(list(read_documents(path)))
    assert all(s.docs_in == s.docs_out == 0 for s in result["found"])
    lines_hashed = sum(s.counters["lines_hashed"] for s in result["hashed"])
    assert sum(s.counters["lines_seen"] for s in result["found"]) == lines_hashed
    for stats, out, dropped in zip(result["removed"], result["outputs"], result["dropped"]):
        assert stats.docs_out == len(list(read_documents(out)))
        assert sum(stats.dropped.values()) == len(list(read_documents(dropped)))
        assert set(stats.dropped) <= {ld.DROP_REASON}
    assert result["removed"][3].dropped[ld.DROP_REASON] >= 1
    assert result["removed"][3].counters["documents_changed"] >= 3


def test_columns_pass_through(shards, result):
    for shard, out in zip(shards, result["outputs"]):
        before = {d["id"]: d for d in read_documents(shard)}
        for doc in read_documents(out):
            assert {**doc, "text": None} == {**before[doc["id"]], "text": None}


def test_rerun_is_byte_identical_and_replaces_stale_output(shards, tmp_path):
    first = run_dedup(shards, tmp_path / "a", partitions=3)
    snapshot = {p: p.read_bytes() for p in sorted((tmp_path / "a").rglob("*")) if p.is_file()}
    (first["dup_dirs"][0] / "stale-leftover").write_text("x")
    again = run_dedup(shards, tmp_path / "a", partitions=3)
    assert {p: p.read_bytes() for p in sorted((tmp_path / "a").rglob("*")) if p.is_file()} == snapshot
    other = run_dedup(shards, tmp_path / "b", partitions=3)
    for a, b in zip(again["outputs"] + again["dropped"], other["outputs"] + other["dropped"]):
        assert a.read_bytes() == b.read_bytes()
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary or stale directories left


def test_small_normalisation_batches_give_the_same_hash_files(shards, result, tmp_path, monkeypatch):
    monkeypatch.setattr(ld, "MAX_BATCH_CHARS", 1000)  # most documents alone, some several together
    ld.hash_lines(str(shards[2]), str(tmp_path / "h"), shard_index=2, partitions=3)
    for p in [*(ld.partition_file(p) for p in range(3)), "meta.json"]:
        assert (tmp_path / "h" / p).read_bytes() == (result["hash_dirs"][2] / p).read_bytes()


def test_empty_partitions_and_audit_off(shards, result, tmp_path):
    out = tmp_path / "h"
    stats = ld.hash_lines(str(shards[1]), str(out), shard_index=1, partitions=500)
    assert len(list(out.glob("part-*.npy"))) == 500 and stats.counters["lines_hashed"] > 0
    assert sum(len(np.load(p)) == 0 for p in out.glob("part-*.npy")) > 0
    # without the audit output the kept documents are the same
    dups = [str(d / ld.shard_file(3)) for d in result["dup_dirs"]]
    ld.remove_duplicate_lines(str(shards[3]), dups, str(tmp_path / "o.parquet"), min_text_chars=MIN_CHARS)
    assert (tmp_path / "o.parquet").read_bytes() == result["outputs"][3].read_bytes()


def test_empty_shards(shards, tmp_path):
    empty = tmp_path / "empty.parquet"
    write_documents(empty, [], SCHEMA)
    run = run_dedup([empty, shards[1], empty], tmp_path / "run", partitions=2)
    alone = run_dedup([shards[1]], tmp_path / "alone", partitions=2)
    assert run["outputs"][1].read_bytes() == alone["outputs"][0].read_bytes()
    assert [s.docs_in for s in run["removed"]] == [0, alone["removed"][0].docs_in, 0]
    assert [list(read_documents(run["outputs"][i])) for i in (0, 2)] == [[], []]


def test_wrong_wiring_fails(shards, result, tmp_path):
    hashes = [h / ld.partition_file(0) for h in result["hash_dirs"]]
    with pytest.raises(ValueError, match="shard order"):
        ld.find_duplicate_lines([str(h) for h in hashes[::-1]], str(tmp_path / "x"), partition=0)
    with pytest.raises(ValueError, match="another partition"):
        ld.find_duplicate_lines([str(h) for h in hashes], str(tmp_path / "x"), partition=1)
    dups = [str(d / ld.shard_file(3)) for d in result["dup_dirs"]]
    out = str(tmp_path / "o.parquet")
    with pytest.raises(ValueError, match="each partition"):
        ld.remove_duplicate_lines(str(shards[3]), dups[:2], out, min_text_chars=1)
    with pytest.raises(ValueError, match="different shards"):
        mixed = [dups[0], *(str(d / ld.shard_file(2)) for d in result["dup_dirs"][1:])]
        ld.remove_duplicate_lines(str(shards[3]), mixed, out, min_text_chars=1)
    with pytest.raises(ValueError):  # shard 3's list applied to shard 0: a missing line or another hash
        ld.remove_duplicate_lines(str(shards[0]), dups, out, min_text_chars=1)
    assert not (tmp_path / "x").exists() and not (tmp_path / "o.parquet").exists()
