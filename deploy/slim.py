"""Make the virtual environment the Docker image copies smaller without changing what runs in it.

The image's build stage runs this after deploy/export_only.py, on the venv the runtime stage copies:

    python slim.py /opt/qabot              # strip debug info, remove bundled test suites, check
    python slim.py --dry-run /opt/qabot    # only list

1. Debug info: several wheels (spaCy and its thinc, blis, preshed..., xllamacpp, uvloop, aiohttp, Pillow) ship
   their compiled modules with DWARF debug sections, which only a debugger reads (~240 MB of the image's
   1.26 GB venv, 75 MB of it in xllamacpp). `strip --strip-debug` (binutils) removes those sections and
   nothing else: code, data, symbols and the dynamic linking information stay. Only files that have such
   sections are rewritten. Every extension module that imported before is imported again afterwards, in a
   fresh interpreter: one that no longer does fails the build.
2. Test suites that packages carry inside themselves (folders named `tests` or `test` under site-packages:
   numpy's, spaCy's, networkx's, chromadb's...; ~44 MB). A folder that any other module imports (not a
   doctest) is kept.

Neither changes a package's requirements (`pip check` is unaffected); the packages' RECORD files still list
what was removed, so `pip uninstall` in the image would say some files are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

TEST_FOLDERS = ("tests", "test")
_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[\w \t,*]+)|import[ \t]+([\w. \t,]+))", re.M)


# --------------------------------------------------------------------------------------------- debug info
def debug_bytes(path: Path) -> int:
    """Bytes in `path`'s DWARF debug sections (.debug_*, .zdebug_*); 0 when it is not a 64-bit little-endian
    ELF file (the only kind the image has) or has none."""
    try:
        with path.open("rb") as fh:
            header = fh.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
                return 0
            shoff, = struct.unpack_from("<Q", header, 0x28)
            shentsize, shnum, shstrndx = struct.unpack_from("<HHH", header, 0x3A)
            if not shoff or shentsize < 64 or not shnum or shstrndx >= shnum:
                return 0
            fh.seek(shoff)
            table = fh.read(shentsize * shnum)
            if len(table) < shentsize * shnum:
                return 0
            sections = [struct.unpack_from("<IIQQQQ", table, i * shentsize) for i in range(shnum)]
            names_offset, names_size = sections[shstrndx][4], sections[shstrndx][5]
            fh.seek(names_offset)
            names = fh.read(names_size)
    except OSError:
        return 0
    total = 0
    for name_at, kind, _flags, _addr, _offset, size in sections:
        name = names[name_at:names.find(b"\0", name_at)]
        if kind != 8 and name.startswith((b".debug_", b".zdebug_")):  # 8: SHT_NOBITS, nothing in the file
            total += size
    return total


def shared_objects(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*") if p.is_file() and not p.is_symlink() and ".so" in p.name)


def with_debug_info(site: Path) -> dict[Path, int]:
    """The shared objects under `site` that carry debug sections, with their size in bytes."""
    return {p: n for p in shared_objects(site) if (n := debug_bytes(p))}


def extension_modules(site: Path) -> list[str]:
    """Dotted names of the compiled modules under `site` (e.g. spacy.tokens.doc)."""
    out = []
    for path in shared_objects(site):
        suffix = next((s for s in EXTENSION_SUFFIXES if path.name.endswith(s)), None)
        parts = path.relative_to(site).parts
        if suffix is None or any(not p.isidentifier() for p in parts[:-1]):
            continue
        name = path.name[: -len(suffix)]
        if name.isidentifier():
            out.append(".".join([*parts[:-1], name]))
    return out


_IMPORT_EACH = """
import importlib, json, sys
ok = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException:
        continue
    ok.append(name)
print(json.dumps(ok))
"""


def importable(python: str, names: list[str]) -> set[str]:
    """Those of `names` that import, tried one after the other in a fresh interpreter (python -I)."""
    done = subprocess.run([python, "-I", "-c", _IMPORT_EACH, *names], capture_output=True, text=True,
                          timeout=600, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def strip_debug_info(files: list[Path]) -> None:
    strip = shutil.which("strip")
    if strip is None:
        raise SystemExit("strip not found: install binutils")
    for path in files:
        subprocess.run([strip, "--strip-debug", str(path)], check=True)


# --------------------------------------------------------------------------------------------- test suites
def _module(site: Path, path: Path) -> str:
    parts = list(path.relative_to(site).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(site: Path, source: Path) -> set[str]:
    """The modules `source` imports (relative imports resolved; doctest lines are not imports)."""
    try:
        text = source.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    here = _module(site, source).split(".")
    package = here if source.name == "__init__.py" else here[:-1]
    out = set()
    for dots, base, names, plain in _IMPORT.findall(text):
        if plain:
            out.update(n.split(" as ")[0].strip() for n in plain.split(",") if n.strip())
            continue
        if dots:
            up = package[: len(package) - (len(dots) - 1)] if len(dots) > 1 else package
            base = ".".join([*up, base] if base else up)
        out.add(base)
        out.update(f"{base}.{n.split(' as ')[0].strip()}" for n in names.replace("(", " ").replace(")", " ").split(",")
                   if n.strip() and n.strip() != "*")
    return out


def test_suites(site: Path) -> list[Path]:
    """Folders named tests or test under `site` that no module outside such folders imports."""
    found: list[Path] = []
    for root, dirs, _files in os.walk(site):
        for d in list(dirs):
            if d in TEST_FOLDERS and not root.endswith(".dist-info"):
                found.append(Path(root) / d)
                dirs.remove(d)  # its own sub-folders go with it
    if not found:
        return []
    names = {_module(site, f / "__init__.py"): f for f in found}
    used: set[Path] = set()
    for source in site.rglob("*.py"):
        if any(source.is_relative_to(f) for f in found):
            continue
        for name in imported_names(site, source):
            for module, folder in names.items():
                if name == module or name.startswith(module + "."):
                    used.add(folder)
    return sorted(set(found) - used)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


# --------------------------------------------------------------------------------------------- main
def site_packages(venv: Path) -> Path:
    (site,) = venv.glob("lib/python3*/site-packages")
    return site


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("venv", type=Path, help="the virtual environment (e.g. /opt/qabot)")
    parser.add_argument("--dry-run", action="store_true", help="list what would change, change nothing")
    args = parser.parse_args()
    site = site_packages(args.venv)
    python = str(args.venv / "bin" / "python")

    debug = with_debug_info(site)
    for path, n in sorted(debug.items(), key=lambda item: -item[1]):
        print(f"{'would strip' if args.dry_run else 'stripping'} {n / 1e6:6.1f} MB of debug info from {path.relative_to(site)}")
    print(f"debug info: {len(debug)} files, {sum(debug.values()) / 1e6:.0f} MB")
    suites = test_suites(site)
    sizes = {f: folder_bytes(f) for f in suites}
    for folder in suites:
        print(f"{'would remove' if args.dry_run else 'removing'} {sizes[folder] / 1e6:6.1f} MB {folder.relative_to(site)}/")
    print(f"test suites: {len(suites)} folders, {sum(sizes.values()) / 1e6:.0f} MB")
    if args.dry_run:
        return

    modules = extension_modules(site)
    before = importable(python, modules)
    strip_debug_info(sorted(debug))
    for folder in suites:
        shutil.rmtree(folder)
    after = importable(python, modules)
    left = with_debug_info(site)
    lost = sorted(before - after)
    if lost or left:
        raise SystemExit("\n".join([f"no longer imports: {', '.join(lost)}"] * bool(lost)
                                   + [f"still has debug info: {p}" for p in left]))
    print(f"{len(after)} of {len(modules)} extension modules import, as before")


if __name__ == "__main__":
    main()
