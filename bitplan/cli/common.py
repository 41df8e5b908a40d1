"""What every command shares: the error boundary and the output sink (options live in ``cli/options.py``).

A command parses its options, calls one library function, and renders the result with ``emit``.
"""

from __future__ import annotations

import errno
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from bitplan.atomic import atomic_write_text
from bitplan.choices import OutputFormat
from bitplan.errors import BitplanError

if TYPE_CHECKING:  # pydantic is imported by the commands that make results, not for --help
    from pydantic import BaseModel, ValidationError

# Width of results printed to a pipe or a file: wide enough that no table cell is ever cut.
UNLIMITED_WIDTH = 100_000


def result_console() -> Console:
    """The console results print on: a terminal's own width, or no width limit on a pipe or file.

    Rich shrinks tables to 80 columns when stdout is not a terminal and cuts names with "…"
    (`blocks.0.a…` for q, k and v alike); `bitplan ... | grep` must see every name whole.
    """
    detected = Console()
    return detected if detected.is_terminal else Console(width=UNLIMITED_WIDTH)


console = result_console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


class DebugState:
    """Set by the global ``--debug`` flag: show tracebacks instead of one red paragraph."""

    enabled = False


def fail(message: str, code: int = 2) -> None:
    """Print one red paragraph and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if not DebugState.enabled:
        err_console.print("[dim](run with --debug for the full traceback)[/]")
    raise typer.Exit(code)


def guarded(command: F) -> F:
    """Turn known errors into one clear paragraph and an exit code; ``--debug`` re-raises them."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BitplanError as error:
            if DebugState.enabled:
                raise
            fail(str(error), error.exit_code)
        except OSError as error:
            if DebugState.enabled:
                raise
            fail(os_error_message(error))
        except Exception as error:
            if DebugState.enabled or not _is_validation_error(error):
                raise
            fail(validation_message(error))  # a value a library model refused, e.g. a budget of 0 or NaN
        except KeyboardInterrupt:
            fail("interrupted; files written so far are complete (writes are atomic).", 130)

    return wrapper  # type: ignore[return-value]


def _is_validation_error(error: Exception) -> bool:
    """A pydantic ValidationError; pydantic is loaded already whenever one can have been raised."""
    pydantic_core = sys.modules.get("pydantic_core")
    return pydantic_core is not None and isinstance(error, pydantic_core.ValidationError)


_OS_FIXES = {
    errno.ENOENT: "Check the path (and that its folder exists).",
    errno.EACCES: "Check the permissions, or choose another path.",
    errno.EPERM: "Check the permissions, or choose another path.",
    errno.EROFS: "The file system is read-only; choose a path on a writable one.",
    errno.ENOSPC: "Free some space, or choose a path on another file system.",
    errno.EDQUOT: "Free some space within your quota, or choose another path.",
    errno.EISDIR: "Give a file name (e.g. `DIR/out.json`), not a directory.",
    errno.ENOTDIR: "A part of the path is a file, not a folder; choose another path.",
    errno.EEXIST: "A part of the path is a file, not a folder; choose another path.",
}


def validation_message(error: ValidationError) -> str:
    """One paragraph naming every refused field, its value and why.

    Example:
        >>> from pydantic import ValidationError
        >>> from bitplan.plan import Budget
        >>> try:
        ...     Budget(kind="avg_bits", value=0)
        ... except ValidationError as error:
        ...     print(validation_message(error))
        invalid Budget: `value` = 0: Input should be greater than 0. Fix the option or file and run again.
    """
    problems = "; ".join(
        f"`{'.'.join(str(part) for part in item['loc']) or 'value'}` = {item.get('input')!r}: {item['msg']}"
        if not isinstance(item.get("input"), dict)
        else f"`{'.'.join(str(part) for part in item['loc']) or 'options'}`: {item['msg']}"
        for item in error.errors()
    )
    return f"invalid {error.title}: {problems}. Fix the option or file and run again."


def os_error_message(error: OSError) -> str:
    """One paragraph for an error of the operating system: the path, its reason and the fix.

    Example:
        >>> os_error_message(OSError(28, "No space left on device", "out/plan.json"))[:50]
        '`out/plan.json`: No space left on device (ENOSPC).'
    """
    path = error.filename if error.filename is not None else "(unnamed file)"
    name = errno.errorcode.get(error.errno or -1)
    reason = f"{error.strerror or error}" + (f" ({name})" if name else "")
    fix = _OS_FIXES.get(error.errno or -1, "Check the path and try again.")
    return f"`{path}`: {reason}. {fix} bitplan's writes are atomic: no file is left half-written."


def to_json(result: BaseModel | list[BaseModel] | dict) -> str:
    """Serialise a pydantic result (or a list of them) as indented JSON."""
    from pydantic import BaseModel

    if isinstance(result, BaseModel):
        return result.model_dump_json(indent=2)
    if isinstance(result, list):
        return json.dumps([item.model_dump(mode="json") for item in result], indent=2)
    return json.dumps(result, indent=2)


def emit(result: BaseModel | list[BaseModel], tables: list[Any], output_format: OutputFormat) -> None:
    """Print a command's result: its rich tables, or the same tables as CSV/Markdown, or its JSON model."""
    if output_format is OutputFormat.json:
        write_or_print(to_json(result), None)
    elif output_format is OutputFormat.table:
        for table in tables:
            console.print(table)
    else:
        write_or_print("\n".join(table_text(table, output_format) for table in tables), None)


def table_text(table: Any, output_format: OutputFormat) -> str:
    """A rich ``Table`` as CSV or a Markdown table (markup stripped, nothing cut)."""
    import csv
    import io

    from rich.text import Text

    def plain(cell: Any) -> str:
        return Text.from_markup(cell).plain if isinstance(cell, str) else str(getattr(cell, "plain", cell))

    header = [plain(column.header) for column in table.columns]
    rows = [list(row) for row in zip(*[[plain(cell) for cell in column.cells] for column in table.columns])]
    if output_format is OutputFormat.csv:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
        return buffer.getvalue()
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_or_print(text: str, output: Path | None) -> None:
    """Write ``text`` atomically to ``output``, or print it to stdout when no file is given."""
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
    else:
        atomic_write_text(output, text if text.endswith("\n") else text + "\n")
        err_console.print(f"wrote {output}")


def provided(options: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave: an option left unset (None) is dropped, so the library's default applies.

    Defaults live once, in the library; a command passes on only what was typed.

    Example:
        >>> provided({"epochs": 3, "lr": None})
        {'epochs': 3}
    """
    return {key: value for key, value in options.items() if value is not None}
