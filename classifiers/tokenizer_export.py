"""Export the SentencePiece tokenizer (classifiers.tokenizer) as a Hugging Face tokenizer directory.

`export_hf_tokenizer(model, out)` writes `out/` with

- `tokenizer.model`: the SentencePiece model, byte for byte;
- `tokenizer.json`: the same tokenizer for the `tokenizers` library (BPE with byte fallback), built
  here from the model's pieces and scores, without `tokenizers` or `transformers` installed;
- `tokenizer_config.json` and `special_tokens_map.json`.

`transformers.AutoTokenizer.from_pretrained(out)` (tested with transformers 5.24.0, tokenizers 0.23.3)
then gives exactly SentencePiece's ids: `tok(text, add_special_tokens=False).input_ids ==
sp.encode(text)`, `tok(text).input_ids == [bos] + sp.encode(text)` (BOS, no EOS: LLaMA's
convention), and `tok.decode(ids, skip_special_tokens=True) == sp.decode(ids)`.

How SentencePiece's encoding is reproduced:

- Dummy prefix: SentencePiece puts one "▁" before every non-empty input, also one that already
  starts with a space (" a" is "▁▁a"). The normalizer is `Prepend("▁")` then `Replace(" ", "▁")`
  (`Prepend` leaves the empty string empty, as SentencePiece does). A `Metaspace` pre-tokenizer, which
  transformers' `LlamaTokenizer` uses, adds no prefix to text that already starts with "▁" or a space,
  so it drops a space there.
- No pre-tokenizer: SentencePiece's BPE merges over the whole normalized text, so the whole text is
  one BPE word. Newlines, tabs and runs of spaces are kept (identity normalization,
  remove_extra_whitespaces=False).
- Merges: SentencePiece repeatedly merges the adjacent pair whose concatenation is the piece with
  the highest score, the leftmost on a tie. Every split of every normal piece into two normal pieces
  is a merge, ranked by that piece's score (the splits of one piece by shorter left part). Control,
  unknown and byte pieces never take part in merges. (`tokenizers` ranks the splits of one piece
  apart where SentencePiece takes the leftmost, which could differ only where two splits of one
  piece overlap, as "ab|a" and "a|ba" in "ab a ba"; no sample text does.)
- Byte fallback: a character that is no piece becomes its UTF-8 bytes as `<0xNN>` pieces, never unk.
- Special tokens are not parsed out of text: SentencePiece encodes a literal "<s>" in text as
  characters, not as BOS. So tokenizer.json has no `added_tokens` (the `tokenizers` library would
  match them in any text, and has no setting in the file to stop it): `<unk>`, `<s>` and `</s>`
  are pieces of its vocabulary, BOS is added by the post-processor's template, and a bare
  `tokenizers.Tokenizer` decodes a BOS or EOS id to its piece's text (SentencePiece to nothing).
  transformers gets them as special tokens from tokenizer_config.json (`added_tokens_decoder`,
  with `split_special_tokens: true`), so `decode(..., skip_special_tokens=True)` drops them.
- Padding: LLaMA has no pad token; the export names `<unk>` as one (pad id 0), so that batched
  padding works. Not `</s>`: collators that mask padding out of the labels (`labels[input_ids ==
  pad_token_id] = -100`) would then never teach the model to end a text. Byte fallback means no
  text encodes to `<unk>`, so padding is never confused with text.
- Decoding: "▁" to space, byte pieces to bytes, and one leading space (the dummy prefix) stripped.
  `clean_up_tokenization_spaces` is off, which would otherwise delete spaces before punctuation.

transformers 5.x's `LlamaTokenizer` (the same class as `LlamaTokenizerFast`) also loads the
directory, taking vocab and merges from tokenizer.json but building its own Metaspace pre-tokenizer:
its ids are SentencePiece's except for text that starts with a space or "▁", where it loses one
space. Use AutoTokenizer (or `PreTrainedTokenizerFast`) for SentencePiece's ids.

Only models with LLaMA's settings are accepted (BPE, byte fallback, identity normalization,
remove_extra_whitespaces off, unk/bos/eos present, no user-defined or unused pieces); anything else
is a ValueError naming the setting.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import sentencepiece as spm

from stages.documents import atomic_dir

SPIECE_UNDERLINE = "▁"
HF_FILES = ("special_tokens_map.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json")
# tokenizer_config.json names the generic tokenizers-backed class: transformers 5.x loads tokenizer.json
# as it is (`TokenizersBackend`, which `PreTrainedTokenizerFast` names; 4.x has the class too). Naming
# `LlamaTokenizer` would make AutoTokenizer rebuild the pipeline with a Metaspace pre-tokenizer.
TOKENIZER_CLASS = "PreTrainedTokenizerFast"

# sentencepiece_model.proto: field numbers and proto2 defaults of the settings checked here.
_MODEL_PIECES, _MODEL_TRAINER_SPEC, _MODEL_NORMALIZER_SPEC, _MODEL_DENORMALIZER_SPEC = 1, 2, 3, 5
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6  # SentencePiece.Type; USER_DEFINED = 4, UNUSED = 5
_TRAINER_FIELDS = {  # name: (field number, default)
    "model_type": (3, 1),  # UNIGRAM = 1, BPE = 2, WORD = 3, CHAR = 4
    "treat_whitespace_as_suffix": (24, 0),
    "byte_fallback": (35, 0),
    "unk_id": (40, 0),
    "bos_id": (41, 1),
    "eos_id": (42, 2),
    "pad_id": (43, -1),
}
_NORMALIZER_FIELDS = {
    "name": (1, b""),
    "precompiled_charsmap": (2, b""),
    "add_dummy_prefix": (3, 1),
    "remove_extra_whitespaces": (4, 1),
    "escape_whitespaces": (5, 1),
}
_BPE = 2


def export_hf_tokenizer(model_path: str | Path, output_dir: str | Path) -> Path:
    """Write a Hugging Face tokenizer directory for the SentencePiece model at `model_path`.

    The directory appears complete or not at all (written beside it, then renamed into place) and
    is the same bytes for the same model. An existing `output_dir` is replaced, but only if it holds
    nothing except a previous export's files.
    """
    model_bytes = Path(model_path).read_bytes()
    files = hf_tokenizer_files(model_bytes)
    output_dir = Path(output_dir)
    if output_dir.is_symlink() or output_dir.exists():
        if not output_dir.is_dir() or output_dir.is_symlink():
            raise FileExistsError(f"{output_dir} exists and is not a directory")
        others = sorted(p.name for p in output_dir.iterdir() if p.name not in HF_FILES)
        if others:
            raise FileExistsError(
                f"{output_dir} holds files other than a tokenizer export ({', '.join(others[:5])}); "
                "export to an empty or new directory"
            )
    with atomic_dir(output_dir) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    return output_dir


def hf_tokenizer_files(model_bytes: bytes) -> dict[str, bytes]:
    """The export's files, name to content, for a serialized SentencePiece model."""
    model = read_model(model_bytes)
    _check_supported(model)
    spm.SentencePieceProcessor(model_proto=model_bytes)  # SentencePiece's own checks
    pieces, trainer = model["pieces"], model["trainer"]
    add_dummy_prefix = bool(model["normalizer"]["add_dummy_prefix"])
    bos_id = trainer["bos_id"]
    unk, bos, eos = (pieces[trainer[key]][0] for key in ("unk_id", "bos_id", "eos_id"))
    pad = pieces[trainer["pad_id"]][0] if trainer["pad_id"] >= 0 else unk
    special = [(i, piece) for i, (piece, _, kind) in enumerate(pieces) if kind in (_UNKNOWN, _CONTROL)]
    token_flags = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}

    normalizers = [{"type": "Replace", "pattern": {"String": " "}, "content": SPIECE_UNDERLINE}]
    decoders = [
        {"type": "Replace", "pattern": {"String": SPIECE_UNDERLINE}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
    ]
    if add_dummy_prefix:
        normalizers.insert(0, {"type": "Prepend", "prepend": SPIECE_UNDERLINE})
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": bos, "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
        },
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": unk,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": {piece: i for i, (piece, _, _) in enumerate(pieces)},
            "merges": [list(pair) for pair in bpe_merges(pieces)],
        },
    }
    config = {
        "tokenizer_class": TOKENIZER_CLASS,
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": unk,
        "pad_token": pad,
        "added_tokens_decoder": {str(i): {"content": piece, **token_flags} for i, piece in special},
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": True,
        "legacy": True,
        "sp_model_kwargs": {},
    }
    flags = {key: token_flags[key] for key in ("lstrip", "normalized", "rstrip", "single_word")}
    named = {"bos_token": bos, "eos_token": eos, "unk_token": unk, "pad_token": pad}
    special_tokens_map = {key: {"content": piece, **flags} for key, piece in named.items() if piece is not None}
    return {
        "special_tokens_map.json": _json_bytes(special_tokens_map),
        "tokenizer.json": _json_bytes(tokenizer),
        "tokenizer.model": model_bytes,
        "tokenizer_config.json": _json_bytes(config),
    }


def bpe_merges(pieces: list[tuple[str, float, int]]) -> list[tuple[str, str]]:
    """SentencePiece BPE's merge order as a `tokenizers` merges list.

    SentencePiece merges the adjacent pair that makes the highest-scoring normal piece (leftmost
    first on a tie); `tokenizers` merges the pair with the lowest rank, so every split of a normal
    piece into two normal pieces is ranked by the piece's score.
    """
    normal = {piece: (score, i) for i, (piece, score, kind) in enumerate(pieces) if kind == _NORMAL}
    ranked = []
    for piece, (score, piece_id) in normal.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in normal and right in normal:
                ranked.append((-score, piece_id, cut, left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def read_model(model_bytes: bytes) -> dict:
    """The pieces (piece, score, type) and the trainer and normalizer settings this export depends
    on, read from the serialized model proto (protobuf wire format: neither protobuf nor
    transformers is needed)."""
    model = _fields(model_bytes)
    pieces = []
    for raw in model.get(_MODEL_PIECES, []):
        fields = _fields(raw)
        piece = fields.get(1, [b""])[-1].decode("utf-8")
        score = struct.unpack("<f", struct.pack("<I", fields.get(2, [0])[-1]))[0]
        pieces.append((piece, score, fields.get(3, [_NORMAL])[-1]))
    specs: dict = {"pieces": pieces}
    for key, number, names in (
        ("trainer", _MODEL_TRAINER_SPEC, _TRAINER_FIELDS),
        ("normalizer", _MODEL_NORMALIZER_SPEC, _NORMALIZER_FIELDS),
        ("denormalizer", _MODEL_DENORMALIZER_SPEC, _NORMALIZER_FIELDS),
    ):
        raw = model.get(number, [])
        values = _fields(raw[-1]) if raw else {}
        specs[key] = {name: values.get(field, [default])[-1] for name, (field, default) in names.items()}
    for key in ("normalizer", "denormalizer"):
        specs[key]["name"] = specs[key]["name"].decode("utf-8")
    for key in ("unk_id", "bos_id", "eos_id", "pad_id"):  # int32: negative values take 10 bytes
        value = specs["trainer"][key]
        specs["trainer"][key] = value - (1 << 64) if value >= 1 << 63 else value
    return specs


def _check_supported(model: dict) -> None:
    trainer, normalizer, denormalizer = model["trainer"], model["normalizer"], model["denormalizer"]
    problems = []
    if trainer["model_type"] != _BPE:
        problems.append(f"model_type is {trainer['model_type']}, not BPE ({_BPE})")
    if not trainer["byte_fallback"]:
        problems.append("byte_fallback is off")
    if trainer["treat_whitespace_as_suffix"]:
        problems.append("treat_whitespace_as_suffix is on")
    if normalizer["precompiled_charsmap"] or normalizer["name"] not in ("identity", ""):
        problems.append(f"normalization rule is {normalizer['name']!r}, not identity")
    if normalizer["remove_extra_whitespaces"]:
        problems.append("remove_extra_whitespaces is on")
    if not normalizer["escape_whitespaces"]:
        problems.append("escape_whitespaces is off")
    if denormalizer["precompiled_charsmap"]:
        problems.append("it has denormalization rules")
    kinds = [kind for _, _, kind in model["pieces"]]
    expected = {"unk_id": (_UNKNOWN, "an unknown"), "bos_id": (_CONTROL, "a control"),
                "eos_id": (_CONTROL, "a control"), "pad_id": (_CONTROL, "a control")}
    for key, (kind, name) in expected.items():
        token_id = trainer[key]
        if key == "pad_id" and token_id < 0:
            continue  # LLaMA has no padding id
        if not 0 <= token_id < len(kinds) or kinds[token_id] != kind:
            problems.append(f"{key} {token_id} is not {name} piece")
    odd = sorted({kind for kind in kinds if kind not in (_NORMAL, _UNKNOWN, _CONTROL, _BYTE)})
    if odd:
        problems.append(f"it has user-defined or unused pieces (types {odd})")
    if problems:
        raise ValueError(
            "export_hf_tokenizer supports SentencePiece models trained with LLaMA's settings "
            f"(classifiers.tokenizer.LLAMA_TRAINER_OPTIONS); this one differs: {'; '.join(problems)}"
        )


def _fields(data: bytes) -> dict[int, list]:
    """Field number to values (ints for varints and fixed, bytes for length-delimited) of one
    protobuf message."""
    fields: dict[int, list] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", data, pos)[0], pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = bytes(data[pos : pos + size]), pos + size
        elif wire == 5:
            value, pos = struct.unpack_from("<I", data, pos)[0], pos + 4
        else:
            raise ValueError(f"not a SentencePiece model: protobuf wire type {wire}")
        if pos > len(data):
            raise ValueError("not a SentencePiece model: truncated protobuf")
        fields.setdefault(number, []).append(value)
    return fields


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("not a SentencePiece model: bad protobuf varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _json_bytes(value) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
