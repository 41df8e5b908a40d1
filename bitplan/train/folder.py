"""Run folders that cannot hurt the user: one writer at a time, no silent overwrite, no stale temp files.

``hold_folder`` takes an exclusive ``fcntl.flock`` on ``<folder>/.bitplan.lock`` for a command's
lifetime and writes its PID there; a second process gets ``FolderBusyError`` at once, naming that
PID. The operating system drops the lock when its holder exits, however it dies, so the lock of a
killed process is simply taken over. Holding the lock, no other bitplan process writes the folder,
so temp files left by a killed atomic write (``.NAME.*.tmp``) are removed.

``check_train_folder`` refuses a ``bitplan train`` folder that holds finished results unless the
user says ``resume`` (keep them, continue) or ``overwrite`` (delete bitplan's files, start afresh).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bitplan.errors import BitplanError, TrainingError

LOCK_FILE = ".bitplan.lock"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
FINAL_FILE = "final.json"
CHECKPOINT_FILE = "checkpoint.pt"
SEED_PREFIX = "seed-"
GRID_RESULTS_FILE = "results.json"
"""What marks a ``bitplan compare`` grid folder."""
RUN_FILES = (CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, FINAL_FILE)
"""What ``train_run`` writes in a seed folder (``--overwrite`` deletes exactly these)."""


class FolderBusyError(BitplanError):
    """Another process holds the folder's lock."""


@contextmanager
def hold_folder(folder: Path, command: str) -> Iterator[None]:
    """Hold ``folder``'s lock while the block runs (creating the folder), then release it.

    Args:
        folder: The run or grid folder.
        command: What holds it, for the other process's message (e.g. ``bitplan train``).

    Raises:
        FolderBusyError: Another process holds the lock; the message names its PID.
        OSError: The folder cannot be created or the lock file opened (the CLI reports the path).
    """
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    failed = True
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 64, 0).decode("ascii", errors="replace").strip() or "unknown"
            raise FolderBusyError(
                f"`{folder}` is in use by another bitplan process (PID {holder}); two commands writing one "
                f"folder would mix their results. Wait for it to finish, stop it, or choose another folder for "
                f"{command}."
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
        remove_stale_temps(folder)
        yield
        failed = False
    finally:
        if failed and created and [path.name for path in folder.iterdir()] == [LOCK_FILE]:
            (folder / LOCK_FILE).unlink()  # a command refused before writing leaves no folder behind
            folder.rmdir()
        os.close(descriptor)  # closing releases the lock


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temp files of interrupted atomic writes (``.NAME.XXXX.tmp``) in ``folder`` and below.

    Call only while holding the folder's lock: then no atomic write of another process is under way.

    Returns:
        The files removed.
    """
    removed = []
    for path in folder.rglob(".*.tmp"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def seed_folders(out: Path) -> dict[int, Path]:
    """Seed number -> ``out/seed-<s>`` for every seed folder present."""
    found = {}
    if out.is_dir():
        for path in out.glob(f"{SEED_PREFIX}*"):
            number = path.name[len(SEED_PREFIX):]
            if path.is_dir() and number.isdigit():
                found[int(number)] = path
    return found


def check_train_folder(out: Path, seeds: Sequence[int], *, resume: bool, overwrite: bool) -> None:
    """Refuse to train into ``out`` when that would replace or strand finished results.

    A grid folder (``results.json``) is always refused. Without ``resume`` or ``overwrite``, a folder
    holding ``summary.json`` or any seed's ``final.json`` is refused. With ``resume``, seed folders the new ``seeds`` leave out are refused (the summary
    would no longer describe the folder).

    Raises:
        TrainingError: ``out`` holds finished results the options would replace or leave inconsistent.
    """
    if (out / GRID_RESULTS_FILE).is_file():
        raise TrainingError(
            f"`{out}` is a `bitplan compare` grid folder ({GRID_RESULTS_FILE}); a training run there would mix "
            "with the grid's results. Choose another output folder."
        )
    if overwrite:
        return
    present = seed_folders(out)
    finished = sorted(seed for seed, path in present.items() if (path / FINAL_FILE).is_file())
    if not resume and (finished or (out / SUMMARY_FILE).is_file()):
        raise TrainingError(
            f"`{out}` already holds finished results (seeds {finished or 'in summary.json'}); training again "
            f"would replace them. Pass `--resume` to keep finished seeds and continue the others with the same "
            f"options, `--overwrite` to delete them and start afresh, or choose another output folder."
        )
    stranded = sorted(set(present) - set(seeds))
    if resume and stranded:
        raise TrainingError(
            f"`{out}` holds seed folders {stranded} that `--seeds {','.join(map(str, seeds))}` leaves out, so "
            f"its summary would not describe the folder. Resume with every seed "
            f"(`--seeds {','.join(map(str, sorted(set(present) | set(seeds))))}`), or pass `--overwrite`."
        )


def check_grid_folder(out: Path) -> None:
    """Refuse to write a grid into a ``bitplan train`` run folder (its seeds and summary would mix in).

    Raises:
        TrainingError: ``out`` holds ``summary.json`` or ``seed-<s>`` folders.
    """
    if (out / SUMMARY_FILE).is_file() or seed_folders(out):
        raise TrainingError(
            f"`{out}` is a `bitplan train` run folder (summary.json, seed-*/); a grid there would mix with its "
            "results. Choose another output folder for the grid."
        )


def clear_train_folder(out: Path) -> None:
    """``--overwrite``: delete the files bitplan wrote in ``out`` (summary, seed folders), nothing else.

    A seed folder is removed only when nothing but bitplan's files is left in it.
    """
    (out / SUMMARY_FILE).unlink(missing_ok=True)
    for path in seed_folders(out).values():
        for name in RUN_FILES:
            (path / name).unlink(missing_ok=True)
        remove_stale_temps(path)
        if not any(path.iterdir()):
            path.rmdir()
