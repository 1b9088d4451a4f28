"""llama.cpp's own HF → GGUF converter, at the version of the llama.cpp we link.

`convert_hf_to_gguf.py`, its `conversion/` package and the `gguf-py` it is written against ship only inside
the llama-cpp-python source distribution (vendor/llama.cpp), not in any wheel. `make install` runs
`python -m openrecipe.export.converter`, which downloads that sdist with pip (or takes one given with
--sdist) and unpacks just those files into the virtual environment. They run in a subprocess
(`openrecipe.export.hf_to_gguf`) so the converter imports its own gguf-py, never the PyPI `gguf` this
process uses.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from openrecipe.errors import OpenRecipeError

PINNED_VERSION = "0.3.36"  # the llama-cpp-python the Makefile builds
ENV_OVERRIDE = "OPENRECIPE_LLAMA_CPP_CONVERTER"
_MEMBERS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/gguf/", "LICENSE")


def linked_version() -> str:
    """The installed llama-cpp-python's version (the converter must match it), else the pinned one."""
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return PINNED_VERSION


def install_dir(version: str | None = None) -> Path:
    return Path(sys.prefix) / "share" / "openrecipe" / f"llama.cpp-convert-{version or linked_version()}"


def _is_complete(folder: Path) -> bool:
    return (folder / "convert_hf_to_gguf.py").is_file() and (folder / "gguf-py" / "gguf" / "__init__.py").is_file()


def converter_dir() -> Path:
    """The folder holding convert_hf_to_gguf.py and gguf-py; a user error with the fix when it is missing."""
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        folder = Path(override).expanduser()
        if not _is_complete(folder):
            raise OpenRecipeError(
                f"{ENV_OVERRIDE}={override} has no convert_hf_to_gguf.py and gguf-py/",
                fix="point it at a llama.cpp source folder, or unset it",
            )
        return folder
    folder = install_dir()
    if not _is_complete(folder):
        raise OpenRecipeError(
            f"llama.cpp's GGUF converter (llama-cpp-python {linked_version()}) is not installed",
            fix="run `python -m openrecipe.export.converter` (part of `make install`; downloads the sdist with pip)",
        )
    return folder


def _download_sdist(version: str, into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"]
    command += ["--no-binary", ":all:", "-d", str(into), f"llama-cpp-python=={version}"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = sorted(into.glob("llama_cpp_python-*.tar.gz"))
    if result.returncode != 0 or not found:
        raise OpenRecipeError(
            f"pip could not download the llama-cpp-python {version} source: {result.stderr.strip()[-500:]}",
            fix="check the network or pip's index settings, or pass --sdist PATH to a downloaded copy",
        )
    return found[0]


def _extract(sdist: Path, target: Path) -> None:
    """Unpack only the converter's files from the sdist (tarfile's `data` filter refuses unsafe members)."""
    with tarfile.open(sdist, "r:gz") as archive:
        members = []
        for member in archive.getmembers():
            parts = member.name.split("/vendor/llama.cpp/", 1)
            if len(parts) == 2 and parts[1].startswith(_MEMBERS) and "__pycache__" not in parts[1]:
                member.name = parts[1]
                members.append(member)
        if not members:
            raise OpenRecipeError(f"{sdist} holds no vendor/llama.cpp/convert_hf_to_gguf.py", fix="pass the sdist")
        if hasattr(tarfile, "data_filter"):
            try:
                archive.extractall(target, members=members, filter="data")
            except tarfile.FilterError as error:
                raise OpenRecipeError(f"{sdist} has an unsafe member: {error}", fix="use the PyPI sdist") from None
            return
        for member in members:  # Pythons before the extraction filters: allow plain files and folders only
            if not (member.isfile() or member.isdir()) or member.name.startswith("/") or ".." in member.name:
                raise OpenRecipeError(f"{sdist} has an unsafe member {member.name!r}", fix="use the PyPI sdist")
        archive.extractall(target, members=members)


def install_converter(*, sdist: Path | None = None, version: str | None = None, force: bool = False) -> Path:
    """Put the converter of `version` (default: the linked llama.cpp) into the environment, atomically."""
    version = version or linked_version()
    target = install_dir(version)
    if _is_complete(target) and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".converter-") as tmp:
        source = sdist or _download_sdist(version, Path(tmp) / "download")
        staged = Path(tmp) / "converter"
        _extract(source, staged)
        if not _is_complete(staged):
            raise OpenRecipeError(f"{source} lacks convert_hf_to_gguf.py or gguf-py", fix="pass the right sdist")
        (staged / "VERSION").write_text(version + "\n")
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sdist", type=Path, help="a downloaded llama_cpp_python-VERSION.tar.gz")
    parser.add_argument(
        "--version", help=f"llama-cpp-python version (default: the installed one, else {PINNED_VERSION})"
    )
    parser.add_argument("--force", action="store_true", help="reinstall even if present")
    args = parser.parse_args(argv)
    try:
        folder = install_converter(sdist=args.sdist, version=args.version, force=args.force)
    except OpenRecipeError as error:
        print(f"error: {error.format()}", file=sys.stderr)
        return 2
    print(f"llama.cpp converter: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
