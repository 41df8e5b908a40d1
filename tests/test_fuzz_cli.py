"""Every command against a corpus of bad inputs: exit 2 (1 for a failed ``check``), one paragraph, no traceback.

One table, one test: each row is a command line over the files of a shared corpus (an evil model
file, non-UTF-8 and hollow plans, empty, truncated and malicious checkpoints, damaged run folders,
CIFAR batches with string labels, a decompression-bomb PNG, output paths under a file or onto a
directory, out-of-range numbers). After every row: the expected exit code, no "Traceback" and no
exception other than the CLI's exit, the words that name the fix, no file of the corpus changed
(lock files aside) and no marker of executed code. Each new bug adds a row. Commands run in-process
with typer's CliRunner, so the whole table takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bitplan.cli.app import app
from bitplan.plan import make_plan, save_plan
from bitplan.spec import profile_spec
from bitplan.train.folder import LOCK_FILE

runner = CliRunner()
MARKER = "MARKER"


@dataclass(frozen=True)
class Row:
    """One bad input: the command line (``{c}`` = the corpus folder), the exit code, words the message must hold."""

    name: str
    argv: str
    code: int = 2
    says: tuple[str, ...] = ()


class CodeRunner:
    """Unpickling this writes the marker: a checkpoint that would run code if loaded unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` pixels (no pixel data follows)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def write_run(folder: Path, final: str, metrics: str = "") -> None:
    """A one-seed run folder as ``bitplan train -o`` leaves it, with the given files' text."""
    (folder / "seed-0").mkdir(parents=True)
    (folder / "seed-0" / "final.json").write_text(final)
    (folder / "seed-0" / "metrics.jsonl").write_text(metrics)
    (folder / "summary.json").write_text("{}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    c = tmp_path_factory.mktemp("corpus")
    marker = c / MARKER
    (c / "evil.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "import torch\ndef build():\n    return torch.nn.Linear(4, 2), (torch.zeros(1, 4),)\n"
    )
    (c / "wrong.py").write_text(  # takes 12 features; digits samples are 1×8×8
        "import torch\ndef build():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 10)), "
        "(torch.zeros(1, 12),)\n"
    )
    result = runner.invoke(app, ["plan", "zoo:digits_cnn", "--factor", "A", "--strategy", "C-", "-o", str(c / "p.json")])
    assert result.exit_code == 0, result.output
    plan = json.loads((c / "p.json").read_text())
    (c / "evil.json").write_text(json.dumps({**plan, "model": f"{c / 'evil.py'}:build"}))
    (c / "hollow.json").write_text(json.dumps({**plan, "layers": []}))
    (c / "latin1.json").write_bytes(json.dumps({**plan, "model": "zoo:digits_cnn"}).replace("C-", "C\xe9").encode("latin-1"))
    (c / "list.json").write_text("[1, 2]")
    (c / "plans").mkdir()

    from bitplan.spec import load_model

    state = load_model("zoo:digits_cnn").model.state_dict()
    torch.save(state, c / "good.pt")
    (c / "empty.pt").write_bytes(b"")
    (c / "truncated.pt").write_bytes((c / "good.pt").read_bytes()[:5000])
    torch.save({"format": 1, "model": CodeRunner(marker)}, c / "malicious.pt")
    (c / "text.pt").write_text("not a checkpoint")

    write_run(c / "finished", json.dumps({"status": "ok"}))
    write_run(c / "torn-final", "{ not json")
    write_run(c / "torn-metrics", "", "{'epoch': 1\n")
    write_run(c / "foreign-checkpoint", "")
    (c / "foreign-checkpoint" / "seed-0" / "checkpoint.pt").write_bytes(b"")
    (c / "foreign-checkpoint" / "seed-0" / "final.json").write_text(
        (c / "p.json").read_text()  # valid JSON, not a run result
    )

    (c / "grid").mkdir()
    (c / "grid" / "results.json").write_text("{}")

    cifar = c / "cifar" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    batch = {b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": ["cat", "dog"]}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (cifar / name).write_bytes(pickle.dumps(batch, protocol=2))
    for split in ("train", "val"):
        (c / "bomb" / split / "a").mkdir(parents=True)
        (c / "bomb" / split / "a" / "huge.png").write_bytes(png_header(20000, 20000))
    (c / "afile").write_text("a file, not a folder")

    # non-finite weights: one NaN in conv1, one Inf in fc2
    for name, key, value in (("nan", "conv1.weight", float("nan")), ("inf", "fc2.weight", float("inf"))):
        broken = {k: v.clone() for k, v in state.items()}
        broken[key].view(-1)[3] = value
        torch.save(broken, c / f"{name}.pt")
    # a plan with a layer deleted (the layer would silently stay fp32), one without widths or shapes (older),
    # one with widths edited down, one in 1 and 31 bits (ModelOpt has neither)
    (c / "deleted.json").write_text(json.dumps({**plan, "layers": plan["layers"][1:]}))
    older = [{k: v for k, v in layer.items() if k not in ("accumulator_bits", "shape")} for layer in plan["layers"]]
    (c / "older.json").write_text(json.dumps({**plan, "layers": older}))
    narrow = [{**layer, "accumulator_bits": {"forward": 4, "grad_input": 4, "grad_weight": 4}} for layer in plan["layers"]]
    (c / "narrow.json").write_text(json.dumps({**plan, "layers": narrow}))
    extremes = make_plan(profile_spec("zoo:digits_cnn"), factor="A", strategy="C-", levels=[1, 31], zero_point="integer")
    save_plan(extremes, c / "extremes.json")
    result = runner.invoke(app, ["plan", "zoo:resnet20", "--factor", "A", "--strategy", "U", "-o", str(c / "resnet.json")])
    assert result.exit_code == 0, result.output
    # a run trained with another plan (its checkpoint's config records the plan)
    other = make_plan(profile_spec("zoo:digits_cnn"), factor="A", strategy="U", levels=[6])
    torch.save({"format": 1, "model": state, "config": {"plan": other.model_dump(mode="json")}, "model_spec": "zoo:digits_cnn"},
               c / "other-plan.pt")
    return c


EXPORT_FORMATS = {"packed": "x.safetensors", "onnx": "x.onnx", "torchao": "x.json", "compressed-tensors": "ct", "modelopt": "m.json"}
NONFINITE_ROWS = [
    Row(f"export-{kind}-{format}",
        f"export zoo:digits_cnn --plan {{c}}/p.json --format {format} --checkpoint {{c}}/{kind}.pt -o {{c}}/out/{output}",
        says=(f"`{key}` ({counts})", "--allow-nonfinite"))
    for kind, key, counts in (("nan", "conv1.weight", "1 NaN, 0 Inf"), ("inf", "fc2.weight", "0 NaN, 1 Inf"))
    for format, output in EXPORT_FORMATS.items()
]

ROWS = [
    *NONFINITE_ROWS,
    # plans that do not match what is exported or checked
    Row("export-deleted-layer-strict", "export zoo:digits_cnn --plan {c}/deleted.json --format packed --strict -o {c}/out/x.safetensors",
        says=("no entry for 1 weight GEMM", "`conv1`", "--strict")),
    Row("export-other-training-plan-strict",
        "export zoo:digits_cnn --plan {c}/p.json --format packed --strict --checkpoint {c}/other-plan.pt -o {c}/out/x.safetensors",
        says=("trained with another plan", "`conv1` (trained 6")),
    Row("export-modelopt-1-and-31-bits-strict", "export zoo:digits_cnn --plan {c}/extremes.json --format modelopt --strict -o {c}/out/m.json",
        says=("ModelOpt has no", "-bit weights", "--strict")),
    Row("check-no-model-older-plan-widths", "check {c}/older.json --no-model --max-accumulator-bits 26",
        says=("stores no GEMM shape", "Drop --no-model")),
    Row("check-no-model-narrowed-widths", "check {c}/narrow.json --no-model --max-accumulator-bits 16", code=1,
        says=("accumulator_bits", "max_accumulator_bits")),
    Row("check-no-model-with-model", "check {c}/p.json --no-model --model zoo:resnet20", says=("drop one of them",)),
    Row("plan-plot-under-file-writes-no-plan",
        "plan zoo:digits_cnn --factor A --strategy U -o {c}/out/p.json --plot {c}/afile/x.png", says=("ENOTDIR",)),
    Row("plan-plot-unknown-suffix", "plan zoo:digits_cnn --factor A --strategy U -o {c}/out/p.json --plot {c}/out/x.gif",
        says=(".png, .pdf, .svg",)),
    Row("diff-two-architectures", "diff {c}/p.json {c}/resnet.json", says=("--across-architectures",)),
    # files never run code
    Row("check-evil-plan", "check {c}/evil.json", says=("--trust-model-spec",)),
    Row("apply-evil-plan", "apply {c}/evil.json {c}/good.pt -o {c}/out/q.safetensors", says=("--trust-model-spec",)),
    Row("apply-malicious-checkpoint", "apply {c}/p.json {c}/malicious.pt -o {c}/out/q.safetensors", says=("could run code",)),
    Row("sensitivity-malicious-checkpoint", "sensitivity zoo:digits_cnn --checkpoint {c}/malicious.pt --batches 1",
        says=("could run code",)),
    # unreadable plans and JSON
    Row("check-latin1", "check {c}/latin1.json", says=("not UTF-8",)),
    Row("check-directory", "check {c}/plans", says=("is a directory",)),
    Row("check-hollow", "check {c}/hollow.json", code=1, says=("layers",)),
    Row("check-list", "check {c}/list.json", code=1, says=("JSON object",)),
    Row("check-other-model", "check {c}/p.json --model zoo:resnet20", code=1, says=("bitplan plan 'zoo:resnet20'",)),
    Row("train-hollow-plan", "train --plan {c}/hollow.json -o {c}/out/t", says=("layers",)),
    Row("train-latin1-plan", "train --plan {c}/latin1.json -o {c}/out/t", says=("not UTF-8",)),
    Row("train-directory-plan", "train --plan {c}/plans -o {c}/out/t", says=("is a directory",)),
    Row("apply-hollow-plan", "apply {c}/hollow.json {c}/good.pt -o {c}/out/q.safetensors", says=("layers",)),
    # numbers out of range
    Row("plan-budget-zero", "plan zoo:digits_cnn --factor A --strategy C- --budget-avg-bits 0", says=("greater than 0",)),
    Row("plan-budget-nan", "plan zoo:digits_cnn --factor A --strategy C- --budget-mbit nan", says=("finite",)),
    Row("plan-budget-inf", "plan zoo:digits_cnn --factor A --strategy C- --budget-bitops inf", says=("finite",)),
    Row("plan-budget-negative", "plan zoo:digits_cnn --factor A --strategy C- --budget-mbit -1", says=("greater than 0",)),
    Row("plan-activation-bits-33", "plan zoo:digits_cnn --factor A --strategy C- --activation-bits 33", says=("32",)),
    Row("plan-keep-bits-40", "plan zoo:digits_cnn --factor A --strategy C- --keep-bits 40", says=("32",)),
    Row("plan-bits-reversed", "plan zoo:digits_cnn --factor A --strategy C- --bits 8-4", says=("reversed",)),
    Row("check-limit-nan", "check {c}/p.json --max-mbit nan", says=("finite",)),
    Row("check-limit-inf", "check {c}/p.json --max-avg-bits inf", says=("finite",)),
    Row("check-min-bits-40", "check {c}/p.json --min-bits 40", says=("32",)),
    Row("train-activation-bits-33", "train --activation-bits 33 -o {c}/out/t", says=("activation_bits",)),
    Row("train-seeds-repeat", "train --seeds 0,0 -o {c}/out/t", says=("--seeds 0,0",)),
    Row("train-seeds-text", "train --seeds zero -o {c}/out/t", says=("--seeds",)),
    Row("train-epochs-zero", "train --epochs 0 -o {c}/out/t", says=("epochs",)),
    Row("compare-seeds-repeat", "compare zoo:digits_cnn --seeds 0,0 -o {c}/out/g", says=("--seeds 0,0",)),
    Row("compare-gradient-bits-33", "compare zoo:digits_cnn --gradient-bits 33 -o {c}/out/g", says=("gradient_bits",)),
    # run folders
    Row("train-into-finished", "train -o {c}/finished", says=("--resume", "--overwrite")),
    Row("train-resume-and-overwrite", "train -o {c}/finished --resume --overwrite", says=("one of them",)),
    Row("compare-into-train-folder", "compare zoo:digits_cnn --seeds 0 -o {c}/finished", says=("run folder",)),
    Row("train-into-grid-folder", "train -o {c}/grid", says=("grid folder",)),
    Row("train-resume-fewer-seeds", "train -o {c}/finished --resume --seeds 1", says=("--seeds 0,1",)),
    Row("train-resume-torn-final", "train -o {c}/torn-final --resume", says=("final.json", "--overwrite")),
    Row("train-resume-empty-checkpoint", "train -o {c}/foreign-checkpoint --resume", says=("final.json",)),
    Row("report-torn-metrics", "report {c}/torn-metrics", says=("metrics.jsonl",)),
    Row("report-torn-final", "report {c}/torn-final", says=("final.json",)),
    # checkpoints
    Row("apply-empty-checkpoint", "apply {c}/p.json {c}/empty.pt -o {c}/out/q.safetensors", says=("empty",)),
    Row("apply-truncated-checkpoint", "apply {c}/p.json {c}/truncated.pt -o {c}/out/q.safetensors", says=("truncated",)),
    Row("apply-text-checkpoint", "apply {c}/p.json {c}/text.pt -o {c}/out/q.safetensors", says=("cannot be read",)),
    Row("apply-directory-checkpoint", "apply {c}/p.json {c}/plans -o {c}/out/q.safetensors", says=("directory",)),
    Row("sensitivity-empty-checkpoint", "sensitivity zoo:digits_cnn --checkpoint {c}/empty.pt --batches 1", says=("empty",)),
    Row("sensitivity-truncated-checkpoint", "sensitivity zoo:digits_cnn --checkpoint {c}/truncated.pt --batches 1",
        says=("truncated",)),
    # data
    Row("train-model-data-mismatch", "train --model {c}/wrong.py:build --data digits -o {c}/out/t",
        says=("[[1, 12]]", "[1, 8, 8]", "classes 10")),
    Row("train-cifar-string-labels", "train --model zoo:digits_cnn --data cifar10:{c}/cifar -o {c}/out/t",
        says=("integer class indices",)),
    Row("train-decompression-bomb", "train --model zoo:digits_cnn --data imagefolder:{c}/bomb?size=8 -o {c}/out/t",
        says=("too large",)),
    # outputs the operating system refuses
    Row("plan-output-under-file", "plan zoo:digits_cnn --factor A --strategy U -o {c}/afile/p.json", says=("ENOTDIR",)),
    Row("plan-output-directory", "plan zoo:digits_cnn --factor A --strategy U -o {c}/plans", says=("EISDIR",)),
    Row("profile-output-under-file", "profile zoo:digits_cnn -o {c}/afile/x.json", says=("ENOTDIR",)),
    Row("train-output-under-file", "train -o {c}/afile/run", says=("ENOTDIR",)),
    Row("compare-output-under-file", "compare zoo:digits_cnn --seeds 0 -o {c}/afile/g", says=("ENOTDIR",)),
    Row("apply-output-directory", "apply {c}/p.json {c}/good.pt -o {c}/plans", says=("EISDIR",)),
    Row("export-directory-under-file", "export zoo:digits_cnn --plan {c}/p.json --format compressed-tensors -o {c}/afile/ct",
        says=("afile/ct`:", "is a file, not a folder")),  # the path asked for, not a temporary sibling
    Row("sensitivity-output-under-file", "sensitivity zoo:digits_cnn --batches 1 -o {c}/afile/s.json", says=("ENOTDIR",)),
]


def corpus_digest(folder: Path) -> dict[str, str]:
    """Every file of the corpus (lock files aside, which hold the last holder's PID) -> sha256."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != LOCK_FILE
    }


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_bad_input_is_refused_cleanly(row: Row, corpus: Path) -> None:
    before = corpus_digest(corpus)
    result = runner.invoke(app, [part.replace("{c}", str(corpus)) for part in row.argv.split()])
    output = " ".join(result.output.split())  # rich wraps long paragraphs
    assert result.exit_code == row.code, output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for words in row.says:
        assert words in output, output
    assert corpus_digest(corpus) == before
    assert not (corpus / MARKER).exists(), "a file read by bitplan ran code"
    left = [lock.parent for lock in corpus.rglob(LOCK_FILE) if [path.name for path in lock.parent.iterdir()] == [LOCK_FILE]]
    assert not left, f"a refused command left folders holding only its lock file: {left}"
