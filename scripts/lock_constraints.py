#!/usr/bin/env python3
"""Turn ``poetry.lock`` into a pip constraints file, leaving torch and its CUDA stack out.

Why: the project is installed with plain pip (``pip install -c <constraints> -e '.[dev]'``) so that
nobody needs Poetry to get a working environment, yet every package still lands at exactly the
version the lock records. Torch is the exception. On Linux the torch wheels on the public index
depend on some 3 GB of CUDA packages (``nvidia-*``, ``triton``, ``cuda-*``), which the lock records
because Poetry resolves for every platform. ``scripts/setup_env.sh`` therefore installs torch
first, on its own (a CPU build where one is available), at the version this script reports with
``--torch-version``; the constraints then leave torch and the CUDA packages out, so pip keeps
the torch already installed and never pulls the CUDA stack.

Usage::

    python scripts/lock_constraints.py [--lock poetry.lock] [--output constraints.txt]
    python scripts/lock_constraints.py --torch-version
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

# Names are compared after PEP 503 normalisation (lower case, runs of -_. become "-").
EXCLUDED_NAMES = frozenset({"torch", "triton"})
EXCLUDED_PREFIXES = ("nvidia-", "cuda-")


def normalise(name: str) -> str:
    """PEP 503 normalised form of a distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_excluded(name: str) -> bool:
    """True for torch itself and the CUDA-only packages torch pulls on Linux."""
    norm = normalise(name)
    return norm in EXCLUDED_NAMES or norm.startswith(EXCLUDED_PREFIXES)


def locked_packages(lock_path: Path) -> dict[str, list[tuple[str, str]]]:
    """Map of normalised package name to its locked ``(version, markers)`` entries.

    A name has more than one entry when Poetry locked different versions for different
    platforms (it does so for some CUDA packages); ``markers`` is "" when the lock gives none.
    """
    with lock_path.open("rb") as handle:
        lock = tomllib.load(handle)
    packages: dict[str, list[tuple[str, str]]] = {}
    for pkg in lock.get("package", []):
        entry = (str(pkg["version"]), str(pkg.get("markers", "")))
        packages.setdefault(normalise(pkg["name"]), []).append(entry)
    return packages


def constraint_lines(packages: dict[str, list[tuple[str, str]]]) -> list[str]:
    """Sorted ``name==version`` lines for every package that is not excluded.

    A package locked once gets a plain pin (a pin for a package pip never installs is harmless).
    One locked at several versions gets one pin per version with its platform markers; markers
    naming an extra cannot be used in a constraints file, so those are refused.
    """
    lines: list[str] = []
    for name, entries in sorted(packages.items()):
        if is_excluded(name):
            continue
        if len(entries) == 1:
            lines.append(f"{name}=={entries[0][0]}")
            continue
        for version, markers in entries:
            if not markers or "extra" in markers:
                message = f"error: {name} is locked at several versions; cannot pin {version}"
                raise SystemExit(message)
            lines.append(f"{name}=={version} ; {markers}")
    return lines


def render(lines: Iterable[str], lock_path: Path) -> str:
    """The constraints file text, with a header saying where it came from."""
    header = [
        f"# Generated from {lock_path.name} by scripts/lock_constraints.py; do not edit.",
        "# torch and its CUDA packages are left out on purpose: setup_env.sh installs torch first.",
    ]
    return "\n".join([*header, *lines]) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=Path("poetry.lock"), help="lock file to read")
    parser.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    parser.add_argument(
        "--torch-version", action="store_true", help="print the locked torch version and exit"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    packages = locked_packages(args.lock)
    if args.torch_version:
        if "torch" not in packages:
            print(f"error: torch is not in {args.lock}", file=sys.stderr)
            return 1
        print(packages["torch"][0][0])
        return 0
    text = render(constraint_lines(packages), args.lock)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
