"""Cheap checks that a model file a config names is of the kind its setting needs, from its first
bytes: a wrong path (a text file, the other model of a pair) is then an error before any work,
rather than a worker's failure once the run reaches the stage that loads it."""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HEAD_BYTES = 4096
# KenLM reads ARPA files through util::FilePiece, which decompresses these.
DECOMPRESSORS: dict[bytes, Callable] = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}


@dataclass(frozen=True)
class ModelFormat:
    name: str
    expected: str  # how a file of this format starts, as the error message says it
    starts_like: Callable[[bytes], bool]
    may_be_compressed: bool = False


def _is_fasttext(head: bytes) -> bool:
    return head[:4] == struct.pack("<i", 793712314)  # fastText's FASTTEXT_FILEFORMAT_MAGIC_INT32


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """A protobuf varint at `at`: (value, the position after it); (-1, at) if truncated."""
    value = shift = 0
    for position in range(at, min(len(data), at + 10)):
        value |= (data[position] & 0x7F) << shift
        shift += 7
        if data[position] < 0x80:
            return value, position + 1
    return -1, at


def _is_sentencepiece(head: bytes) -> bool:
    """A serialized ModelProto begins with its first piece: field 1 (length-delimited), a message
    whose own field 1 is the piece's UTF-8 text, followed by its score (field 2) or type (field 3)."""
    if head[:1] != b"\x0a":
        return False
    message_length, start = _varint(head, 1)
    if head[start : start + 1] != b"\x0a":
        return False
    text_length, text_start = _varint(head, start + 1)
    text_end = text_start + text_length
    if text_length < 0 or text_end > start + message_length or text_end > len(head):
        return False
    try:
        head[text_start:text_end].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return text_end == start + message_length or head[text_end : text_end + 1] in (b"\x15", b"\x18")


def _is_kenlm(head: bytes) -> bool:
    return head.startswith(b"mmap lm http://kheafield.com/code") or head.lstrip().startswith(b"\\data\\")


FASTTEXT = ModelFormat("fastText model", "a fastText .bin or .ftz starts with the magic number 793712314", _is_fasttext)
SENTENCEPIECE = ModelFormat("SentencePiece model", "a SentencePiece .model is a ModelProto, its first piece first",
                            _is_sentencepiece)
KENLM = ModelFormat("KenLM model", "a KenLM binary starts with 'mmap lm http://kheafield.com/code', "
                    "an ARPA file (plain, .gz, .bz2 or .xz) with '\\data\\'", _is_kenlm, may_be_compressed=True)


def _head(path: Path, may_be_compressed: bool) -> bytes:
    with open(path, "rb") as file:
        head = file.read(HEAD_BYTES)
    opener = next((opener for magic, opener in DECOMPRESSORS.items() if head.startswith(magic)), None)
    if not may_be_compressed or opener is None:
        return head
    with opener(path, "rb") as file:
        return file.read(HEAD_BYTES)


def _problem(path: str, model: ModelFormat) -> str | None:
    """What is wrong with `path` as a `model`, in words that name it; None if nothing is."""
    if not Path(path).exists():
        return f"{path} not found"
    if Path(path).is_dir():
        return f"{path} is a directory, not a {model.name}"
    try:
        head = _head(Path(path), model.may_be_compressed)
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:  # unreadable, or a truncated archive
        return f"{path} cannot be read as a {model.name} ({exc})"
    if not head:
        return f"{path} is empty, not a {model.name}"
    if not model.starts_like(head):
        return f"{path} is not a {model.name} ({model.expected})"
    return None


def check_model_file(path: str, model: ModelFormat, next_step: str) -> None:
    """A ValueError (a pydantic validator's error) saying what is wrong and `next_step`, if anything is."""
    problem = _problem(path, model)
    if problem:
        raise ValueError(f"{problem}; {next_step}")
