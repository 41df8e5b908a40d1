"""What every shape rule shares: the rule table, argument reading, empty meta results, broadcasting."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

NOT_HANDLED = object()

Rule = Callable[[Sequence[object], dict], object]
RULES: dict[str, Rule] = {}


def rule(*names: str) -> Callable[[Rule], Rule]:
    """Register the decorated function as the rule of the torch functions ``names`` (bare names)."""

    def register(function: Rule) -> Rule:
        for name in names:
            RULES[name] = function
        return function

    return register


def arg(args: Sequence[object], kwargs: dict, index: int, name: str, default: object = None) -> object:
    """Argument ``name``, given by keyword or at position ``index``, else ``default``."""
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def empty(shape: Sequence[int], dtype: torch.dtype, like: torch.Tensor | None = None) -> torch.Tensor:
    """A meta tensor of ``shape``; with ``like``'s strides when it has that shape and is dense
    (elementwise outputs keep a permuted or channels-last layout, as torch's do)."""
    shape = tuple(int(s) for s in shape)
    if like is not None and tuple(like.shape) == shape and dense(like):
        return torch.empty_strided(shape, like.stride(), dtype=dtype, device="meta")
    return torch.empty(shape, dtype=dtype, device="meta")


def dense(tensor: torch.Tensor) -> bool:
    """Whether ``tensor``'s elements fill its memory exactly once, in some order of its dims (not expanded)."""
    expected = 1
    for size, stride in sorted(zip(tensor.shape, tensor.stride()), key=lambda pair: pair[1]):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def shape_of(value: object) -> tuple[int, ...]:
    """A tensor's shape; () for a Python number."""
    return tuple(value.shape) if isinstance(value, torch.Tensor) else ()


def broadcast(*shapes: Sequence[int]) -> tuple[int, ...] | None:
    """numpy broadcasting of ``shapes``; None when they do not broadcast (the real kernel then raises)."""
    rank = max((len(s) for s in shapes), default=0)
    out = [1] * rank
    for shape in shapes:
        for i, size in enumerate(shape, start=rank - len(shape)):
            if size != 1:
                if out[i] not in (1, size):
                    return None
                out[i] = size
    return tuple(out)


def per_dim(value: object, spatial: int) -> list[int]:
    """A per-dimension option (stride, padding, ...) given as an int or a sequence, for ``spatial`` dims."""
    values = [value] if isinstance(value, int) else list(value)
    return values * spatial if len(values) == 1 else values


def dims_fit(rank: int, dims: object, unique: bool = False) -> bool:
    """``dims`` (an int or a sequence of ints) name dims of a rank-``rank`` tensor, negative ones
    counted from the end, as torch wraps them (a 0-d tensor takes −1 and 0); each once, if ``unique``."""
    dims = [dims] if type(dims) is int else list(dims) if isinstance(dims, (list, tuple)) else None
    rank = max(rank, 1)
    if dims is None or not all(type(d) is int and -rank <= d < rank for d in dims):
        return False
    return not unique or len({d % rank for d in dims}) == len(dims)
