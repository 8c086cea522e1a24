"""Read what qabot needs from a GGUF file's header, without loading the model.

llama.cpp reports every load failure to Python as the same "Failed to init server" error, so
the file is checked first: missing, not a GGUF, cut short, or an architecture llama.cpp has no
name for each get their own one-line message. Only the header is parsed here (metadata and tensor
table); `gguf.GGUFReader` would do it too, but it decodes every vocabulary entry into numpy
objects: 8.2 s for gemma-3-270m's 262,144 tokens on this machine, against ~0.2 s for this reader,
which skips arrays. The type sizes and architecture names come from llama.cpp's own `gguf`
package, so they follow llama.cpp.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SettingsError

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32  # GGUF spec: tensor data is aligned to general.alignment, 32 when absent

# GGUF metadata value types (spec order) -> struct format of a scalar; 8 = string, 9 = array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class ModelFileError(SettingsError):
    """QABOT_LLM_MODEL does not name a GGUF file llama.cpp can load."""


@dataclass(frozen=True)
class GGUFInfo:
    """The facts of a GGUF file that decide how to run it."""

    path: Path
    architecture: str
    name: str
    context_length: int  # tokens the model was trained with; 0 when the file does not say
    chat_template: str  # "" when the file carries none
    block_count: int
    kv_heads: int
    key_length: int
    value_length: int
    file_size: int
    data_end: int  # where the last tensor ends: a shorter file is incomplete

    def kv_bytes_per_token(self) -> int:
        """f16 K and V for every layer: an upper bound (sliding-window layers need less)."""
        return self.block_count * self.kv_heads * (self.key_length + self.value_length) * 2


class _Cursor:
    def __init__(self, buf: mmap.mmap) -> None:
        self.buf, self.pos = buf, 0

    def unpack(self, fmt: str) -> Any:
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        if self.pos + n > len(self.buf):
            raise struct.error("string runs past the end of the file")
        text = bytes(self.buf[self.pos : self.pos + n]).decode("utf-8", errors="replace")
        self.pos += n
        return text

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:  # vocabularies: skipped, never decoded
            item, n = self.unpack("<I"), self.unpack("<Q")
            if item == _STRING:
                for _ in range(n):
                    length = self.unpack("<Q")  # read before adding: unpack moves pos
                    self.pos += length
            elif item in _SCALARS:
                self.pos += n * struct.calcsize(_SCALARS[item])
            else:
                for _ in range(n):
                    self.value(item)
            return None
        raise struct.error(f"unknown metadata type {kind}")


def read_gguf(path: Path) -> GGUFInfo:
    """The header of the GGUF at `path`, or a ModelFileError that says what is wrong with it."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    where = f"QABOT_LLM_MODEL={path}"
    if not path.exists():
        raise ModelFileError(f"{where}: no such file; download a GGUF model (see the README) and give its path")
    if not path.is_file():
        raise ModelFileError(f"{where} is not a file; give the path of a .gguf file")
    try:
        with path.open("rb") as f:
            if f.read(4) != MAGIC:
                raise ModelFileError(f"{where} is not a GGUF file (llama.cpp runs .gguf models only)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(path, buf, GGML_QUANT_SIZES, GGMLQuantizationType)
    except PermissionError:
        raise ModelFileError(f"{where} cannot be read (permission denied)") from None
    except (struct.error, ValueError, OverflowError, IndexError):
        raise ModelFileError(f"{where} is damaged or incomplete (its header cannot be read); download it again") from None


def _parse(path: Path, buf: mmap.mmap, quant_sizes: dict[Any, tuple[int, int]], quant_type: Any) -> GGUFInfo:
    cur = _Cursor(buf)
    cur.pos = 4
    version = cur.unpack("<I")
    if version < 2:
        raise ModelFileError(f"QABOT_LLM_MODEL={path} is GGUF version {version}; llama.cpp needs version 2 or later")
    n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        meta[key] = cur.value(cur.unpack("<I"))
    ends = []
    for _ in range(n_tensors):
        cur.string()  # tensor name
        dims = [cur.unpack("<Q") for _ in range(cur.unpack("<I"))]
        ggml_type, offset = cur.unpack("<I"), cur.unpack("<Q")
        block, size = quant_sizes[quant_type(ggml_type)]
        elements = 1
        for d in dims:
            elements *= d
        ends.append(offset + elements // block * size)
    align = int(meta.get("general.alignment") or DEFAULT_ALIGNMENT)
    data_start = (cur.pos + align - 1) // align * align
    arch = str(meta.get("general.architecture") or "")
    head_count = int(meta.get(f"{arch}.attention.head_count") or 0)
    embedding = int(meta.get(f"{arch}.embedding_length") or 0)
    head_dim = embedding // head_count if head_count else 0
    return GGUFInfo(
        path=path,
        architecture=arch,
        name=str(meta.get("general.name") or path.stem),
        context_length=int(meta.get(f"{arch}.context_length") or 0),
        chat_template=str(meta.get("tokenizer.chat_template") or ""),
        block_count=int(meta.get(f"{arch}.block_count") or 0),
        kv_heads=int(meta.get(f"{arch}.attention.head_count_kv") or head_count),
        key_length=int(meta.get(f"{arch}.attention.key_length") or head_dim),
        value_length=int(meta.get(f"{arch}.attention.value_length") or head_dim),
        file_size=len(buf),
        data_end=data_start + max(ends, default=0),
    )


def known_architecture(arch: str) -> bool:
    """Whether llama.cpp's gguf package has a name for this architecture."""
    from gguf.constants import MODEL_ARCH_NAMES

    return arch in MODEL_ARCH_NAMES.values()
