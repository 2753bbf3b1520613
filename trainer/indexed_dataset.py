"""Megatron indexed datasets: a `.bin` of tokens back to back and an `.idx` that locates them.

Layout of `.idx`, little-endian without padding (megatron/core/datasets/indexed_dataset.py):

    magic b"MMIDIDX\\x00\\x00" | <Q version 1 | <B dtype code | <Q sequence count S
    | <Q document count + 1 | int32[S] lengths | int64[S] byte offsets into .bin
    | int64[D + 1] document boundaries (indices into the sequences, 0 .. S)

Every document written here is a single sequence, so the boundaries are 0, 1, .., S.
numpy only: the tokenize stage imports the writer and must not pull in torch.
"""

from __future__ import annotations

import os
import shutil
import struct
import uuid
from pathlib import Path

import numpy as np

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, sequence count, document count + 1

DTYPES = {
    1: np.dtype(np.uint8),
    2: np.dtype(np.int8),
    3: np.dtype(np.int16),
    4: np.dtype(np.int32),
    5: np.dtype(np.int64),
    6: np.dtype(np.float64),
    7: np.dtype(np.float32),
    8: np.dtype(np.uint16),
}
DTYPE_CODES = {dtype: code for code, dtype in DTYPES.items()}
COPY_CHUNK_BYTES = 16 << 20


def best_dtype(vocab_size: int) -> np.dtype:
    """The smallest token dtype Megatron uses for a vocabulary of this size."""
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


def dataset_paths(prefix: str | Path) -> tuple[Path, Path]:
    """The `.bin` and `.idx` paths of the dataset at `prefix`."""
    prefix = Path(prefix)
    return prefix.with_name(prefix.name + ".bin"), prefix.with_name(prefix.name + ".idx")


def _temporary(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.tmp-{tag}")


def _publish(tmp_bin: Path, tmp_idx: Path, bin_path: Path, idx_path: Path) -> None:
    """`.bin` first, `.idx` last: a reader needs both, so a dataset never looks finished early.
    An index left from an earlier dataset at this prefix must not pair with the new .bin."""
    idx_path.unlink(missing_ok=True)
    os.replace(tmp_bin, bin_path)
    os.replace(tmp_idx, idx_path)


def merge_datasets(prefixes: list[str | Path], prefix: str | Path) -> tuple[int, int]:
    """The finished datasets at `prefixes`, one after the other, as one dataset at `prefix` (what
    Megatron's IndexedDatasetBuilder.add_index does): their `.bin` bytes copied in order, the
    `.idx` rebuilt from theirs. One input is open at a time and only its index is read into
    memory, never its tokens. Written under temporary names like IndexedDatasetWriter's.
    Returns (documents, tokens)."""
    def each():
        return (IndexedDataset(p) for p in prefixes)

    dtypes, sequences, documents, tokens = set(), 0, 0, 0
    for dataset in each():
        dtypes.add(dataset.dtype)
        sequences += len(dataset)
        documents += len(dataset.document_indices) - 1
        tokens += dataset.num_tokens
    if len(dtypes) != 1:
        raise ValueError(f"cannot merge {len(prefixes)} datasets of dtypes {sorted(map(str, dtypes))}")
    bin_path, idx_path = dataset_paths(prefix)
    tag = uuid.uuid4().hex[:8]
    tmp_bin, tmp_idx = _temporary(bin_path, tag), _temporary(idx_path, tag)
    try:
        with open(tmp_bin, "wb") as out:
            for dataset in each():
                with open(dataset.bin_path, "rb") as source:
                    shutil.copyfileobj(source, out, COPY_CHUNK_BYTES)
        with open(tmp_idx, "wb") as idx:
            idx.write(HEADER.pack(MAGIC, VERSION, DTYPE_CODES[dtypes.pop()], sequences, documents + 1))
            for dataset in each():
                idx.write(dataset.sequence_lengths.tobytes())
            byte_offset = 0
            for dataset in each():
                idx.write((dataset.sequence_pointers + byte_offset).tobytes())
                byte_offset += dataset.bin_path.stat().st_size
            idx.write(np.zeros(1, np.int64).tobytes())
            sequence_offset = 0
            for dataset in each():
                idx.write((dataset.document_indices[1:] + sequence_offset).tobytes())
                sequence_offset += len(dataset)
        _publish(tmp_bin, tmp_idx, bin_path, idx_path)
    finally:
        tmp_bin.unlink(missing_ok=True)
        tmp_idx.unlink(missing_ok=True)
    return documents, tokens


class IndexedDatasetWriter:
    """Streams documents into `<prefix>.bin`; `finalize()` adds `<prefix>.idx`.

    Both files are written under temporary names and renamed when complete, `.bin` first and
    `.idx` last. A reader needs both, so an interrupted writer never leaves a dataset that looks
    finished. As a context manager it finalizes on success and discards everything on an exception.
    """

    def __init__(self, prefix: str | Path, dtype: np.dtype | type | str):
        self.dtype = np.dtype(dtype)
        if self.dtype not in DTYPE_CODES:
            choices = ", ".join(sorted(map(str, DTYPE_CODES)))
            raise ValueError(f"dtype {self.dtype} has no Megatron code; use one of {choices}")
        self.bin_path, self.idx_path = dataset_paths(prefix)
        self.bin_path.parent.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:8]
        self._tmp_bin, self._tmp_idx = _temporary(self.bin_path, tag), _temporary(self.idx_path, tag)
        self._bin = open(self._tmp_bin, "wb")
        self._lengths: list[int] = []
        self.num_tokens = 0
        self.bytes_written = 0  # .bin + .idx, known once finalized

    @property
    def num_documents(self) -> int:
        return len(self._lengths)

    def add_document(self, tokens: np.ndarray | list[int]) -> None:
        array = np.asarray(tokens)
        if array.ndim != 1:
            raise ValueError(f"a document must be a 1-D sequence of tokens, got shape {array.shape}")
        if array.size and self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            low, high = array.min(), array.max()
            if low < info.min or high > info.max:
                raise ValueError(f"token ids {low}..{high} do not fit in {self.dtype}")
        self._bin.write(np.ascontiguousarray(array, dtype=self.dtype))
        self._lengths.append(len(array))
        self.num_tokens += len(array)

    def finalize(self) -> None:
        self._bin.close()
        lengths = np.array(self._lengths, dtype=np.int32)
        pointers = (np.cumsum(lengths, dtype=np.int64) - lengths) * self.dtype.itemsize
        document_indices = np.arange(len(lengths) + 1, dtype=np.int64)
        with open(self._tmp_idx, "wb") as idx:
            code = DTYPE_CODES[self.dtype]
            idx.write(HEADER.pack(MAGIC, VERSION, code, len(lengths), len(document_indices)))
            idx.write(lengths.tobytes())
            idx.write(pointers.tobytes())
            idx.write(document_indices.tobytes())
        self.bytes_written = self._tmp_bin.stat().st_size + self._tmp_idx.stat().st_size
        _publish(self._tmp_bin, self._tmp_idx, self.bin_path, self.idx_path)

    def abort(self) -> None:
        self._bin.close()
        self._tmp_bin.unlink(missing_ok=True)
        self._tmp_idx.unlink(missing_ok=True)

    def __enter__(self) -> IndexedDatasetWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.finalize()
        else:
            self.abort()


class IndexedDataset:
    """Read-only, memory-mapped view of a finished indexed dataset; `dataset[i]` is sequence i."""

    def __init__(self, prefix: str | Path):
        self.bin_path, self.idx_path = dataset_paths(prefix)
        for path in (self.idx_path, self.bin_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; an indexed dataset needs both .bin and .idx")

        idx_size = self.idx_path.stat().st_size
        if idx_size < HEADER.size:
            raise ValueError(f"{self.idx_path}: {idx_size} bytes, shorter than the {HEADER.size}-byte header")
        with open(self.idx_path, "rb") as f:
            header = f.read(HEADER.size)
        magic, version, code, num_sequences, num_document_indices = HEADER.unpack(header)
        if magic != MAGIC:
            raise ValueError(
                f"{self.idx_path}: not a Megatron indexed dataset (magic {magic!r}, expected {MAGIC!r})"
            )
        if version != VERSION:
            raise ValueError(f"{self.idx_path}: unsupported version {version}, expected {VERSION}")
        if code not in DTYPES:
            raise ValueError(f"{self.idx_path}: unknown dtype code {code}")
        self.dtype = DTYPES[code]
        expected_idx_size = HEADER.size + num_sequences * (4 + 8) + num_document_indices * 8
        if idx_size != expected_idx_size:
            raise ValueError(
                f"{self.idx_path}: {idx_size} bytes, expected {expected_idx_size} for "
                f"{num_sequences} sequences and {num_document_indices - 1} documents"
            )

        index = np.memmap(self.idx_path, dtype=np.uint8, mode="r")
        offset = HEADER.size
        self.sequence_lengths = np.frombuffer(index, np.int32, num_sequences, offset)
        offset += self.sequence_lengths.nbytes
        self.sequence_pointers = np.frombuffer(index, np.int64, num_sequences, offset)
        offset += self.sequence_pointers.nbytes
        self.document_indices = np.frombuffer(index, np.int64, num_document_indices, offset)
        self.num_tokens = int(self.sequence_lengths.sum(dtype=np.int64))

        bin_size = self.bin_path.stat().st_size
        expected_bin_size = self.num_tokens * self.dtype.itemsize
        if bin_size != expected_bin_size:
            raise ValueError(
                f"{self.bin_path}: {bin_size} bytes, but the index describes {self.num_tokens} "
                f"{self.dtype} tokens ({expected_bin_size} bytes)"
            )
        # mmap refuses empty files; an empty dataset is still valid.
        if bin_size:
            self._tokens = np.memmap(self.bin_path, dtype=self.dtype, mode="r")
        else:
            self._tokens = np.empty(0, self.dtype)

    def __len__(self) -> int:
        return len(self.sequence_lengths)

    def __getitem__(self, i: int) -> np.ndarray:
        start = self.sequence_pointers[i] // self.dtype.itemsize
        return self._tokens[start : start + self.sequence_lengths[i]]
