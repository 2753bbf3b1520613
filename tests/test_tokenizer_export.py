"""Hugging Face export of the SentencePiece tokenizer: transformers must give SentencePiece's ids.

A small real model is trained on real sample text (English and Bulgarian Wikipedia, Common Crawl
pages in Chinese, Russian, German, Dutch and Japanese) and this repository's own code, exported, and
loaded with transformers 5.x (a test-only dependency).
"""

import json
import os
import shutil

import pytest
import sentencepiece as spm

from classifiers.tokenizer import BOS_ID, EOS_ID, UNK_ID, train_sentencepiece
from classifiers.tokenizer_export import HF_FILES, export_hf_tokenizer, read_model
from stages.documents import read_documents
from stages.extract import extract_warc
from stages.tokenizer import sentencepiece_lines
from stages.wikipedia import extract_wikipedia
from tests.support import ROOT, SAMPLES

WIKIPEDIA = ["bgwiki-latest-pages-articles-shortened.xml.bz2", "enwiki-table-markup.xml.bz2"]
WARCS = ["cc-main-2020-34-excerpt", "clueweb09-ja-quirk"]
CODE = ["Makefile", "classifiers/tokenizer.py", "stages/documents.py"]
# Never in the training text, or too rare for the character coverage: byte fallback.
UNSEEN = ["🦙 emoji 😀👍🏽", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math 𝑥²", "ꦧꦱꦗꦮ Javanese", "\x00\x07 control", "ᚠᛇᚻ runes"]
EDGE_CASES = [
    "", " ", "  ", "\n", "\t", " \n", "a", " a", "  a", "a ", "a  b", "a\n b", "a\n\n\nb", "\tindented\n\t\tmore",
    "    four spaces", " " * 40 + "x", "x" + " " * 17 + "y", "trailing   ", "line\r\nwindows\r\n",
    "12345", "3.14159 and 2024-05-01 and 1,000,000", "x1y22z333", "<s> literal special tokens </s> <unk>",
    "\u3000ideographic space", "\u00a0non-breaking", "▁literal metaspace", "e\u0301 combining", "\ufeffBOM",
    "\ud55c\uad6d\uc5b4 Korean", "مرحبا Arabic", "שלום Hebrew", "नमस्ते Devanagari",
]


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    out = tmp_path_factory.mktemp("samples")
    paths = []
    for name in WIKIPEDIA:
        paths.append(out / f"{name}.parquet")
        extract_wikipedia(str(SAMPLES / "wikipedia" / name), str(paths[-1]), str(out / f"{name}.refs.parquet"))
    for name in WARCS:
        paths.append(out / f"{name}.parquet")
        extract_warc(str(SAMPLES / "warc" / f"{name}.warc.gz"), str(paths[-1]))
    docs = [doc["text"] for path in paths for doc in read_documents(str(path), columns=["text"])]
    code = [(ROOT / name).read_text(encoding="utf-8") for name in CODE]
    joined = "".join(docs)
    for script, (low, high) in {"Cyrillic": (0x400, 0x4FF), "CJK": (0x4E00, 0x9FFF), "kana": (0x3040, 0x30FF)}.items():
        assert any(low <= ord(c) <= high for c in joined), f"the samples lost their {script} text"
    assert "\t" in code[0] and "\n    " in code[1]
    return {"docs": docs, "code": code}


@pytest.fixture(scope="module")
def model(texts, tmp_path_factory):
    path = tmp_path_factory.mktemp("spm") / "tokenizer.model"
    lines = [line for text in texts["docs"] + texts["code"] for line in sentencepiece_lines(text)]
    train_sentencepiece(lines, path, vocab_size=2000, character_coverage=0.995, num_threads=1, seed=0)
    return path


@pytest.fixture(scope="module")
def sp(model):
    return spm.SentencePieceProcessor(model_file=str(model))


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    return export_hf_tokenizer(model, tmp_path_factory.mktemp("hf") / "tokenizer")


@pytest.fixture(scope="module")
def all_texts(texts):
    # Whole documents and parts of them that start and end mid-line, after spaces or newlines.
    cuts = [doc[i : i + 300] for doc in texts["docs"][:40] for i in (1, len(doc) // 2, max(0, len(doc) - 200))]
    return texts["docs"] + texts["code"] + cuts + UNSEEN + EDGE_CASES


def mismatches(encode, sp, texts, bos=False):
    return [text for text in texts if encode(text) != [BOS_ID] * bos + sp.encode(text)]


def test_export_writes_hf_files_deterministically(model, exported, tmp_path):
    assert sorted(os.listdir(exported)) == sorted(HF_FILES)
    assert (exported / "tokenizer.model").read_bytes() == model.read_bytes()
    again = export_hf_tokenizer(str(model), tmp_path / "again")
    for name in HF_FILES:
        assert (again / name).read_bytes() == (exported / name).read_bytes(), name
    config = json.loads((exported / "tokenizer_config.json").read_text())
    assert config["add_bos_token"] is True and config["add_eos_token"] is False
    assert (config["bos_token"], config["eos_token"], config["unk_token"], config["pad_token"]) == (
        "<s>", "</s>", "<unk>", "<unk>")
    assert json.loads((exported / "tokenizer.json").read_text())["model"]["vocab"]["<s>"] == BOS_ID


def test_export_replaces_an_old_export_atomically_and_spares_other_directories(model, tmp_path):
    out = tmp_path / "hf"
    export_hf_tokenizer(model, out)
    (out / "tokenizer.json").write_text("stale")
    export_hf_tokenizer(model, out)
    assert json.loads((out / "tokenizer.json").read_text())["model"]["type"] == "BPE"
    assert sorted(os.listdir(tmp_path)) == ["hf"]  # no temporary or stale directory left beside it

    weights = tmp_path / "checkpoint"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(FileExistsError, match="model.safetensors"):
        export_hf_tokenizer(model, weights)
    assert os.listdir(weights) == ["model.safetensors"]


def test_auto_tokenizer_gives_sentencepiece_ids(exported, sp, all_texts):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = AutoTokenizer.from_pretrained(exported)
    assert isinstance(tok, PreTrainedTokenizerFast) and tok.is_fast
    assert (tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.pad_token_id) == (BOS_ID, EOS_ID, UNK_ID, UNK_ID)
    assert len(tok) == sp.get_piece_size()
    assert mismatches(lambda t: tok(t, add_special_tokens=False).input_ids, sp, all_texts) == []
    # BOS and no EOS, LLaMA's convention; a literal "<s>" in text is text, as in SentencePiece.
    assert mismatches(lambda t: tok(t).input_ids, sp, all_texts, bos=True) == []
    batch = tok(all_texts[:20]).input_ids
    assert batch == [[BOS_ID] + ids for ids in sp.encode(all_texts[:20])]
    assert tok("").input_ids == [BOS_ID] and tok("", add_special_tokens=False).input_ids == []


def test_model_config_beside_the_tokenizer_does_not_change_the_class(exported, sp, all_texts, tmp_path):
    from transformers import AutoTokenizer

    model_dir = shutil.copytree(exported, tmp_path / "model")
    (model_dir / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": sp.get_piece_size()}))
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert mismatches(lambda t: tok(t).input_ids, sp, all_texts, bos=True) == []


def test_whitespace_digits_and_dummy_prefix(exported, sp):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(exported)
    for text in EDGE_CASES:
        assert tok(text, add_special_tokens=False).input_ids == sp.encode(text), repr(text)
    # One dummy "▁" before the text even when it starts with a space; spaces and tabs kept.
    assert "".join(tok.tokenize(" x")) == "▁▁x"
    assert "".join(tok.tokenize("a  b\tc")).startswith("▁a▁▁b")
    assert tok.tokenize("12345", add_special_tokens=False)[-5:] == ["1", "2", "3", "4", "5"]
    assert BOS_ID not in tok("<s>", add_special_tokens=False).input_ids


def test_unseen_characters_fall_back_to_bytes_not_unk(exported, sp, texts):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(exported)
    vocab = tok.get_vocab()
    rare = sorted({c for doc in texts["docs"] for c in doc if f"▁{c}" not in vocab and c not in vocab})
    assert len(rare) > 10, "the character coverage left no sample character out of the vocabulary"
    for text in UNSEEN + ["".join(rare)]:
        ids = tok(text, add_special_tokens=False).input_ids
        assert ids == sp.encode(text)
        assert UNK_ID not in ids
        assert any(sp.is_byte(i) for i in ids), repr(text)
        assert tok.decode(ids) == text


def test_decode_round_trips_like_sentencepiece(exported, sp, all_texts):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(exported)
    for text in all_texts:
        ids = sp.encode(text)
        assert tok.decode(ids) == sp.decode(ids), repr(text[:60])
        assert tok.decode([BOS_ID] + ids + [EOS_ID], skip_special_tokens=True) == sp.decode(ids)
        if "▁" not in text:  # SentencePiece reads a literal "▁" as a space
            assert sp.decode(ids) == text
    # Every piece alone and after another, byte pieces included (a lone UTF-8 continuation byte is
    # U+FFFD in both). Alone, the byte piece <0x20> differs: SentencePiece strips the dummy-prefix
    # space only from a "▁" piece, transformers from any leading space; encoding never gives it.
    before = sp.encode("a")
    for i in range(sp.get_piece_size()):
        if not sp.is_control(i) and not sp.is_unknown(i):
            assert tok.decode(before + [i]) == sp.decode(before + [i]), sp.id_to_piece(i)
            if sp.id_to_piece(i) != "<0x20>":
                assert tok.decode([i]) == sp.decode([i]), sp.id_to_piece(i)


def test_llama_tokenizer_class_loads_it_but_drops_a_leading_space(exported, sp, all_texts):
    """transformers 5.x: LlamaTokenizer and LlamaTokenizerFast are one tokenizers-backed class that
    takes vocab and merges from tokenizer.json but builds its own Metaspace pre-tokenizer, which adds
    no dummy prefix to text that already starts with a space (or "▁")."""
    from transformers import LlamaTokenizer, LlamaTokenizerFast

    assert LlamaTokenizer is LlamaTokenizerFast
    tok = LlamaTokenizer.from_pretrained(exported)
    plain = [text for text in all_texts if not text.startswith((" ", "▁"))]
    assert mismatches(lambda t: tok(t).input_ids, sp, plain, bos=True) == []
    for text in [" a", "  hello  world", " \n"]:
        assert tok(text, add_special_tokens=False).input_ids == sp.encode(text[1:]) != sp.encode(text)
    for text in plain:
        ids = sp.encode(text)
        assert tok.decode(ids) == sp.decode(ids)


def test_tokenizers_library_reads_tokenizer_json(exported, sp, all_texts):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(exported / "tokenizer.json"))
    plain = [text for text in all_texts if "<s>" not in text and "</s>" not in text and "<unk>" not in text]
    assert mismatches(lambda t: tok.encode(t).ids, sp, plain, bos=True) == []


def test_model_settings_are_read_from_the_proto(model):
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto.FromString(model.read_bytes())
    read = read_model(model.read_bytes())
    assert read["pieces"] == [(p.piece, p.score, p.type) for p in proto.pieces]
    assert read["trainer"] == {key: getattr(proto.trainer_spec, key) for key in read["trainer"]}
    assert (read["trainer"]["bos_id"], read["trainer"]["pad_id"]) == (BOS_ID, -1)
    assert read["normalizer"] == {key: getattr(proto.normalizer_spec, key) for key in read["normalizer"]}
    assert read["denormalizer"] == {key: getattr(proto.denormalizer_spec, key) for key in read["denormalizer"]}


@pytest.mark.parametrize("change, message", [
    (lambda p: setattr(p.trainer_spec, "model_type", 1), "not BPE"),
    (lambda p: setattr(p.trainer_spec, "byte_fallback", False), "byte_fallback is off"),
    (lambda p: setattr(p.normalizer_spec, "remove_extra_whitespaces", True), "remove_extra_whitespaces is on"),
    (lambda p: setattr(p.normalizer_spec, "name", "nmt_nfkc"), "not identity"),
    (lambda p: setattr(p.pieces[-1], "type", 4), "user-defined"),
    (lambda p: setattr(p.trainer_spec, "bos_id", -1), "bos_id -1 is not a control piece"),
])
def test_models_without_llama_settings_are_refused(model, tmp_path, change, message):
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto.FromString(model.read_bytes())
    change(proto)
    other = tmp_path / "other.model"
    other.write_bytes(proto.SerializeToString())
    with pytest.raises(ValueError, match=message):
        export_hf_tokenizer(other, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_the_tokenizers_library_reads_special_token_strings_as_text(exported, sp, all_texts):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(exported / "tokenizer.json"))
    literal = ["<s>", "</s>", "<unk>", "a <s> b </s> c <unk> d", "<s><s></s>", "x</s>"]
    assert mismatches(lambda t: tok.encode(t, add_special_tokens=False).ids, sp, all_texts + literal) == []
    assert mismatches(lambda t: tok.encode(t).ids, sp, literal, bos=True) == []
    for text in literal:
        assert tok.decode(sp.encode(text)) == sp.decode(sp.encode(text)) == text


def test_a_padded_batch_pads_with_unk_and_masks_it(exported, sp):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(exported)
    texts = ["A short one.", "A rather longer sentence, with <s> in it, than the first.", ""]
    batch = tok(texts, padding=True, return_tensors="pt")
    longest = max(len(sp.encode(t)) + 1 for t in texts)
    assert tuple(batch.input_ids.shape) == (3, longest)
    for ids, mask, text in zip(batch.input_ids.tolist(), batch.attention_mask.tolist(), texts):
        expected = [BOS_ID] + sp.encode(text)
        assert ids == expected + [UNK_ID] * (longest - len(expected))
        assert mask == [1] * len(expected) + [0] * (longest - len(expected))
