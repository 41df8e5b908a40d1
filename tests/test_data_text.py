"""Word- and character-level language-modelling corpora in the PTB/WikiText file layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bitplan.data import Task, load_data
from bitplan.data.datasets import TokenWindows
from bitplan.data.text import tokenize
from bitplan.errors import DataError


def corpus(root: Path, train: str, valid: str, names: tuple[str, str] = ("train.txt", "valid.txt")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / names[0]).write_text(train, encoding="utf-8")
    (root / names[1]).write_text(valid, encoding="utf-8")
    return root


def windows(dataset) -> list[tuple[list[int], list[int]]]:
    return [(tokens.tolist(), targets.tolist()) for tokens, targets in (dataset[i] for i in range(len(dataset)))]


def test_word_level_vocabulary_eos_unk_and_windows(tmp_path: Path) -> None:
    root = corpus(tmp_path / "ptb", " the cat sat \nthe dog\n", "the bird sat\n")
    data = load_data(f"text:{root}", seq_len=2)
    assert data.task is Task.language_model and data.num_classes is None
    # ids by first appearance in train; <unk> appended because training never contains it
    assert data.vocabulary == ("the", "cat", "sat", "<eos>", "dog", "<unk>")
    assert data.vocab_size == 6 and data.input_shape == (2,)
    # train stream: the cat sat <eos> the dog <eos> = 0 1 2 3 0 4 3 -> (7 - 1) // 2 = 3 windows
    assert windows(data.train) == [([0, 1], [1, 2]), ([2, 3], [3, 0]), ([0, 4], [4, 3])]
    # valid stream: the <unk> sat <eos> (bird is unseen) = 0 5 2 3 -> one window, the last token unused
    assert windows(data.test) == [([0, 5], [5, 2])]
    tokens, targets = data.train[0]
    assert tokens.dtype == torch.int64 and targets.dtype == torch.int64 and tokens.shape == (2,)


def test_ptb_unk_in_training_is_not_duplicated(tmp_path: Path) -> None:
    root = corpus(tmp_path, "a <unk> b\n", "c a\n")
    data = load_data(f"text:{root}", seq_len=1)
    assert data.vocabulary == ("a", "<unk>", "b", "<eos>")
    assert [t for t, _ in windows(data.test)] == [[1], [0]]  # c -> <unk> (id 1), a


def test_char_level(tmp_path: Path) -> None:
    root = corpus(tmp_path, "ab a\nba\n", "abz\n")
    data = load_data(f"text:{root}?level=char", seq_len=3)
    assert data.vocabulary == ("a", "b", " ", "\n", "<unk>")
    assert windows(data.train) == [([0, 1, 2], [1, 2, 0]), ([0, 3, 1], [3, 1, 0])]
    assert windows(data.test) == [([0, 1, 4], [1, 4, 3])]
    assert data.name.endswith("?level=char")


def test_blank_lines_become_eos_like_awd_lstm() -> None:
    assert tokenize("a b\n\n c\n", "word") == ["a", "b", "<eos>", "<eos>", "c", "<eos>"]
    assert tokenize("a\nb", "word") == ["a", "<eos>", "b", "<eos>"]  # no final newline: same as with one
    assert tokenize("", "word") == []


@pytest.mark.parametrize(
    "names", [("wiki.train.tokens", "wiki.valid.tokens"), ("train.txt", "val.txt"), ("ptb.train.txt", "ptb.valid.txt")]
)
def test_accepted_file_names(tmp_path: Path, names: tuple[str, str]) -> None:
    root = corpus(tmp_path, "x y z\n", "z y x y\n", names)
    assert len(load_data(f"text:{root}", seq_len=2).test) == 2  # 5 tokens -> (5 - 1) // 2 windows


def test_valid_file_is_the_test_split_and_test_txt_is_never_read(tmp_path: Path) -> None:
    root = corpus(tmp_path, "x y z\n", "z\n")
    (root / "test.txt").write_bytes(b"\xff\xfe not utf-8")
    assert len(load_data(f"text:{root}", seq_len=1).test) == 1  # valid: z <eos>


def test_seq_len_defaults_to_the_model_input_length(tmp_path: Path) -> None:
    root = corpus(tmp_path, "a " * 30 + "\n", "a " * 20 + "\n")
    data = load_data(f"text:{root}", example_inputs=(torch.zeros(1, 4, dtype=torch.int64),))
    assert data.input_shape == (4,) and len(data.train) == (31 - 1) // 4


def test_missing_valid_file_names_the_layout(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a b\n")
    with pytest.raises(DataError, match=r"has no valid file: looked for valid.txt, val.txt, wiki.valid.tokens"):
        load_data(f"text:{tmp_path}")


def test_empty_or_short_file(tmp_path: Path) -> None:
    root = corpus(tmp_path, "", "a b c\n")
    with pytest.raises(DataError, match=r"`.*train.txt` has 0 word tokens, fewer than one window of seq_len \+ 1 = 6"):
        load_data(f"text:{root}", seq_len=5)


def test_path_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a\n")
    with pytest.raises(DataError, match=r"is a file; give the directory"):
        load_data(f"text:{tmp_path / 'train.txt'}")


def test_non_utf8(tmp_path: Path) -> None:
    root = corpus(tmp_path, "a b\n", "a\n")
    (root / "train.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(DataError, match=r"text file `.*train.txt` is not UTF-8"):
        load_data(f"text:{root}")


@given(st.lists(st.integers(0, 9), max_size=60), st.integers(1, 8))
def test_windows_tile_the_stream_with_next_token_targets(tokens: list[int], seq_len: int) -> None:
    stream = torch.tensor(tokens, dtype=torch.int64)
    data = TokenWindows(stream, seq_len)
    assert len(data) == max(len(tokens) - 1, 0) // seq_len
    pairs = [data[i] for i in range(len(data))]
    covered = len(data) * seq_len
    assert torch.cat([x for x, _ in pairs] or [stream[:0]]).tolist() == tokens[:covered]
    assert torch.cat([y for _, y in pairs] or [stream[:0]]).tolist() == tokens[1 : covered + 1]
