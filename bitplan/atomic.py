"""Atomic file writes: a crash mid-write never leaves a half-written file in place of a good one."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Whatever fails (a full disk, a read-only folder, a parent that is a file, ``path`` being a
    directory, an interrupt), the temp file is removed and ``path`` keeps its old content.

    Raises:
        OSError: The file cannot be written; its ``filename`` is ``path`` (not the temp file), so
            the CLI's message names what the user asked for.

    Example:
        >>> atomic_write("out.bin", lambda f: f.write(b"data"))  # doctest: +SKIP
    """
    target = Path(path)
    tmp: str | None = None
    try:
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
        existing = next(folder for folder in target.parents if folder.exists())
        if not existing.is_dir():  # mkdir would say "File exists", which hides the cause
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file, not a folder", str(target))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; users expect an ordinary file
        os.replace(tmp, target)
    except OSError as error:
        _discard(tmp)
        raise OSError(error.errno, error.strerror or str(error), str(target)) from error
    except BaseException:
        _discard(tmp)
        raise
    return target


def _discard(tmp: str | None) -> None:
    """Remove a temp file of a failed write (it may not exist, or its folder may be unwritable)."""
    if tmp is not None:
        try:
            Path(tmp).unlink(missing_ok=True)
        except OSError:
            pass  # nothing more can be done; the final name was never touched


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_torch_save(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save`` that never leaves a truncated checkpoint behind."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def umask() -> int:
    """The process umask (read without changing it for longer than two calls)."""
    return _umask()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
