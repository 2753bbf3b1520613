"""Near-duplicate removal (MinHash LSH) on real extracted pages: signatures against datasketch,
clusters across shards, the keep rule, the audit columns, accounting and determinism (no Ray)."""

import itertools
import random

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasketch import MinHash

from stages import near_dedup as nd
from stages.documents import read_documents, write_documents
from stages.extract import extract_warc
from tests.support import SAMPLES


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> tuple[list[dict], object]:
    """Real pages (English academic sites, multilingual news/blogs) and their parquet schema."""
    out = tmp_path_factory.mktemp("extracted")
    docs, schema = [], None
    for name in ["wget-2024-academic-0", "wget-2024-academic-1", "web-pages-2019-2021"]:
        path = out / f"{name}.parquet"
        extract_warc(str(SAMPLES / "warc" / f"{name}.warc.gz"), str(path), min_text_chars=200)
        docs.extend(read_documents(path))
        schema = pq.read_schema(path)
    return docs, schema


@pytest.fixture(scope="module")
def unrelated(pages) -> list[dict]:
    """Pages of at least 300 words with no shingle set within Jaccard 0.2 of another page's (the
    sample has real duplicates, e.g. allenai.org crawled three times; they are left out)."""
    docs, _ = pages
    sets = [nd.shingles(d["text"]) for d in docs]
    related = {i for i, j in itertools.combinations(range(len(docs)), 2) if nd.jaccard(sets[i], sets[j]) >= 0.2}
    chosen = [d for i, d in enumerate(docs) if i not in related and len(nd.words(d["text"])) >= 300]
    assert len(chosen) >= 30
    return chosen[:30]


def edit(text: str, rate: float, vocabulary: list[str], seed: int) -> str:
    """`text` with each whitespace word replaced, with probability `rate`, by a word of another page."""
    rng = random.Random(seed)
    return " ".join(rng.choice(vocabulary) if rng.random() < rate else w for w in text.split())


def datasketch_minhash(text: str, num_perm: int, seed: int) -> MinHash:
    m = MinHash(num_perm=num_perm, seed=seed)
    m.update_batch([s.encode("utf-8") for s in nd.shingles(text)])
    return m


# -- shingles and signatures -------------------------------------------------------------------


def test_normalisation():
    assert nd.words("Café   CAFE, café!\n(2024) 1999 - costs $4.50") == [
        "cafe", "cafe", "cafe", "0000", "0000", "costs", "0", "00"
    ]
    assert nd.shingles("one two three", 5) == {"one two three"}  # fewer words than ngram: one shingle
    assert nd.shingles("... !!! ---", 5) == set()
    assert nd.shingles("a b c d e f", 5) == {"a b c d e", "b c d e f"}


def test_vectorised_words_equal_per_document_words(pages):
    """The vectorised segmentation (fast mode) finds exactly the words of `words()` (sha1 mode),
    on English, German, French and Chinese pages, with accents, digits and symbols."""
    texts = [d["text"] for d in pages[0]] + ["", "Ünïcödé  ñ 12,5 % İstanbul ŉ ǅ", "…", "x", "soft\xadhyphen"]
    folded, starts, ends, per_doc = nd._segment(texts)
    found = [folded[s:e].tobytes().decode("utf-32-le") for s, e in zip(starts, ends)]
    expected = [nd.words(t) for t in texts]
    assert per_doc.tolist() == [len(w) for w in expected]
    assert found == [w for ws in expected for w in ws]
    assert expected[-5:] == [[], ["unicode", "n", "00", "0", "istanbul", "ŉ", "ǆ"], [], ["x"], ["softhyphen"]]


@pytest.mark.parametrize("num_perm,seed", [(128, 1), (112, 7)])
def test_sha1_mode_equals_datasketch(pages, num_perm, seed):
    """hash="sha1" replicates datasketch 2.0's default MinHash value for value."""
    texts = [d["text"] for d in pages[0][:40]] + ["three short words", ""]
    signatures = nd.MinHasher(num_perm, 5, seed, hash="sha1").signatures(texts)
    for text, signature in zip(texts, signatures):
        assert np.array_equal(signature, datasketch_minhash(text, num_perm, seed).hashvalues)


def test_fast_estimates_agree_with_datasketch(unrelated):
    """On real page pairs over the whole range of Jaccard similarity, the fast signatures'
    estimates are as close to the exact Jaccard as datasketch's, and close to datasketch's."""
    vocabulary = [w for d in unrelated[20:] for w in d["text"].split()]
    num_perm = 128
    hasher = nd.MinHasher(num_perm, 5, seed=1)
    ours, theirs, exact = [], [], []
    for i, page in enumerate(unrelated[:20]):
        for rate in (0.0, 0.01, 0.03, 0.06, 0.12, 0.3):
            variant = edit(page["text"], rate, vocabulary, seed=i)
            exact.append(nd.jaccard(nd.shingles(page["text"]), nd.shingles(variant)))
            a, b = hasher.signatures([page["text"], variant])
            ours.append(float(nd.estimate_jaccard(a, b)))
            reference = datasketch_minhash(page["text"], num_perm, 1)
            theirs.append(reference.jaccard(datasketch_minhash(variant, num_perm, 1)))
    for i, j in zip(range(0, 20, 2), range(1, 20, 2)):  # unrelated pairs
        exact.append(nd.jaccard(nd.shingles(unrelated[i]["text"]), nd.shingles(unrelated[j]["text"])))
        a, b = hasher.signatures([unrelated[i]["text"], unrelated[j]["text"]])
        ours.append(float(nd.estimate_jaccard(a, b)))
        theirs.append(datasketch_minhash(unrelated[i]["text"], num_perm, 1).jaccard(
            datasketch_minhash(unrelated[j]["text"], num_perm, 1)))
    ours, theirs, exact = map(np.array, (ours, theirs, exact))
    assert exact.min() < 0.05 and exact.max() == 1.0 and ((exact > 0.3) & (exact < 0.9)).sum() >= 20
    sigma = np.sqrt(exact * (1 - exact) / num_perm)
    assert np.all(np.abs(ours - exact) <= 4.5 * sigma + 0.01)
    assert np.all(np.abs(theirs - exact) <= 4.5 * sigma + 0.01)
    assert np.all(np.abs(ours - theirs) <= 4.5 * np.sqrt(2) * sigma + 0.02)
    assert abs(np.mean(ours - exact)) < 0.01  # no bias
    assert np.mean(np.abs(ours - exact)) <= 1.3 * np.mean(np.abs(theirs - exact)) + 0.005
    assert np.all(ours[exact == 1.0] == 1.0)


def test_signature_batches_and_empty_documents(pages):
    """A signature does not depend on the batch it is computed in (chunks split documents);
    a document without a word has the empty signature; case and punctuation do not matter."""
    texts = [d["text"] for d in pages[0][:30]]
    small_chunks = nd.MinHasher(112, 5, 1, chunk_shingles=1000, block_below=500)
    together = small_chunks.signatures(["", *texts, "?!"])
    alone = np.stack([nd.MinHasher(112, 5, 1).signature(t) for t in texts])
    assert np.array_equal(together[1:-1], alone)
    assert np.all(together[0] == nd.MAX_HASH) and np.all(together[-1] == nd.MAX_HASH)
    shouting = texts[0].upper().replace(".", " ! ").replace(",", ";")
    assert np.array_equal(nd.MinHasher(112, 5, 1).signature(shouting), alone[0])


def test_lsh_threshold_defaults():
    assert nd.lsh_threshold(14, 8) == pytest.approx(0.719, abs=1e-3)
    assert nd.candidate_probability(0.8, 14, 8) == pytest.approx(0.924, abs=1e-3)
    assert nd.DEFAULT_BANDS * nd.DEFAULT_ROWS == nd.DEFAULT_NUM_PERM == 112


# -- the four phases across shards ---------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(unrelated, pages, tmp_path_factory):
    """Three shards of real pages with planted duplicates spread across shards:
    page 2 (shard 0) copied verbatim into shards 1 and 2, page 5 (shard 0) with 1% of its words
    replaced in shard 1, page 9 (shard 1) with 1% replaced in shard 2, page 14 (shard 1)
    re-typed in upper case with other punctuation in shard 2, and page 12 with 60% of its words
    replaced (Jaccard ~0: must stay) in shard 2. Copies get new ids, and sit before the
    originals' rows where possible, so the keep rule is by shard first."""
    base = unrelated[:24]
    vocabulary = [w for d in unrelated[24:] for w in d["text"].split()]

    def copy(doc, tag, text=None):
        return {**doc, "id": f"{doc['id']}-{tag}", "text": doc["text"] if text is None else text}

    shards = [
        base[0:8],
        [copy(base[2], "copy1"), *base[8:12], copy(base[5], "edit1", edit(base[5]["text"], 0.01, vocabulary, 5)),
         *base[12:16]],
        [copy(base[2], "copy2"), copy(base[9], "edit1", edit(base[9]["text"], 0.01, vocabulary, 9)), *base[16:20],
         copy(base[14], "upper", base[14]["text"].upper().replace(".", ";").replace(",", " -")),
         copy(base[12], "rewritten", edit(base[12]["text"], 0.6, vocabulary, 12)), *base[20:24]],
    ]
    out = tmp_path_factory.mktemp("corpus")
    paths = []
    for s, docs in enumerate(shards):
        path = out / f"shard-{s}.parquet"
        write_documents(path, docs, pages[1])
        paths.append(str(path))
    return paths, shards


def run_near_dedup(paths, out, *, partitions, audit=True, **pair_options):
    params = dict(num_perm=112, bands=14, rows=8, ngram=5, seed=1)
    signatures, stats = [], {"signatures": [], "pairs": [], "remove": []}
    for s, path in enumerate(paths):
        signatures.append(str(out / "signatures" / f"{s}.npy"))
        stats["signatures"].append(nd.minhash_signatures(path, signatures[-1], shard_index=s, **params))
    pair_files = [str(out / "pairs" / f"part-{p:05d}.npy") for p in range(partitions)]
    for p, pair_file in enumerate(pair_files):
        stats["pairs"].append(nd.find_candidate_pairs(signatures, pair_file, partition=p, partitions=partitions,
                                                      **pair_options))
    stats["clusters"] = nd.cluster_duplicates(pair_files, str(out / "clusters"), num_shards=len(paths))
    for s, path in enumerate(paths):
        stats["remove"].append(nd.remove_near_duplicates(
            path, str(out / "clusters" / f"shard-{s:05d}.npy"), str(out / "docs" / f"{s}.parquet"),
            dropped_path=str(out / "dropped" / f"{s}.parquet") if audit else None))
    return stats


def outputs(out, shards=3):
    kept = [list(read_documents(out / "docs" / f"{s}.parquet")) for s in range(shards)]
    dropped = [list(read_documents(out / "dropped" / f"{s}.parquet")) for s in range(shards)]
    clusters = [np.load(out / "clusters" / f"shard-{s:05d}.npy") for s in range(shards)]
    return kept, dropped, clusters


def test_duplicates_across_shards_are_clustered(corpus, tmp_path):
    paths, shards = corpus
    stats = run_near_dedup(paths, tmp_path, partitions=5)
    kept, dropped, clusters = outputs(tmp_path)

    by_id = {d["id"]: d for docs in kept for d in docs}
    # page 2: verbatim copies in shards 1 and 2; kept in shard 0 (row 2) although rows 0 elsewhere.
    assert [(d["id"], d["cluster_id"], d["cluster_size"]) for docs in dropped for d in docs] == [
        (shards[1][0]["id"], "0:2", 3),
        (shards[1][5]["id"], "0:5", 2),
        (shards[2][0]["id"], "0:2", 3),
        (shards[2][1]["id"], "1:2", 2),
        (shards[2][6]["id"], "1:8", 2),
    ]
    assert all(d["drop_reason"] == "near_duplicate" for docs in dropped for d in docs)
    assert (by_id[shards[0][2]["id"]]["cluster_id"], by_id[shards[0][2]["id"]]["cluster_size"]) == ("0:2", 3)
    assert (by_id[shards[0][5]["id"]]["cluster_id"], by_id[shards[0][5]["id"]]["cluster_size"]) == ("0:5", 2)
    assert by_id[shards[1][2]["id"]]["cluster_id"] == "1:2"  # page 9, kept; its edit dropped
    assert by_id[shards[1][8]["id"]]["cluster_id"] == "1:8"  # page 14, kept; the upper-case copy dropped
    # Every other page, the heavily rewritten copy of page 12 included, is in no cluster.
    representatives = {shards[0][2]["id"], shards[0][5]["id"], shards[1][2]["id"], shards[1][8]["id"]}
    assert all(d["cluster_id"] is None and d["cluster_size"] is None
               for docs in kept for d in docs if d["id"] not in representatives)
    assert shards[2][7]["id"].endswith("-rewritten") and shards[2][7]["id"] in by_id

    # Cluster files: per shard, sorted by row, one keep per cluster.
    assert clusters[0].tolist() == [(2, 2, 3, True), (5, 5, 2, True)]
    assert clusters[2].tolist() == [(0, 2, 3, False), (1, (1 << 32) | 2, 2, False), (6, (1 << 32) | 8, 2, False)]
    assert stats["clusters"].counters == {"clusters": 4, "duplicates": 5, "largest_cluster": 3}
    # The planted pairs (Jaccard 0.85 to 1) share several bands, in several partitions; all pass
    # the verification; only the star edges of buckets are written.
    assert sum(s.counters["rejected_pairs"] for s in stats["pairs"]) == 0
    assert all(1 <= s.counters["candidate_pairs"] <= 5 for s in stats["pairs"])

    # Accounting: every document is either out or dropped, in every phase.
    for phase in ("signatures", "remove"):
        for shard_stats, docs in zip(stats[phase], shards):
            assert shard_stats.docs_in == len(docs)
            shard_stats.check()
    assert [s.docs_out for s in stats["signatures"]] == [len(d) for d in shards]
    assert sum(s.docs_out for s in stats["remove"]) == sum(map(len, shards)) - 5
    assert sum(s.dropped["near_duplicate"] for s in stats["remove"]) == 5
    assert sum(s.counters["clusters_kept"] for s in stats["remove"]) == 4
    # Columns pass through; the two cluster columns are added.
    assert pq.read_schema(tmp_path / "docs" / "0.parquet").names == [*pq.read_schema(paths[0]).names,
                                                                     "cluster_id", "cluster_size"]
    assert kept[1][0] == {**shards[1][1], "cluster_id": None, "cluster_size": None}
    assert kept[1][1] == {**shards[1][2], "cluster_id": "1:2", "cluster_size": 2}


def test_partitions_verification_and_reruns_do_not_change_results(corpus, tmp_path):
    paths, _ = corpus
    reference = tmp_path / "p1"
    run_near_dedup(paths, reference, partitions=1)
    expected = outputs(reference)
    for name, kwargs in [("p5", dict(partitions=5)), ("p1-again", dict(partitions=1)),
                         ("p3-unverified", dict(partitions=3, verify=False)),
                         ("p2-verified-0.8", dict(partitions=2, threshold=0.8))]:
        stats = run_near_dedup(paths, tmp_path / name, partitions=kwargs.pop("partitions"), **kwargs)
        kept, dropped, clusters = outputs(tmp_path / name)
        assert kept == expected[0] and dropped == expected[1]
        assert all(np.array_equal(a, b) for a, b in zip(clusters, expected[2]))
        for s in range(3):  # cluster files are byte for byte the same
            name_s = f"shard-{s:05d}.npy"
            assert (tmp_path / name / "clusters" / name_s).read_bytes() == \
                (reference / "clusters" / name_s).read_bytes()
    # Partitions split the band keys without overlap.
    p5 = run_near_dedup(paths, tmp_path / "p5b", partitions=5, audit=False)
    p1 = run_near_dedup(paths, tmp_path / "p1b", partitions=1, audit=False)
    assert sum(s.counters["band_keys"] for s in p5["pairs"]) == p1["pairs"][0].counters["band_keys"]
    assert not (tmp_path / "p5b" / "dropped").exists()


def test_verification_threshold(corpus, tmp_path):
    """Verification drops candidate pairs estimated below the threshold: none pass above 1."""
    paths, _ = corpus
    unverified = run_near_dedup(paths, tmp_path / "off", partitions=2, verify=False)
    strict = run_near_dedup(paths, tmp_path / "strict", partitions=2, threshold=1.01)
    assert [s.counters["rejected_pairs"] for s in strict["pairs"]] == [
        s.counters["candidate_pairs"] for s in unverified["pairs"]]
    assert strict["clusters"].counters["clusters"] == 0
    assert sum(s.docs_out for s in strict["remove"]) == sum(s.docs_in for s in strict["remove"])


def test_connected_components_join_chains_and_keep_the_first():
    """A~B and B~C make one cluster even without A~C; the lowest (shard, row) is kept."""
    node = lambda shard, row: (shard << 32) | row  # noqa: E731
    edges = np.array([[node(1, 4), node(2, 0)], [node(0, 7), node(2, 0)], [node(3, 1), node(3, 2)],
                      [node(2, 0), node(1, 4)]])
    nodes, root = nd.connected_components(edges)
    assert nodes.tolist() == sorted({node(1, 4), node(2, 0), node(0, 7), node(3, 1), node(3, 2)})
    assert nodes[root].tolist() == [node(0, 7)] * 3 + [node(3, 1)] * 2


def test_mismatched_inputs_are_refused(corpus, tmp_path):
    paths, _ = corpus
    sig = [str(tmp_path / f"{s}.npy") for s in range(2)]
    nd.minhash_signatures(paths[0], sig[0], shard_index=0)
    nd.minhash_signatures(paths[1], sig[1], shard_index=0)
    with pytest.raises(ValueError, match="shard order"):
        nd.find_candidate_pairs(sig, str(tmp_path / "pairs.npy"), partition=0, partitions=1)
    with pytest.raises(ValueError, match="exceeds num_perm"):
        nd.minhash_signatures(paths[0], sig[0], shard_index=0, num_perm=64, bands=14, rows=8)
