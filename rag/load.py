"""Find the corpus files and decode them into text, never silently dropping one.

llama-index's `SimpleDirectoryReader` decodes with `errors="ignore"` and skips unreadable
files with a print; a product that promises nothing is lost needs each skip to carry a
reason the user sees, so the reading is done here and the result is a list of documents
plus a list of skipped files.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES
#: Appended to the content hash of formats whose reading changed, so their files are read again once:
#: Markdown used to be indexed as plain text, marks and all.
_READER_VERSIONS = {"markdown": ":markdown-it"}

# Characters kept although they are "control": line structure matters to the cleaner.
_KEEP_CONTROL = {"\n", "\t"}


@dataclass(frozen=True)
class LoadedDocument:
    """A decoded file: text plus what the loader learned about it."""

    doc_id: str  # path relative to the corpus folder, with forward slashes
    path: Path
    text: str
    content_hash: str  # sha256 of the raw bytes (+ reader version, see probe_file): the cheap "did it change" test
    format: str  # "text", "markdown" or "html"
    meta: dict[str, str] = field(default_factory=dict)  # title/date/url/... found by HTML extraction
    notes: tuple[str, ...] = ()  # e.g. "decoded as Latin-1"


@dataclass(frozen=True)
class SkippedFile:
    doc_id: str
    reason: str


@dataclass
class LoadResult:
    documents: list[LoadedDocument] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def iter_corpus_files(corpus_dir: Path) -> Iterator[tuple[str, Path]]:
    """Yield (doc_id, path) for every file below `corpus_dir`, in a stable order.

    Hidden files and folders (.git, .DS_Store) are not part of a corpus and are passed over.
    """
    root = corpus_dir
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            yield path.relative_to(root).as_posix(), path


def load_corpus(
    corpus_dir: Path, max_bytes: int, is_indexed: Callable[[str, str], bool] | None = None
) -> LoadResult:
    """Read every supported file below `corpus_dir`; the rest are listed as skipped with a reason.

    `is_indexed(doc_id, content_hash)` says whether that exact content is already indexed: such
    files are hashed but not decoded (returned with empty text), which keeps a re-sync cheap.
    """
    result = LoadResult()
    root_real = corpus_dir.resolve()
    for doc_id, path in iter_corpus_files(corpus_dir):
        outcome = load_file(doc_id, path, max_bytes, root_real, is_indexed)
        if isinstance(outcome, SkippedFile):
            result.skipped.append(outcome)
        else:
            result.documents.append(outcome)
    return result


def corpus_problem(folder: Path) -> str:
    """Why `folder` cannot be read as the corpus, or "" when it can."""
    if folder.is_dir():
        return ""
    if folder.exists():
        return f"the corpus folder {folder} is a file, not a folder; set QABOT_CORPUS_DIR to the folder of articles"
    return f"the corpus folder {folder} does not exist; create it or fix QABOT_CORPUS_DIR"


def probe_file(doc_id: str, path: Path, max_bytes: int, root_real: Path) -> tuple[bytes, str, str] | SkippedFile:
    """Read one file without decoding it: (raw bytes, format, content hash), or why it cannot be used.

    The content hash is what "did it change" compares: the bytes' sha256, plus the version of the
    reader for formats whose reading changed (so such files are read again once).
    """
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        return SkippedFile(doc_id, f"unsupported file type {suffix or '(none)'}; qabot reads .txt, .md and .html")
    if path.is_symlink():
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return SkippedFile(doc_id, "broken symbolic link")
        if not target.is_relative_to(root_real):
            return SkippedFile(doc_id, "symbolic link to a file outside the corpus folder (not followed)")
    if not path.is_file():  # a FIFO or device would block or never end
        return SkippedFile(doc_id, "not a regular file")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return SkippedFile(
                doc_id, f"file is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit (QABOT_MAX_FILE_MB)"
            )
        raw = path.read_bytes()
    except OSError as exc:
        return SkippedFile(doc_id, f"cannot read file: {exc.strerror or exc}")
    fmt = "html" if suffix in HTML_SUFFIXES else ("markdown" if suffix != ".txt" else "text")
    content_hash = hashlib.sha256(raw).hexdigest() + _READER_VERSIONS.get(fmt, "")
    return raw, fmt, content_hash


def load_file(
    doc_id: str,
    path: Path,
    max_bytes: int,
    root_real: Path,
    is_indexed: Callable[[str, str], bool] | None = None,
) -> LoadedDocument | SkippedFile:
    """Load one file, or say why it cannot be used."""
    probed = probe_file(doc_id, path, max_bytes, root_real)
    if isinstance(probed, SkippedFile):
        return probed
    raw, fmt, content_hash = probed
    if is_indexed is not None and is_indexed(doc_id, content_hash):
        return LoadedDocument(doc_id, path, "", content_hash, fmt)
    if not raw.strip():
        return SkippedFile(doc_id, "empty file")
    decoded = decode_bytes(raw)
    if isinstance(decoded, str):
        return SkippedFile(doc_id, decoded)
    text, notes = decoded
    meta: dict[str, str] = {}
    if fmt == "html":
        from .html import extract_html  # trafilatura is imported only when a corpus has HTML

        text, meta = extract_html(text)
    elif fmt == "markdown":
        from .markdown import render_markdown

        text, meta = render_markdown(normalize_text(text))
    text = normalize_text(text)
    if not text.strip():
        return SkippedFile(doc_id, "no text left after extraction")
    return LoadedDocument(doc_id, path, text, content_hash, fmt, meta, tuple(notes))


def decode_bytes(raw: bytes) -> tuple[str, list[str]] | str:
    """Decode with a BOM if present, else UTF-8, else Windows-1252/Latin-1.

    Returns (text, notes) or, for data that is not text at all, the reason to skip it.
    """
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if raw.startswith(bom):
            try:
                return raw.decode(encoding), []
            except UnicodeDecodeError:
                return f"invalid {encoding.upper()} despite its byte-order mark"
    if b"\x00" in raw[:65536]:
        return "binary file (contains NUL bytes), not text"
    try:
        text = raw.decode("utf-8")
        notes: list[str] = []
    except UnicodeDecodeError as exc:
        try:
            text = raw.decode("cp1252")
            notes = [f"not valid UTF-8 (byte {exc.start}); decoded as Windows-1252"]
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
            notes = [f"not valid UTF-8 (byte {exc.start}); decoded as Latin-1"]
    sample = text[:65536]
    controls = sum(1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in "\n\r\t\f")
    if controls > max(8, len(sample) // 100):
        return "binary file (mostly control characters), not text"
    return text, notes


def normalize_text(text: str) -> str:
    """NFC-normalise and drop invisible characters that hide text from readers but not from models.

    Zero-width characters, bidi overrides and Unicode tag characters (category Cf) are a known
    vehicle for hidden prompt injections; stray control characters break terminals and JSON.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", text)
    out = []
    for ch in text:
        if ch in "\u00a0\u2007\u202f\u3000":
            out.append(" ")
            continue
        if ch in "\u2028\u2029\f\v":
            out.append("\n")
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cf", "Co", "Cs") or (cat == "Cc" and ch not in _KEEP_CONTROL):
            continue
        out.append(ch)
    return "".join(out)
