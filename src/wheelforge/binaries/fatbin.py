"""Pure-Python listing of the CUDA fatbinary embedded in an ELF file.

nvcc puts device code into the ELF section ``.nv_fatbin`` (relocatable device
code for later device linking goes to ``__nv_relfatbin``).  The section holds
one or more *blobs* back to back; each blob holds *entries* (a SASS cubin, PTX
text or LTO IR), each with a header that names its target architecture.  We
read only the ELF section headers and those small headers, never the payloads,
so listing a 100 MB library costs a few page faults, and no CUDA toolkit is
needed.

The layout below is not an official spec; it was read from binaries built by
nvcc 13.0 and checked against ``cuobjdump --list-elf/--list-ptx`` (13.5):

blob header (16 bytes, little-endian)::

    +0  u32 magic 0xBA55ED50   +4 u16 version (1)   +6 u16 header size (16)
    +8  u64 payload size (bytes of entries that follow)

entry header (64 to 120 bytes)::

    +0  u16 kind (1 PTX, 2 cubin, 8 LTO IR)   +2 u16 (0x0101)
    +4  u32 header size                       +8 u64 payload size
    +28 u32 sm number (90, 120, ...)          +40 u64 flags

flags: 0x2 debug (-G), 0x8000 payload compressed, 0x00100000 ``a`` target
(sm_120a), 0x00200000 ``f`` family target (sm_120f).  The next entry starts at
entry start + header size + payload size.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from wheelforge.host.streams import SeekableReader
from wheelforge.model.errors import AuditError

FATBIN_SECTION = ".nv_fatbin"
RELFATBIN_SECTION = "__nv_relfatbin"

BLOB_MAGIC = 0xBA55ED50
_BLOB = struct.Struct("<IHHQ")
_ENTRY = struct.Struct("<HHIQ")
_ENTRY_MIN_HEADER = 48  # must reach the flags word at +40

KIND_PTX = 1
KIND_CUBIN = 2
KIND_LTO_IR = 8
_KIND_NAMES = {KIND_PTX: "ptx", KIND_CUBIN: "sass", KIND_LTO_IR: "lto-ir"}

FLAG_DEBUG = 0x2
FLAG_COMPRESSED = 0x8000
FLAG_ARCH_SPECIFIC = 0x0010_0000  # "a" targets
FLAG_FAMILY = 0x0020_0000  # "f" targets

ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class FatbinEntry:
    """One image inside a fatbinary."""

    kind: str  # "sass", "ptx", "lto-ir" or "kind-<n>"
    sm: int  # 120 for sm_120 / sm_120a / sm_120f
    suffix: str  # "", "a" or "f"
    compressed: bool
    debug: bool
    size: int  # stored payload bytes (compressed size when compressed)
    offset: int  # file offset of the entry header (0-based)
    section: str = FATBIN_SECTION

    @property
    def arch(self) -> str:
        """The exact target: ``sm_90``, ``sm_120a``, ``sm_120f``."""
        return f"sm_{self.sm}{self.suffix}"

    @property
    def cuobjdump_arch(self) -> str:
        """The name cuobjdump prints: it drops ``f`` from family cubins (not from PTX)."""
        if self.kind == "sass" and self.suffix == "f":
            return f"sm_{self.sm}"
        return self.arch

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "arch": self.arch,
            "compressed": self.compressed,
            "debug": self.debug,
            "size": self.size,
            "offset": self.offset,
            "section": self.section,
        }


def is_elf(head: bytes) -> bool:
    return head[:4] == ELF_MAGIC


def list_entries(path: str | os.PathLike[str], *, include_relocatable: bool = False) -> list[FatbinEntry]:
    """Every fatbin entry of the ELF file at ``path``; ``[]`` for non-ELF or host-only files.

    ``include_relocatable`` also lists ``__nv_relfatbin`` (what ``cuobjdump -all`` adds);
    the loader never uses it, so audits leave it out.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            if not is_elf(fh.read(4)):
                return []
            if os.fstat(fh.fileno()).st_size == 0:
                return []
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _list(buf, str(path), include_relocatable)
    except OSError as exc:
        raise AuditError(
            "audit.unreadable", f"{path}: cannot read: {exc.strerror or exc}", "check the path and its permissions"
        ) from exc


def list_entries_from_bytes(
    data: bytes | bytearray | memoryview, name: str, *, include_relocatable: bool = False
) -> list[FatbinEntry]:
    """Like :func:`list_entries` for a file already in memory (a wheel member); ``name`` is used in errors."""
    if not is_elf(bytes(data[:4])):
        return []
    return _list(data, name, include_relocatable)


#: Data sections where a library may keep fatbinaries it registers itself: cuFFT 12 (CUDA 13.0's nvidia-cufft)
#: holds about 24,000 blobs in ``.ldata`` and only an sm_75 helper in ``.nv_fatbin``; cuobjdump lists ``.nv_fatbin``
#: alone.
DATA_SECTIONS = (".rodata", ".lrodata", ".data", ".ldata", ".data.rel.ro")


def list_data_section_entries(path: str | os.PathLike[str]) -> list[FatbinEntry]:
    """Fatbin entries of whole blobs found in the data sections of the ELF file at ``path``.

    A hit counts only when its blob header is right (magic, version 1, 16-byte header, payload inside the
    section) and every entry in it parses; anything else is skipped as a chance match.  This reads those
    sections whole, so callers ask only where ``.nv_fatbin`` does not answer.
    """
    path = Path(path)
    magic = struct.pack("<I", BLOB_MAGIC)
    entries: list[FatbinEntry] = []
    try:
        with open(path, "rb") as fh:
            if not is_elf(fh.read(4)) or os.fstat(fh.fileno()).st_size == 0:
                return []
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                for sec_name, (start, size) in _find_sections(buf, str(path), list(DATA_SECTIONS)).items():
                    end = start + size
                    pos = buf.find(magic, start, end)
                    while pos != -1:
                        nxt = pos + 4
                        if end - pos >= _BLOB.size:
                            _magic, version, header_size, payload = _BLOB.unpack_from(buf, pos)
                            if version == 1 and header_size == _BLOB.size and pos + header_size + payload <= end:
                                try:
                                    entries.extend(_parse_section(buf, str(path), sec_name, pos, header_size + payload))
                                    nxt = pos + header_size + payload
                                except AuditError:
                                    pass
                        pos = buf.find(magic, nxt, end)
    except OSError as exc:
        raise AuditError(
            "audit.unreadable", f"{path}: cannot read: {exc.strerror or exc}", "check the path and its permissions"
        ) from exc
    return entries


def _list(buf, name: str, include_relocatable: bool) -> list[FatbinEntry]:
    wanted = [FATBIN_SECTION, RELFATBIN_SECTION] if include_relocatable else [FATBIN_SECTION]
    sections = _find_sections(buf, name, wanted)
    entries: list[FatbinEntry] = []
    for sec_name in wanted:
        if sec_name in sections:
            start, size = sections[sec_name]
            entries.extend(_parse_section(buf, name, sec_name, start, size))
    return entries


_EHDR64 = struct.Struct("<16sHHIQQQIHHHHHH")  # ELF64 header: e_ident .. e_shstrndx
_SHDR64 = struct.Struct("<IIQQQQIIQQ")  # ELF64 section header: sh_name, sh_type, .., sh_offset, sh_size, ..
_SHT_NOBITS = 8


def _find_sections_fast(buf, wanted: list[str]) -> dict[str, tuple[int, int]] | None:
    """The section table read with ``struct`` for the usual case (ELF64, little-endian, plain section numbering):
    over the 72 shared objects of a test venv pyelftools took 5.2 ms a file, this 0.11 ms, which matters when a
    whole environment's libraries are listed (``invoke doctor``).  None for anything else or anything that does not add up, so that
    pyelftools decides (and names the error)."""
    if not hasattr(buf, "find") or len(buf) < _EHDR64.size or buf[4] != 2 or buf[5] != 1:
        return None
    *_, shoff, _flags, _ehsize, _phentsize, _phnum, shentsize, shnum, shstrndx = _EHDR64.unpack_from(buf, 0)
    if shentsize != _SHDR64.size or not 0 < shstrndx < shnum or shoff + shnum * shentsize > len(buf):
        return None  # SHN_UNDEF / SHN_XINDEX numbering, or a table past the end
    str_off, str_size = _SHDR64.unpack_from(buf, shoff + shstrndx * shentsize)[4:6]
    if str_off + str_size > len(buf):
        return None
    names = {n.encode(): n for n in wanted}
    found: dict[str, tuple[int, int]] = {}
    for i in range(shnum):
        sh_name, sh_type, _f, _a, sh_offset, sh_size, *_ = _SHDR64.unpack_from(buf, shoff + i * shentsize)
        end = buf.find(b"\0", str_off + sh_name, str_off + str_size) if sh_name < str_size else -1
        if end < 0:
            return None
        sec_name = names.get(bytes(buf[str_off + sh_name : end]))
        if sec_name and sh_type != _SHT_NOBITS:
            found[sec_name] = (sh_offset, sh_size)
    return found


def _find_sections(buf, name: str, wanted: list[str]) -> dict[str, tuple[int, int]]:
    """File offset and size of the wanted sections (section headers only; pyelftools where the fast path declines)."""
    found = _find_sections_fast(buf, wanted)
    if found is None:
        found = _find_sections_elftools(buf, name, wanted)
    for sec_name, (start, size) in found.items():
        if start + size > len(buf):
            raise AuditError(
                "audit.corrupt-fatbin",
                f"{name}: section {sec_name} at offset {start:#x} ends at {start + size:#x}, past the end of the file",
                "the file is truncated; rebuild or re-download it",
            )
    return found


def _find_sections_elftools(buf, name: str, wanted: list[str]) -> dict[str, tuple[int, int]]:
    stream: BinaryIO = _BufferStream(buf)
    try:
        elf = ELFFile(stream)
        found: dict[str, tuple[int, int]] = {}
        for sec in elf.iter_sections():
            if sec.name in wanted and sec["sh_type"] != "SHT_NOBITS":
                found[sec.name] = (sec["sh_offset"], sec["sh_size"])
    except (ELFError, struct.error, ValueError, KeyError) as exc:
        raise AuditError(
            "audit.corrupt-elf",
            f"{name}: unreadable ELF headers ({exc})",
            "the file is truncated or not a valid ELF object; rebuild or re-download it",
        ) from exc
    finally:
        stream.close()  # drop our view so the caller can close its mmap
    return found


def _corrupt(name: str, offset: int, what: str) -> AuditError:
    return AuditError(
        "audit.corrupt-fatbin",
        f"{name}: corrupt fatbinary at file offset {offset:#x}: {what}",
        "the file is truncated or damaged; rebuild it, and check it with `cuobjdump --list-elf`",
    )


def _parse_section(buf, name: str, sec_name: str, start: int, size: int) -> list[FatbinEntry]:
    entries: list[FatbinEntry] = []
    end = start + size
    pos = start
    while pos < end:
        # Blobs from different objects may be padded apart; padding is zeros.
        if end - pos < _BLOB.size:
            if any(bytes(buf[pos:end])):
                raise _corrupt(name, pos, f"{end - pos} trailing bytes are not a blob header")
            break
        magic, _version, header_size, payload = _BLOB.unpack_from(buf, pos)
        if magic != BLOB_MAGIC:
            if magic == 0:
                pos += 4
                continue
            raise _corrupt(name, pos, f"bad blob magic {magic:#010x} (expected {BLOB_MAGIC:#010x})")
        if header_size < _BLOB.size:
            raise _corrupt(name, pos, f"blob header size {header_size} < {_BLOB.size}")
        blob_end = pos + header_size + payload
        if blob_end > end:
            raise _corrupt(name, pos, f"blob payload of {payload} bytes runs past the end of {sec_name}")
        epos = pos + header_size
        while epos < blob_end:
            if blob_end - epos < _ENTRY_MIN_HEADER:
                raise _corrupt(name, epos, "entry header cut short by the end of its blob")
            kind, _unk, ehsize, esize = _ENTRY.unpack_from(buf, epos)
            if ehsize < _ENTRY_MIN_HEADER or epos + ehsize + esize > blob_end:
                raise _corrupt(name, epos, f"entry header size {ehsize} / payload {esize} does not fit its blob")
            (sm,) = struct.unpack_from("<I", buf, epos + 28)
            (flags,) = struct.unpack_from("<Q", buf, epos + 40)
            suffix = "a" if flags & FLAG_ARCH_SPECIFIC else "f" if flags & FLAG_FAMILY else ""
            entries.append(
                FatbinEntry(
                    kind=_KIND_NAMES.get(kind, f"kind-{kind}"),
                    sm=sm,
                    suffix=suffix,
                    compressed=bool(flags & FLAG_COMPRESSED),
                    debug=bool(flags & FLAG_DEBUG),
                    size=esize,
                    offset=epos,
                    section=sec_name,
                )
            )
            epos += ehsize + esize
        pos = blob_end
    return entries


class _BufferStream(SeekableReader):
    """A seekable read-only stream over an mmap/bytes without copying it (pyelftools wants a stream)."""

    def __init__(self, buf) -> None:
        self._buf = memoryview(buf)
        super().__init__(len(self._buf))

    def read(self, n: int = -1) -> bytes:
        stop = self.size if n is None or n < 0 else min(self.size, self.pos + n)
        out = bytes(self._buf[self.pos : stop])
        self.pos = max(self.pos, stop)
        return out

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._buf.release()
        super().close()
