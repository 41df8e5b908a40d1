"""Writing an export's directory all at once: into a temporary sibling, renamed into place when complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bitplan.atomic import umask
from bitplan.errors import ExportError


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` when the block ends without an error.

    Raises:
        ExportError: ``path`` exists and is not an empty directory (nothing is overwritten).
        OSError: The directory cannot be written; its ``filename`` is ``path``, never the temporary
            sibling, so messages name what the user asked for.
    """
    target = Path(path)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ExportError(f"`{target}` already exists and is not an empty directory; remove it or choose another -o.")
    temporary: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        yield temporary
        _ordinary_permissions(temporary)
        if target.exists():
            target.rmdir()
        os.replace(temporary, target)
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), str(target)) from error
    finally:
        if temporary is not None and temporary.exists():
            shutil.rmtree(temporary)


def _ordinary_permissions(directory: Path) -> None:
    """mkdtemp makes 0700: give the tree the modes the umask gives any new folder and file, so a server
    running as another user reads the export as it would a copied one."""
    mask = umask()
    for path in [directory, *directory.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
