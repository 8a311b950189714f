"""Seekable read-only streams over things that are not files (readers such as pyelftools and
zipfile want a stream with seek/tell)."""

from __future__ import annotations

import io


class SeekableReader(io.RawIOBase):
    """Position bookkeeping for a read-only stream of a known size; subclasses read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos
