"""Reading torch files safely: tensors and plain data only, with one clear error for any file that cannot be used.

Shared by training (resume), export (``--checkpoint``) and sensitivity (``--checkpoint``).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from bitplan.errors import TrainingError

WEIGHTS_ONLY_REFUSAL = "Unsupported global"
"""What ``torch.load(weights_only=True)`` says when a pickle would construct an object it does not allow."""


def read_torch_file(path: str | Path, fix: str, map_location: torch.device | str = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with one clear error for a file that cannot be used.

    Only tensors, numbers, strings and containers of them load: a pickle that would construct other
    objects (and could run code) is refused, and the message says so without suggesting to lift the
    restriction.

    Args:
        path: The checkpoint file.
        fix: What the user should do instead, ending the message.
        map_location: Where tensors go.

    Raises:
        TrainingError: The file is missing, a directory, empty, truncated, not a torch file, or
            holds objects other than tensors and plain data.
    """
    file = Path(path)
    if not file.is_file():
        state = "is a directory" if file.is_dir() else "does not exist"
        raise TrainingError(f"checkpoint `{file}` {state}; {fix}")
    if file.stat().st_size == 0:
        raise TrainingError(f"checkpoint `{file}` is empty (0 bytes), e.g. from an interrupted copy; {fix}")
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if WEIGHTS_ONLY_REFUSAL in str(error):  # an object was refused; torch's advice to lift that is not repeated
            raise TrainingError(
                f"checkpoint `{file}` holds Python objects other than tensors, numbers and strings; bitplan "
                f"refuses to load them because unpickling them could run code. {fix[0].upper()}{fix[1:]}"
            ) from None
        raise TrainingError(f"checkpoint `{file}` cannot be read (it is not a torch checkpoint); {fix}") from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, TypeError, AttributeError) as error:
        reason = "truncated" if isinstance(error, EOFError) or "zip archive" in str(error) else "not a torch checkpoint"
        raise TrainingError(f"checkpoint `{file}` cannot be read (it is {reason}: {type(error).__name__}); {fix}") from None


MISMATCH_CHARS = 600
"""Longest part of a ``load_state_dict`` error quoted in a message: the keys, without a page of them."""


def state_dict_mismatch(error: RuntimeError) -> str:
    """What ``load_state_dict`` said, on one line: its first line names no key, the missing,
    unexpected and wrongly shaped keys follow it, so a message quoting only that line hides the cause."""
    text = " ".join(str(error).split()).removeprefix("Error(s) in loading state_dict for ").strip()
    return text if len(text) <= MISMATCH_CHARS else text[: MISMATCH_CHARS - 1] + "…"
