"""Rich progress for training (epochs, batches, loss, ETA) on stderr, so ``--json`` keeps stdout clean."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainingProgress:
    """Two bars, epochs and the current epoch's batches; a no-op when disabled (other ranks, tests)."""

    def __init__(self, *, enabled: bool, title: str, epochs: int, start_epoch: int, batches: int) -> None:
        self._progress: Progress | None = None
        self._batches = batches
        if not enabled:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._epoch_task = self._progress.add_task(title, total=epochs, completed=start_epoch, status="")
        self._batch_task = self._progress.add_task("batches", total=batches, status="")

    def __enter__(self) -> TrainingProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start_epoch(self, epoch: int) -> None:
        """Reset the batch bar for 1-based ``epoch``."""
        if self._progress is not None:
            self._progress.reset(self._batch_task, total=self._batches, description=f"epoch {epoch}", status="")

    def batch(self, loss: float) -> None:
        """One batch done, with its loss."""
        if self._progress is not None:
            self._progress.update(self._batch_task, advance=1, status=f"loss {loss:.4f}")

    def end_epoch(self, summary: str) -> None:
        """One epoch done; ``summary`` shows its test metric."""
        if self._progress is not None:
            self._progress.update(self._epoch_task, advance=1, status=summary)
