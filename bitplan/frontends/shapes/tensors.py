"""Whole-tensor ops: reductions, joining, and factories (what a model builds on meta)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from bitplan.frontends.shapes.registry import NOT_HANDLED, RULES, Rule, arg, dims_fit, empty, rule


# ---------------------------------------------------------------------------------- reductions
@rule("mean", "sum", "amax", "amin")
def _reduction(args: Sequence[object], kwargs: dict) -> object:
    """mean/sum/amax/amin(input, dim=None, keepdim=False) of a floating input (``dtype=`` honoured)."""
    x = args[0]
    dim, keepdim = arg(args, kwargs, 1, "dim"), bool(arg(args, kwargs, 2, "keepdim", False))
    if not x.dtype.is_floating_point or set(kwargs) - {"dim", "keepdim", "dtype"}:
        return NOT_HANDLED
    dims = list(range(x.dim())) if dim is None or dim == [] or dim == () else [dim] if type(dim) is int else list(dim)
    if not dims_fit(x.dim(), dims, unique=True):
        return NOT_HANDLED  # a dimension out of range or named twice: torch raises
    reduced = {d % max(x.dim(), 1) for d in dims}
    shape = [1 if i in reduced else size for i, size in enumerate(x.shape) if keepdim or i not in reduced]
    return empty(shape, kwargs.get("dtype") or x.dtype)


# ------------------------------------------------------------------------------------- joining
@rule("cat", "concat", "concatenate")
def _cat(args: Sequence[object], kwargs: dict) -> object:
    """cat(tensors, dim): sizes add along ``dim``; 1-D empty tensors are skipped, as torch does."""
    tensors = [t for t in arg(args, kwargs, 0, "tensors") if not (t.dim() == 1 and t.shape[0] == 0)]
    if not tensors:
        return NOT_HANDLED
    rank, dim = tensors[0].dim(), arg(args, kwargs, 1, "dim", kwargs.get("axis", 0))
    if not dims_fit(rank, dim):
        return NOT_HANDLED
    dim %= max(rank, 1)
    if any(t.dim() != rank or t.shape[:dim] != tensors[0].shape[:dim] or t.shape[dim + 1 :] != tensors[0].shape[dim + 1 :] for t in tensors):
        return NOT_HANDLED
    shape = list(tensors[0].shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return empty(shape, _promoted(tensors))


@rule("stack")
def _stack(args: Sequence[object], kwargs: dict) -> object:
    """stack(tensors, dim): a new dimension of size len(tensors) at ``dim``."""
    tensors, dim = list(arg(args, kwargs, 0, "tensors")), arg(args, kwargs, 1, "dim", 0)
    if not tensors or any(t.shape != tensors[0].shape for t in tensors) or not dims_fit(tensors[0].dim() + 1, dim):
        return NOT_HANDLED
    shape = list(tensors[0].shape)
    shape.insert(dim % (len(shape) + 1), len(tensors))
    return empty(shape, _promoted(tensors))


def _promoted(tensors: Sequence[torch.Tensor]) -> torch.dtype:
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


@rule("outer", "ger")
def _outer(args: Sequence[object], kwargs: dict) -> object:
    a, b = args[0], arg(args, kwargs, 1, "vec2")
    if a.dim() != 1 or b.dim() != 1:
        return NOT_HANDLED
    return empty((a.shape[0], b.shape[0]), torch.promote_types(a.dtype, b.dtype))


# ----------------------------------------------------------------------------------- factories
_FACTORY_OPTIONS = frozenset({"dtype", "device", "layout", "requires_grad", "generator", "pin_memory", "memory_format"})


def _made(
    size: object, kwargs: dict, dtype: torch.dtype, *, used: tuple[str, ...] = (), like: torch.Tensor | None = None,
    random: bool = False,
) -> object:
    """The tensor a factory makes on meta, or NOT_HANDLED for options or devices left to torch.

    Args:
        size: Its shape.
        kwargs: The call's keyword arguments; ``used`` names those the rule already read.
        dtype: Its dtype unless ``dtype=`` is given.
        like: The input of a ``*_like`` factory, whose layout it keeps.
        random: Random values, which torch draws in floating-point dtypes only.
    """
    options = {key: value for key, value in kwargs.items() if key not in used}
    dtype = options.get("dtype") or dtype
    keeps_layout = options.get("memory_format") in (None, torch.preserve_format if like is not None else None)
    if not _FACTORY_OPTIONS.issuperset(options) or options.get("layout") not in (None, torch.strided) or not keeps_layout:
        return NOT_HANDLED
    if options.get("pin_memory") or (random and not dtype.is_floating_point):
        return NOT_HANDLED
    device = options.get("device")
    if device is not None and torch.device(device).type != "meta":  # the builder asks under torch.device("meta")
        return NOT_HANDLED
    size = tuple(size)
    if not all(type(s) is int and s >= 0 for s in size):
        return NOT_HANDLED
    return empty(size, dtype, like).requires_grad_(bool(options.get("requires_grad")))


def _size_from(args: Sequence[object], kwargs: dict) -> object:
    """A factory's size: ``f(2, 3)``, ``f((2, 3))`` or ``f(size=(2, 3))``."""
    if "size" in kwargs:
        return kwargs["size"]
    return args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args


def _filled_rule(random: bool) -> Rule:
    def filled(args: Sequence[object], kwargs: dict) -> object:
        return _made(_size_from(args, kwargs), kwargs, torch.get_default_dtype(), used=("size",), random=random)

    return filled


RULES.update({name: _filled_rule(random=False) for name in ("zeros", "ones", "empty")})
RULES.update({name: _filled_rule(random=True) for name in ("rand", "randn")})


@rule("randint")
def _randint(args: Sequence[object], kwargs: dict) -> object:
    """randint(high, size) or randint(low, high, size): int64 unless ``dtype`` says otherwise."""
    bounds = [a for a in args if type(a) is int]
    rest = args[len(bounds):]
    size = kwargs.get("size", rest[0] if len(rest) == 1 else None)
    if size is None or not 1 <= len(bounds) + ("high" in kwargs) + ("low" in kwargs) <= 2:
        return NOT_HANDLED
    return _made(size, kwargs, torch.int64, used=("size", "low", "high"))


@rule("full")
def _full(args: Sequence[object], kwargs: dict) -> object:
    """full(size, fill_value): the fill value's type decides the dtype (bool, int64 or the default)."""
    size, fill = arg(args, kwargs, 0, "size"), arg(args, kwargs, 1, "fill_value")
    if not isinstance(fill, (bool, int, float)) or size is None:
        return NOT_HANDLED
    dtype = torch.bool if isinstance(fill, bool) else torch.int64 if isinstance(fill, int) else torch.get_default_dtype()
    return _made(size, kwargs, dtype, used=("size", "fill_value"))


@rule("arange")
def _arange(args: Sequence[object], kwargs: dict) -> object:
    """arange(end) or arange(start, end[, step]), positional: ceil((end − start) / step) values."""
    if not 1 <= len(args) <= 3 or not all(type(v) in (int, float) for v in args):
        return NOT_HANDLED
    start, end, step = (0, args[0], 1) if len(args) == 1 else (*args, 1)[:3]
    if step == 0 or (end - start) * step < 0:
        return NOT_HANDLED
    dtype = torch.int64 if all(type(v) is int for v in args) else torch.get_default_dtype()
    return _made((math.ceil((end - start) / step),), kwargs, dtype)


def _like_rule(random: bool) -> Rule:
    """*_like(input[, fill_value]): the input's shape and layout, its dtype unless ``dtype`` is given."""

    def like(args: Sequence[object], kwargs: dict) -> object:
        x = args[0]
        return NOT_HANDLED if len(args) > 2 else _made(x.shape, kwargs, x.dtype, used=("fill_value",), like=x, random=random)

    return like


RULES.update({name: _like_rule(random=False) for name in ("zeros_like", "ones_like", "empty_like", "full_like")})
RULES.update({name: _like_rule(random=True) for name in ("rand_like", "randn_like")})


@rule("pad")
def _pad(args: Sequence[object], kwargs: dict) -> object:
    """F.pad(input, pad, mode="constant"): (left, right) pairs grow the last dims, last dim first."""
    x, pad = args[0], list(arg(args, kwargs, 1, "pad"))
    if arg(args, kwargs, 2, "mode", "constant") != "constant" or len(pad) % 2 or len(pad) // 2 > x.dim():
        return NOT_HANDLED
    if not all(type(p) is int and p >= 0 for p in pad):
        return NOT_HANDLED  # cropping (negative pads): left to torch
    shape = list(x.shape)
    for i in range(len(pad) // 2):
        shape[-1 - i] += pad[2 * i] + pad[2 * i + 1]
    return empty(shape, x.dtype)
