"""Runs that cannot hurt the user: locked folders, no silent overwrite, stale temp files, files that run no code.

The two process-level guarantees run real ``python -m bitplan`` processes: a second ``train`` into a
folder another ``train`` holds exits 2 at once naming the holder's PID while the first finishes,
and a rerun into the finished folder exits 2 and changes no byte of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bitplan.cli.app import app
from bitplan.errors import TrainingError
from bitplan.train.folder import (
    LOCK_FILE,
    FolderBusyError,
    check_train_folder,
    clear_train_folder,
    hold_folder,
    remove_stale_temps,
)
from bitplan.trust import names_data, spec_from_file

runner = CliRunner()


def folder_digest(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (the lock file included)."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def bitplan_process(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bitplan", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_lock(folder: Path, pid: int, timeout: float = 60.0) -> None:
    """Until ``pid`` has written itself into the folder's lock file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lock = folder / LOCK_FILE
        if lock.is_file() and lock.read_text().strip() == str(pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never took the lock of {folder}")


@pytest.mark.slow
def test_second_train_exits_at_once_and_a_rerun_changes_nothing(tmp_path):
    out = tmp_path / "run"
    first = bitplan_process("train", "--epochs", "2", "-o", str(out), "--no-progress", "--json")
    try:
        wait_for_lock(out, first.pid)
        began = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "bitplan", "train", "--epochs", "1", "-o", str(out), "--no-progress"],
            capture_output=True, text=True, timeout=120,
        )
        took = time.monotonic() - began
        assert first.poll() is None, "the first training must still be running when the second is refused"
    finally:
        stdout, stderr = first.communicate(timeout=300)
    assert second.returncode == 2, second.stderr
    assert f"PID {first.pid}" in second.stderr and "Traceback" not in second.stderr
    assert took < 30  # interpreter start and imports; it never waits for the lock
    assert first.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["ok"] == 1 and [seed["epochs_done"] for seed in summary["seeds"]] == [2]

    before = folder_digest(out)
    rerun = runner.invoke(app, ["train", "--epochs", "1", "-o", str(out), "--no-progress"])
    assert rerun.exit_code == 2
    assert "--resume" in rerun.output and "--overwrite" in rerun.output and rerun.exception.__class__ is SystemExit
    assert folder_digest(out) == before  # refused before the lock file is even rewritten

    # resuming with other settings is refused too: the finished seed's checkpoint names its settings
    resumed = runner.invoke(app, ["train", "--epochs", "1", "-o", str(out), "--resume", "--no-progress"])
    assert resumed.exit_code == 2 and "other settings" in resumed.output
    # resuming with fewer seeds would leave seed-0 outside the summary
    fewer = runner.invoke(app, ["train", "--epochs", "2", "-o", str(out), "--resume", "--seeds", "1"])
    assert fewer.exit_code == 2 and "seed folders [0]" in fewer.output
    results = {name: digest for name, digest in folder_digest(out).items() if name != LOCK_FILE}
    assert results == {name: digest for name, digest in before.items() if name != LOCK_FILE}


def test_a_live_holder_is_named_and_a_dead_ones_lock_is_taken_over(tmp_path):
    folder = tmp_path / "grid"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from bitplan.train.folder import hold_folder\n"
         "with hold_folder(Path(sys.argv[1]), 'test'):\n    print('held', flush=True); time.sleep(60)",
         str(folder)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusyError, match=f"PID {holder.pid}"):
            with hold_folder(folder, "test"):
                pass
    finally:
        holder.kill()
        holder.wait()
    # the holder died holding the lock (SIGKILL): its PID stays in the file, the lock is free
    assert (folder / LOCK_FILE).read_text().strip() == str(holder.pid)
    with hold_folder(folder, "test"):
        assert (folder / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_stale_temp_files_are_removed_under_the_lock(tmp_path):
    stale = [tmp_path / "seed-0" / ".checkpoint.pt.k2j3.tmp", tmp_path / ".summary.json.x8.tmp"]
    kept = [tmp_path / "seed-0" / "checkpoint.pt", tmp_path / "notes.tmp"]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    with hold_folder(tmp_path, "test"):
        assert all(not path.exists() for path in stale)
        assert all(path.exists() for path in kept)
    assert remove_stale_temps(tmp_path) == []


def test_overwrite_deletes_only_what_bitplan_wrote(tmp_path):
    (tmp_path / "seed-0").mkdir()
    (tmp_path / "seed-3").mkdir()
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "final.json"):
        (tmp_path / "seed-0" / name).write_text("{}")
        (tmp_path / "seed-3" / name).write_text("{}")
    (tmp_path / "seed-0" / "my-notes.txt").write_text("mine")
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "README").write_text("mine")
    with pytest.raises(TrainingError, match="--overwrite"):
        check_train_folder(tmp_path, [0], resume=False, overwrite=False)
    check_train_folder(tmp_path, [0], resume=False, overwrite=True)
    clear_train_folder(tmp_path)
    left = sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*"))
    assert left == ["README", "seed-0", "seed-0/my-notes.txt"]
    check_train_folder(tmp_path, [0, 1], resume=False, overwrite=False)  # nothing finished is left


def test_only_data_specs_from_files_resolve_by_themselves():
    assert all(map(names_data, ["zoo:resnet20", "zoo:mobilenet_v2?width=0.5", "hf:gpt2", "torchvision:resnet18",
                                "models/net.ONNX", "x.onnx?batch=2"]))
    assert not any(map(names_data, ["evil.py:build", "package.module:factory", "zoo:", "zoo", "other:thing"]))
    with pytest.raises(Exception, match="--trust-model-spec") as error:
        spec_from_file("evil.py:build", "plan file `p.json`")
    assert "`--model evil.py:build`" in str(error.value)
    assert spec_from_file("evil.py:build", "plan file `p.json`", trusted=True) == "evil.py:build"


def test_an_evil_plan_runs_no_code_unless_trusted(tmp_path):
    marker = tmp_path / "MARKER"
    evil = tmp_path / "evil.py"
    evil.write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "import torch\ndef build():\n    return torch.nn.Linear(4, 2), (torch.zeros(1, 4),)\n"
    )
    made = runner.invoke(app, ["plan", f"{evil}:build", "--factor", "A", "--strategy", "U", "-o", str(tmp_path / "p.json")])
    assert made.exit_code == 0, made.output  # naming the model on the command line is trusting it
    marker.unlink()
    result = runner.invoke(app, ["check", str(tmp_path / "p.json")])
    assert result.exit_code == 2 and "--trust-model-spec" in result.output
    assert not marker.exists()
    trusted = runner.invoke(app, ["check", str(tmp_path / "p.json"), "--trust-model-spec"])
    assert trusted.exit_code == 0, trusted.output
    assert marker.read_text() == "ran"


def test_the_thread_count_is_part_of_a_grid_runs_key(tmp_path):
    from bitplan.compare import GridConfig
    from bitplan.compare.cells import grid_profile, plan_cells
    from bitplan.compare.runs import plan_runs
    from bitplan.train import TrainConfig

    config = GridConfig(train=TrainConfig(model="zoo:digits_cnn", data="digits"), factors=["A"], strategies=["U"],
                        seeds=[0], out=tmp_path)
    cells = plan_cells(config, grid_profile(config)[0])
    one, two = (plan_runs(config.train, cells, [0], tmp_path, threads=threads)[0] for threads in (1, 2))
    assert (one.config.threads, two.config.threads) == (1, 2)
    assert one.directory != two.directory  # `--jobs 2` on 2 cores (1 thread) never reuses a 2-thread run
    pinned = plan_runs(config.train.model_copy(update={"threads": 3}), cells, [0], tmp_path, threads=1)[0]
    assert pinned.config.threads == 3  # a template that pins its threads keeps them whatever --jobs is


def test_library_apply_never_builds_a_code_spec_from_a_plan(tmp_path):
    from bitplan import apply
    from bitplan.errors import SpecError
    from bitplan.plan import load_plan
    from bitplan.spec import load_model

    marker = tmp_path / "MARKER"
    (tmp_path / "evil.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    made = runner.invoke(app, ["plan", "zoo:digits_cnn", "--factor", "A", "--strategy", "U", "-o", str(tmp_path / "p.json")])
    assert made.exit_code == 0, made.output
    plan = load_plan(tmp_path / "p.json").model_copy(update={"model": f"{tmp_path / 'evil.py'}:build"})
    model = load_model("zoo:digits_cnn").model
    with pytest.raises(SpecError, match="example_inputs"):
        apply(model, plan)  # no example inputs: it would have to build the plan's model
    assert not marker.exists()
