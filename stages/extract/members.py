"""A gzip member's decompressed bytes as a stream, for warcio to read as it reads a plain file: the
member's end and its damage known exactly, the last bytes held to seek back in (reading a record
again from its start, scanning for the next record after damage), so that a member holding several
records (a whole-file gzip) is read record after record, streamed."""

from __future__ import annotations

import zlib
from collections import deque
from typing import BinaryIO

BLOCK_BYTES = 1 << 14  # warcio reads 16 KiB blocks; gzip members are often smaller


def read_fully(stream: BinaryIO, size: int) -> bytes:
    """`size` bytes of `stream`, fewer only at its end."""
    parts, left = [], size
    while left > 0 and (part := stream.read(left)):
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


class GzipMember:
    """The decompressed bytes of the gzip member at `start`, seekable back over the last `history`
    bytes read. Once read to its end, `end` is where the member ends in the file, or `damage` says
    why it stopped short. Memory: `history` bytes and a block."""

    def __init__(self, stream: BinaryIO, start: int, history: int = 0):
        stream.seek(start)
        self._stream = stream
        self._start = start
        self._history = history
        self._read = 0  # compressed bytes read from the file
        self._inflate = zlib.decompressobj(31)
        # The bytes held: (position, bytes, where their compressed bytes start in the file)
        self._blocks: deque[tuple[int, bytes, int]] = deque()
        self._held = 0
        self._last = (0, b"")  # the last block: (position, bytes)
        self._out = 0  # the position after the last byte decompressed
        self._pos = 0
        self.end: int | None = None
        self.damage: str | None = None

    def read(self, size: int = BLOCK_BYTES) -> bytes:
        """Up to `size` bytes; fewer before the end, as a raw stream gives (`read_fully`)."""
        position = self._pos
        if position >= self._out and not self._inflate_block(size if size > BLOCK_BYTES else BLOCK_BYTES):
            return b""
        start, block = self._last
        if start <= position:  # all in the last block: the usual read
            data = block[position - start : position - start + size]
        else:
            data = b"".join(self._held_between(position, position + size))
        self._pos = position + len(data)
        return data

    def read_to_end(self) -> None:
        while self.read():
            pass

    def tell(self) -> int:
        return self._pos

    def seek(self, position: int) -> int:
        if position < self.oldest():
            raise ValueError(f"position {position} is no longer held")
        self._pos = position
        return position

    def ends_before(self, position: int) -> bool:
        """Whether the member has ended, before `position`."""
        return position >= self._out and (self.end is not None or self.damage is not None)

    def oldest(self) -> int:
        """The first position still held."""
        return self._blocks[0][0] if self._blocks else self._out

    def file_offset(self, position: int) -> int:
        """Where in the file the compressed bytes of `position` (a position held, or the next to be
        decompressed) are: exact at the member's start and end, in proportion within a decompressed
        block elsewhere (deflate gives no finer map)."""
        compressed_end = self._consumed()
        for start, block, compressed_start in reversed(self._blocks):
            if start <= position < start + len(block):
                share = (position - start) / len(block)
                return compressed_start + int(share * (compressed_end - compressed_start))
            if start + len(block) <= position:
                break
            compressed_end = compressed_start
        return self._consumed()

    def _consumed(self) -> int:
        """Where in the file the compressed bytes read so far end."""
        if self.end is not None:
            return self.end
        return self._start + self._read - len(self._inflate.unconsumed_tail)

    def _inflate_block(self, size: int) -> bool:
        compressed_start = self._start + self._read - len(self._inflate.unconsumed_tail)
        out = b""
        while not out and self.end is None and self.damage is None:
            data = self._inflate.unconsumed_tail
            if not data:
                data = self._stream.read(BLOCK_BYTES)
                self._read += len(data)
            if not data:
                self.damage = "corrupt_truncated"
                break
            try:
                out = self._inflate.decompress(data, size)
            except zlib.error:
                self.damage = "corrupt_record"
                break
            if self._inflate.eof:
                self.end = self._start + self._read - len(self._inflate.unused_data)
        if not out:
            return False
        self._last = (self._out, out)
        self._blocks.append((self._out, out, compressed_start))
        self._out += len(out)
        self._held += len(out)
        if self._held > self._history:
            self._forget_passed()
        return True

    def _forget_passed(self) -> None:
        """Drop the oldest blocks beyond `history`, but none not yet read past."""
        while self._held - len(self._blocks[0][1]) >= self._history and self._passed(self._blocks[0]):
            self._held -= len(self._blocks.popleft()[1])

    def _passed(self, block: tuple[int, bytes, int]) -> bool:
        return block[0] + len(block[1]) <= self._pos

    def _held_between(self, start: int, end: int) -> list[bytes]:
        parts = []
        for position, block, _ in reversed(self._blocks):
            if position + len(block) <= start:
                break
            if position < end:
                parts.append(block[max(start - position, 0) : end - position])
        return parts[::-1]
