"""Output paths the operating system refuses: exit 2, one paragraph with the path and the reason, no temp file.

Read-only and full file systems are real tmpfs mounts when this process may mount (root in a
container usually may); as root ``chmod`` does not stop writes, so without mounting the read-only
case skips with that reason and a full disk is simulated by making ``fsync`` fail with ENOSPC.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bitplan.atomic import atomic_write_text
from bitplan.cli.app import app

runner = CliRunner()
PLAN = ["plan", "zoo:digits_cnn", "--factor", "A", "--strategy", "C-"]


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob(".*.tmp"))


def assert_clean_refusal(result, path: Path) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert str(path) in " ".join(result.output.split())  # rich may wrap the paragraph


@contextmanager
def tmpfs(where: Path, *options: str) -> Iterator[Path]:
    """A real tmpfs at ``where`` (64 KiB); skips when this process may not mount."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(("size=64k", *options)), "tmpfs", str(where)],
        capture_output=True, text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not permitted'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_output_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "plan.json"
    result = runner.invoke(app, [*PLAN, "-o", str(target)])
    assert_clean_refusal(result, target)
    assert "ENOTDIR" in result.output and leftovers(tmp_path) == []


def test_output_that_is_a_directory(tmp_path):
    result = runner.invoke(app, [*PLAN, "-o", str(tmp_path)])
    assert_clean_refusal(result, tmp_path)
    assert "EISDIR" in result.output and leftovers(tmp_path) == []


def test_train_and_compare_folders_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    for command in (["train", "--epochs", "1"], ["compare", "zoo:digits_cnn", "--epochs", "1", "--seeds", "0"]):
        result = runner.invoke(app, [*command, "-o", str(tmp_path / "file" / "run")])
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
        assert "ENOTDIR" in result.output
    assert (tmp_path / "file").read_text() == "x"


def test_read_only_file_system(tmp_path):
    if os.geteuid() != 0:  # without root, permissions are enough to refuse writes
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        try:
            result = runner.invoke(app, [*PLAN, "-o", str(folder / "plan.json")])
        finally:
            folder.chmod(0o755)
        assert_clean_refusal(result, folder / "plan.json")
        return
    with tmpfs(tmp_path / "ro", "ro") as mount:  # root ignores chmod, so only a read-only mount refuses
        target = mount / "plan.json"
        result = runner.invoke(app, [*PLAN, "-o", str(target)])
        assert_clean_refusal(result, target)
        assert "EROFS" in result.output and not target.exists()


def fill(folder: Path) -> None:
    """Write zeros into ``folder/filler`` until the file system is full."""
    with open(folder / "filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 1024)
        except OSError as error:
            assert error.errno == errno.ENOSPC


def assert_full_disk_refused(target: Path, old: str) -> None:
    result = runner.invoke(app, [*PLAN, "-o", str(target)])
    assert_clean_refusal(result, target)
    assert "ENOSPC" in result.output
    assert target.read_text() == old  # the final name keeps its complete old content
    assert leftovers(target.parent) == []


def test_full_tmpfs_keeps_the_old_file(tmp_path):
    with tmpfs(tmp_path / "full") as mount:
        target = mount / "plan.json"
        target.write_text('{"old": true}\n')
        fill(mount)  # the plan (several KiB) cannot fit in what is left
        assert_full_disk_refused(target, '{"old": true}\n')


def test_disk_full_in_the_final_flush(tmp_path, monkeypatch):
    """The same without a mount: the write's fsync fails with ENOSPC, as a full disk makes it."""

    def no_space(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    target = tmp_path / "plan.json"
    target.write_text('{"old": true}\n')
    monkeypatch.setattr("bitplan.atomic.os.fsync", no_space)
    assert_full_disk_refused(target, '{"old": true}\n')
