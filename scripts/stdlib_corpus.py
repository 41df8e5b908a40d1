"""Write a character-level LM corpus from this Python's own standard library: no download, deterministic.

    python scripts/stdlib_corpus.py OUT_DIR [--train-chars N] [--valid-chars N]

The top-level modules of the standard library (``Lib/*.py``, as ``sysconfig`` reports it) are read
in sorted file-name order as UTF-8 and every tenth file (the 10th, 20th, … of the sorted list) goes
to ``valid.txt``, the others to ``train.txt``, each file's text followed by one newline. Each split
is then cut to its first N characters (0 = keep all), so a small benchmark stays small. The same
Python version writes the same bytes on every machine. ``bitplan`` reads the folder as
``--data "text:OUT_DIR?level=char"`` (bitplan/data/text.py); docs/results.md uses it.
"""

from __future__ import annotations

import argparse
import sysconfig
from pathlib import Path

VALID_EVERY = 10
DEFAULT_TRAIN_CHARS = 600_000
DEFAULT_VALID_CHARS = 60_000


def stdlib_files(library: Path | None = None) -> list[Path]:
    """The standard library's top-level ``*.py`` files in sorted name order."""
    root = library or Path(sysconfig.get_paths()["stdlib"])
    return sorted(root.glob("*.py"), key=lambda path: path.name)


def split_texts(files: list[Path]) -> tuple[str, str]:
    """(train text, valid text): every ``VALID_EVERY``-th file to valid, each file followed by a newline."""
    train, valid = [], []
    for index, path in enumerate(files, start=1):
        text = path.read_text(encoding="utf-8", errors="replace") + "\n"
        (valid if index % VALID_EVERY == 0 else train).append(text)
    return "".join(train), "".join(valid)


def write_corpus(out: Path, *, train_chars: int = DEFAULT_TRAIN_CHARS, valid_chars: int = DEFAULT_VALID_CHARS,
                 library: Path | None = None) -> tuple[Path, Path]:
    """Write ``out/train.txt`` and ``out/valid.txt`` (each cut to its first N characters; 0 keeps all)."""
    train, valid = split_texts(stdlib_files(library))
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text, limit in (("train.txt", train, train_chars), ("valid.txt", valid, valid_chars)):
        path = out / name
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text[:limit] if limit else text, encoding="utf-8", newline="\n")
        partial.replace(path)  # never a half-written split at the final name
        paths.append(path)
    return paths[0], paths[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="Folder to write train.txt and valid.txt into.")
    parser.add_argument("--train-chars", type=int, default=DEFAULT_TRAIN_CHARS, help="Characters of train.txt (0 = all).")
    parser.add_argument("--valid-chars", type=int, default=DEFAULT_VALID_CHARS, help="Characters of valid.txt (0 = all).")
    args = parser.parse_args(argv)
    train, valid = write_corpus(args.out, train_chars=args.train_chars, valid_chars=args.valid_chars)
    for path in (train, valid):
        print(f"{path}: {len(path.read_text(encoding='utf-8'))} characters")


if __name__ == "__main__":
    main()
