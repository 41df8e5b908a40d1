"""Find every fenced ``bash``/``python`` example in README.md and docs/*.md, and make it runnable in CI.

Examples are run as written, with two kinds of rewriting, both listed here and nowhere else:

- **Data CI lacks** becomes a small fixture of the same format (``FixtureData``): a CIFAR-10 folder in
  the official pickle layout, a PTB-style text corpus, an ONNX file exported from the zoo, a model
  factory file. Only paths that do not exist are replaced.
- **Work is shrunk, not changed** (``shrink``): one epoch (added where the default would be more), the first seed, two study trials, one
  sensitivity batch and probe, one job. The command, its model and its options stay as documented.

Lines that cannot run here say why in ``NOT_RUN`` (a benchmark of hours, the setup script CI runs anyway).
"""

from __future__ import annotations

import pickle
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)

NOT_RUN = {
    "scripts/setup.sh": "the setup script is what CI itself runs before the tests",
    "benchmarks/validation_study.py": "a study of several hours; its results are committed in docs/validation.md",
    "benchmarks/pareto_": "sweeps of CPU-hours; their tables and figures are committed in docs/results.md",
    "chromium ": "needs a browser; tests/test_report.py renders the report in headless Chromium",
    "python -m pytest": "the test suite itself",
}

SHRUNK_INTEGERS = {"--epochs": "1", "--trials": "2", "--batches": "1", "--probes": "1", "--jobs": "1", "--batch": "16"}
PYTHON_SHRINKS = [
    (re.compile(r"\bepochs=\d+"), "epochs=1"),
    (re.compile(r"\btrials=\d+"), "trials=2"),
    (re.compile(r"\bbatches=\d+"), "batches=1"),
    (re.compile(r"\bprobes=\d+"), "probes=1"),
    (re.compile(r"\bjobs=\d+"), "jobs=1"),
    (re.compile(r"\bseeds=\[[\d, ]+\]"), "seeds=[0]"),
]


@dataclass(frozen=True)
class Example:
    """One fenced block: where it is, its language and its text."""

    document: Path
    line: int
    language: str
    text: str

    @property
    def name(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def examples(language: str) -> list[Example]:
    """Every fenced block of ``language`` in README.md and docs/*.md, in document order."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match.group(1) == language:
                found.append(Example(document, text.count("\n", 0, match.start()) + 1, language, match.group(2)))
    return found


def commands(example: Example) -> Iterator[list[str]]:
    """The block's commands as words: continuation lines joined, comments and blank lines dropped, ``&&`` split."""
    joined = example.text.replace("\\\n", " ")
    for line in joined.splitlines():
        command: list[str] = []
        for word in [*shlex.split(line, comments=True), "&&"]:
            if word == "&&":
                if command:
                    yield command
                command = []
            else:
                command.append(word)


def expand(words: list[str], variables: dict[str, str]) -> list[str]:
    """``$NAME`` as a whole word splits into the value's words (as an unquoted shell variable); inside a word it is text."""
    out: list[str] = []
    for word in words:
        if word.startswith("$") and word[1:] in variables:
            out += shlex.split(variables[word[1:]])
            continue
        for name, value in variables.items():
            word = word.replace(f"${name}", value)
        out.append(word)
    return out


def reason_not_run(command: str) -> str | None:
    return next((why for marker, why in NOT_RUN.items() if marker in command), None)


def shrink(argv: list[str]) -> list[str]:
    """The same command with less work: see the module docstring."""
    out = list(argv)
    for index, word in enumerate(out[:-1]):
        if word in SHRUNK_INTEGERS:
            out[index + 1] = SHRUNK_INTEGERS[word]
        elif word == "--seeds":
            out[index + 1] = out[index + 1].split(",")[0]
    if out and out[0] == "study" and "--trials" not in out:
        out += ["--trials", "2"]
    if out and out[0] in ("train", "compare") and "--epochs" not in out:
        out += ["--epochs", "1"]
    return out


def shrink_python(source: str) -> str:
    for pattern, replacement in PYTHON_SHRINKS:
        source = pattern.sub(replacement, source)
    return source


class FixtureData:
    """Small stand-ins for data CI does not have, written on first use into ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def substitute(self, word: str) -> str:
        """``word`` with a missing dataset path, ONNX file or factory file replaced by a fixture."""
        for kind, make in (("cifar10:", self.cifar10), ("text:", self.text_corpus)):
            if word.startswith(kind):
                path, _, query = word[len(kind):].partition("?")
                if not Path(path).expanduser().exists():
                    return f"{kind}{make()}" + (f"?{query}" if query else "")
        if word == "model.onnx" and not Path(word).exists():
            return str(self.onnx())
        if word.startswith("my_models.py:"):
            return f"{self.factory()}:{word.partition(':')[2]}"
        return word

    def cifar10(self) -> Path:
        folder = self.root / "cifar-10-batches-py"
        if not folder.exists():
            folder.mkdir(parents=True)
            rng = np.random.default_rng(0)
            for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
                labels = [int(label) for label in rng.integers(0, 10, size=8)]
                batch = {b"batch_label": b"fixture", b"labels": labels, b"filenames": [b"x.png"] * 8,
                         b"data": rng.integers(0, 256, size=(8, 3072), dtype=np.uint8)}
                (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        return folder

    def text_corpus(self) -> Path:
        folder = self.root / "corpus"
        if not folder.exists():
            folder.mkdir(parents=True)
            words = "the quick brown fox jumps over the lazy dog and runs away again".split()
            rng = np.random.default_rng(0)
            for name, count in (("train.txt", 3000), ("valid.txt", 400)):
                lines = [" ".join(rng.choice(words, size=12)) for _ in range(count // 12)]
                (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return folder

    def onnx(self) -> Path:
        path = self.root / "model.onnx"
        if not path.exists():
            import torch

            from bitplan import load_model

            model, inputs = load_model("zoo:resnet20")
            torch.onnx.export(model.eval(), inputs, str(path), dynamo=False, input_names=["x"])
        return path

    def factory(self) -> Path:
        path = self.root / "my_models.py"
        if not path.exists():
            path.write_text(
                "import torch\n\n\ndef build():\n"
                "    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1),\n"
                "                               torch.nn.Flatten(), torch.nn.Linear(8, 10))\n"
            )
        return path
