"""Language ID, tokenizer training and tokenization on real extracted pages (no Ray)."""

import numpy as np
import pytest

from classifiers.langid import LanguageIdentifier, normalise_for_fasttext
from classifiers.tokenizer import BOS_ID, EOS_ID, MAX_SENTENCE_BYTES, UNK_ID, load_tokenizer
from stages.documents import read_documents
from stages.extract import extract_warc
from stages.langid import identify_languages
from stages.tokenize import MAX_PIECE_CHARS, encode_documents, encoding_pieces, read_parts, tokenize_shard
from stages.tokenizer import sampling_rates, sentencepiece_lines, text_bytes, train_tokenizer
from tests.support import LID_MODEL, SAMPLES
from trainer.indexed_dataset import IndexedDataset


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """Real pages: English academic sites and the multilingual news/blog sample."""
    out = tmp_path_factory.mktemp("extracted")
    paths = []
    for name in ["wget-2024-academic-0", "wget-2024-academic-1", "web-pages-2019-2021"]:
        path = out / f"{name}.parquet"
        extract_warc(str(SAMPLES / "warc" / f"{name}.warc.gz"), str(path))
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def english(extracted, tmp_path_factory):
    out = tmp_path_factory.mktemp("english")
    paths = []
    for path in extracted:
        target = out / path.rsplit("/", 1)[-1]
        identify_languages(path, str(target), model=str(LID_MODEL), languages=["en"], threshold=0.5)
        paths.append(str(target))
    return paths


@pytest.fixture(scope="module")
def tokenizer_model(english, tmp_path_factory):
    model = tmp_path_factory.mktemp("tokenizer") / "tokenizer.model"
    stats = train_tokenizer(english, str(model), sample_rates=[1.0] * len(english), vocab_size=1000,
                            character_coverage=0.9999, num_threads=1, seed=0)
    assert stats.docs_out == stats.docs_in > 0
    return model


def test_fasttext_input_has_no_newlines():
    assert normalise_for_fasttext(" a\nb\t\r\n c ") == "a b c"


def test_real_model_tells_languages_apart():
    identifier = LanguageIdentifier(LID_MODEL)
    predictions = identifier.predict(
        ["The committee will publish its findings next week.\nMore soon.",
         "Le comité publiera ses conclusions la semaine prochaine.",
         "Der Ausschuss wird seine Ergebnisse nächste Woche veröffentlichen."]
    )
    assert [lang for lang, _ in predictions] == ["en", "fr", "de"]
    assert all(0.5 < score <= 1.0001 for _, score in predictions)


def test_missing_model_says_where_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="lid.176"):
        LanguageIdentifier(tmp_path / "lid.176.bin")


def test_langid_keeps_configured_languages_and_counts_the_rest(extracted, tmp_path):
    out = tmp_path / "multi.parquet"
    stats = identify_languages(extracted[2], str(out), model=str(LID_MODEL), languages=["de", "fr"], threshold=0.5)
    kept = list(read_documents(out))
    assert stats.docs_out == len(kept) > 0
    assert {d["language"] for d in kept} <= {"de", "fr"}
    assert all(d["language_score"] >= 0.5 for d in kept)
    assert stats.dropped["language:en"] > 0
    assert stats.docs_in == stats.docs_out + sum(stats.dropped.values())


def test_langid_threshold_drops_uncertain_documents(extracted, tmp_path):
    strict = identify_languages(
        extracted[2], str(tmp_path / "s.parquet"), model=str(LID_MODEL), languages=["en"], threshold=0.99
    )
    loose = identify_languages(
        extracted[2], str(tmp_path / "l.parquet"), model=str(LID_MODEL), languages=["en"], threshold=0.1
    )
    assert strict.dropped["low_language_score"] > loose.dropped["low_language_score"]
    assert strict.docs_out < loose.docs_out


def test_tokenizer_splits_digits_and_falls_back_to_bytes(tokenizer_model):
    sp = load_tokenizer(tokenizer_model)
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id()) == (UNK_ID, BOS_ID, EOS_ID)
    digits = [p for p in sp.encode("In 2024 we counted 1234567 pages.", out_type=str) if any(c.isdigit() for c in p)]
    assert all(len(p.strip("▁")) == 1 for p in digits)
    assert "".join(p.strip("▁") for p in digits) == "20241234567"
    unseen = "Ἀθῆναι ❄ 漢字 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"
    ids = sp.encode(unseen)
    assert UNK_ID not in ids
    assert sp.decode(ids) == unseen


def test_tokenizer_training_is_deterministic(english, tokenizer_model, tmp_path):
    again = tmp_path / "again.model"
    train_tokenizer(english, str(again), sample_rates=[1.0] * len(english), vocab_size=1000,
                    character_coverage=0.9999, num_threads=1, seed=0)
    assert again.read_bytes() == tokenizer_model.read_bytes()


def test_tokenizer_sample_follows_the_rates_and_every_document_is_counted(english, tmp_path):
    sizes = {path: text_bytes(path) for path in english}
    rates = sampling_rates(sizes, {path: 1.0 for path in english}, sample_bytes=60_000)
    assert all(0 < rate < 1 for rate in rates.values())
    stats = train_tokenizer(english, str(tmp_path / "small.model"), sample_rates=[rates[p] for p in english],
                            vocab_size=500, character_coverage=0.9999, num_threads=1, seed=0)
    assert 0 < stats.docs_out < stats.docs_in
    assert stats.dropped["not_sampled"] == stats.docs_in - stats.docs_out
    assert 30_000 < stats.counters["sampled_chars"] < 120_000  # about 60,000 bytes of mostly ASCII text


def test_sampling_rates_split_the_sample_by_weight():
    rates = sampling_rates({"big": 10_000_000, "small": 100_000, "tiny": 1_000}, {"big": 0.8, "small": 0.1, "tiny": 0.1},
                           sample_bytes=1_000_000)
    assert rates["big"] == pytest.approx(800_000 / 10_000_000)
    assert rates["small"] == pytest.approx(1.0)  # 100,000 asked of 100,000
    assert rates["tiny"] == 1.0  # asked for more than it has: all of it


def test_tokenize_writes_one_bos_eos_sequence_per_document(english, tokenizer_model, tmp_path):
    stats = tokenize_shard(english[0], str(tokenizer_model), str(tmp_path / "tokens"), batch_docs=7, num_threads=1)
    documents = list(read_documents(english[0]))
    [part] = read_parts(tmp_path / "tokens")
    dataset = IndexedDataset(part["prefix"])
    sp = load_tokenizer(tokenizer_model)
    assert len(dataset) == stats.docs_out == len(documents) == part["documents"]
    assert dataset.dtype == np.uint16 and dataset.num_tokens == stats.tokens == part["tokens"]
    for i in (0, len(dataset) - 1):
        sequence = dataset[i].tolist()
        assert sequence[0] == BOS_ID and sequence[-1] == EOS_ID
        assert sp.decode(sequence[1:-1]) == documents[i]["text"]


def test_long_lines_are_cut_to_sentencepiece_limit_not_skipped():
    line = "word " * 20_000 + "ünïcödé " * 5_000
    pieces = list(sentencepiece_lines(f"short\n\n   \n{line}"))
    assert pieces[0] == "short"
    assert "".join(pieces[1:]) == line
    assert all(len(p.encode()) <= MAX_SENTENCE_BYTES for p in pieces)


def test_long_documents_encode_in_pieces_to_the_same_ids(english, tokenizer_model):
    """Cutting at single spaces between words (with SentencePiece's dummy prefix standing in for the
    space cut) gives exactly the ids of the whole text, at any piece size."""
    sp = load_tokenizer(tokenizer_model)
    texts = [d["text"] for path in english for d in read_documents(path)][:40]
    texts.append("no_spaces_at_all_" * 500 + " then words  double  spaced\n\tand tabs " * 50)
    for max_chars in (40, 300, 5_000):
        for text in texts:
            pieces = encoding_pieces(text, max_chars)
            assert " ".join(pieces) == text
            assert [i for ids in sp.encode(pieces) for i in ids] == sp.encode(text)
    long_text = " ".join(texts)
    assert len(encoding_pieces(long_text)) > 1 or len(long_text) <= MAX_PIECE_CHARS
    assert next(encode_documents(sp, [long_text * 3], num_threads=1)) == sp.encode(long_text * 3)


def test_a_model_rewritten_at_its_path_is_loaded_afresh(tmp_path):
    import os
    import shutil

    from classifiers.langid import load_identifier

    path = shutil.copy(LID_MODEL, tmp_path / "lid.ftz")
    first = load_identifier(str(path))
    assert load_identifier(str(path)) is first
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 10**9))
    assert load_identifier(str(path)) is not first
