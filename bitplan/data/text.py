"""PTB/WikiText-style token files for language modelling, word or character level.

A directory with ``train.txt`` and ``valid.txt`` (or ``val.txt``; ``wiki.train.tokens`` /
``wiki.valid.tokens``; ``ptb.train.txt`` / ``ptb.valid.txt``). The vocabulary comes from the training
file only, in order of first appearance. Word level splits each line on whitespace and appends
``<eos>`` (as PTB/AWD-LSTM do); character level keeps every character, the newline included. Tokens
of the validation file absent from training become ``<unk>``. The validation file is the ``test``
split of the bundle; a ``test.txt`` is never read, so it stays untouched for a final evaluation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bitplan.data.bundle import DataBundle, DataRequest, Task
from bitplan.data.datasets import TokenWindows
from bitplan.data.registry import register_source
from bitplan.errors import DataError

__all__ = ["DEFAULT_SEQ_LEN", "EOS", "SPLIT_FILES", "UNK", "Vocabulary", "load_text", "tokenize"]

EOS = "<eos>"
UNK = "<unk>"
DEFAULT_SEQ_LEN = 35  # PTB's usual BPTT length, used when neither seq_len nor example inputs give one
SPLIT_FILES = {
    "train": ("train.txt", "wiki.train.tokens", "ptb.train.txt"),
    "valid": ("valid.txt", "val.txt", "wiki.valid.tokens", "ptb.valid.txt"),
}


def tokenize(text: str, level: str) -> list[str]:
    """Split ``text`` into tokens: words plus ``<eos>`` per line, or single characters.

    Example:
        >>> tokenize("the cat\\n\\nsat\\n", "word")
        ['the', 'cat', '<eos>', '<eos>', 'sat', '<eos>']
        >>> tokenize("ab\\n", "char")
        ['a', 'b', '\\n']
    """
    if level == "char":
        return list(text)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # a final newline ends the last line; it does not start an empty one
    return [token for line in lines for token in [*line.split(), EOS]]


class Vocabulary:
    """Token <-> id, ids in order of first appearance in the training tokens; ``<unk>`` always present."""

    def __init__(self, tokens: list[str]) -> None:
        self.ids: dict[str, int] = {}
        for token in tokens:
            self.ids.setdefault(token, len(self.ids))
        self.ids.setdefault(UNK, len(self.ids))
        self.unk = self.ids[UNK]

    def __len__(self) -> int:
        return len(self.ids)

    def tokens(self) -> tuple[str, ...]:
        """Token strings by id."""
        return tuple(self.ids)

    def encode(self, tokens: list[str]) -> torch.Tensor:
        """``[T]`` int64 ids; unknown tokens map to ``<unk>``."""
        ids = self.ids
        unk = self.unk
        return torch.tensor([ids.get(token, unk) for token in tokens], dtype=torch.int64)


def _split_file(root: Path, split: str) -> Path:
    """The first existing file for ``split`` in ``root``.

    Raises:
        DataError: Naming the files looked for and the expected layout.
    """
    for name in SPLIT_FILES[split]:
        if (root / name).is_file():
            return root / name
    raise DataError(
        f"text corpus `{root}` has no {split} file: looked for {', '.join(SPLIT_FILES[split])}; expected a "
        f"directory with train.txt and valid.txt (PTB style) or wiki.train.tokens and wiki.valid.tokens."
    )


def _read(path: Path) -> str:
    """The file's text (UTF-8, universal newlines)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"text file `{path}` is not UTF-8 ({error}); convert it to UTF-8.") from error


def _seq_len(request: DataRequest) -> int:
    """The window length: the argument, else the model's example input length, else 35."""
    if request.seq_len is not None:
        return request.seq_len
    if request.example_inputs:
        return int(request.example_inputs[0].shape[-1])
    return DEFAULT_SEQ_LEN


@register_source(
    "text",
    summary="PTB/WikiText-style train.txt + valid.txt token files; word-level (with <eos>) or char-level LM.",
    takes_path=True,
    options={"level": "word (whitespace tokens + <eos> per line) or char; default word"},
)
def load_text(request: DataRequest) -> DataBundle:
    """Token windows of the training and validation files; the validation file is the test split."""
    root = request.existing_path()
    if not root.is_dir():
        raise DataError(f"text corpus path `{root}` is a file; give the directory holding train.txt and valid.txt.")
    level = request.choice_option("level", "word", ("word", "char"))
    seq_len = _seq_len(request)
    train_file, valid_file = _split_file(root, "train"), _split_file(root, "valid")
    train_tokens = tokenize(_read(train_file), level)
    vocabulary = Vocabulary(train_tokens)
    streams = {"train": vocabulary.encode(train_tokens), "valid": vocabulary.encode(tokenize(_read(valid_file), level))}
    for split, path in (("train", train_file), ("valid", valid_file)):
        if streams[split].shape[0] < seq_len + 1:
            raise DataError(
                f"text file `{path}` has {streams[split].shape[0]} {level} tokens, fewer than one window of "
                f"seq_len + 1 = {seq_len + 1}; use a longer file or a shorter seq_len."
            )
    return DataBundle(
        train=TokenWindows(streams["train"], seq_len),
        test=TokenWindows(streams["valid"], seq_len),
        task=Task.language_model,
        num_classes=None,
        vocab_size=len(vocabulary),
        input_shape=(seq_len,),
        name=f"text:{root.name}" + ("?level=char" if level == "char" else ""),
        vocabulary=vocabulary.tokens(),
    )
