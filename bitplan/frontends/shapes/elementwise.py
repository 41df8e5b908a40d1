"""Elementwise ops: activations, arithmetic with broadcasting and type promotion, softmax."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bitplan.frontends.shapes.registry import NOT_HANDLED, RULES, Rule, arg, broadcast, dims_fit, empty, rule, shape_of


# ----------------------------------------------------------------------------------- elementwise
# In-place flag of functionals that take one: its position among the arguments.
_INPLACE_POSITION = {
    "relu": 1, "relu6": 1, "silu": 1, "mish": 1, "hardswish": 1, "hardsigmoid": 1, "selu": 1,
    "elu": 2, "celu": 2, "leaky_relu": 2, "hardtanh": 3, "dropout": 3, "alpha_dropout": 3,
    "feature_alpha_dropout": 3,
}
_UNARY = (
    "sigmoid", "tanh", "softplus", "neg", "__neg__", "negative", "exp", "log", "sqrt", "rsqrt", "abs",
    "sin", "cos", "erf", "reciprocal", "square", "logsigmoid", "tanhshrink",
)
_UNARY_INPLACE = ("relu_", "neg_", "exp_", "sigmoid_", "tanh_", "sqrt_", "rsqrt_", "abs_")


def same_as_input(args: Sequence[object], kwargs: dict, inplace: bool = False) -> object:
    """An elementwise op of a floating-point input (integer inputs may change dtype: left to torch)."""
    x = args[0] if args else kwargs.get("input")
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        return NOT_HANDLED
    return x if inplace else empty(x.shape, x.dtype, x)


def _with_inplace_flag(name: str, position: int) -> Rule:
    def rule(args: Sequence[object], kwargs: dict) -> object:
        if "dropout" in name and not 0 <= arg(args, kwargs, 1, "p", 0.5) <= 1:
            return NOT_HANDLED  # torch refuses a probability outside [0, 1]
        return same_as_input(args, kwargs, bool(arg(args, kwargs, position, "inplace", False)))

    return rule


@rule("gelu")
def _gelu(args: Sequence[object], kwargs: dict) -> object:
    known = arg(args, kwargs, 1, "approximate", "none") in ("none", "tanh")
    return same_as_input(args, kwargs) if known else NOT_HANDLED


RULES.update({name: same_as_input for name in _UNARY})
RULES.update({name: _with_inplace_flag(name, position) for name, position in _INPLACE_POSITION.items()})
RULES.update({name: (lambda args, kwargs: same_as_input(args, kwargs, inplace=True)) for name in _UNARY_INPLACE})


@rule("softmax", "log_softmax")
def _softmax(args: Sequence[object], kwargs: dict) -> object:
    """softmax(input, dim, dtype=None): the input's shape, in ``dtype`` when one is given."""
    dim = arg(args, kwargs, 1, "dim")
    if len(args) > 2 or type(dim) is not int or not dims_fit(args[0].dim(), dim):  # dtype: keyword only
        return NOT_HANDLED  # (F.softmax and torch.softmax place it differently)
    out = same_as_input(args, kwargs)
    dtype = kwargs.get("dtype")
    return out if dtype is None or out is NOT_HANDLED else empty(out.shape, dtype, out)


_BINARY = {
    # name: (swap operands for promotion, true division, in place)
    "add": (False, False, False), "__add__": (False, False, False), "__radd__": (True, False, False),
    "sub": (False, False, False), "__sub__": (False, False, False), "__rsub__": (True, False, False),
    "mul": (False, False, False), "__mul__": (False, False, False), "__rmul__": (True, False, False),
    "div": (False, True, False), "true_divide": (False, True, False), "__truediv__": (False, True, False),
    "__rtruediv__": (True, True, False), "__div__": (False, True, False), "__rdiv__": (True, True, False),
    "pow": (False, False, False), "__pow__": (False, False, False), "__rpow__": (True, False, False),
    "maximum": (False, False, False), "minimum": (False, False, False),
    "add_": (False, False, True), "__iadd__": (False, False, True), "sub_": (False, False, True),
    "__isub__": (False, False, True), "mul_": (False, False, True), "__imul__": (False, False, True),
    "div_": (False, True, True), "__itruediv__": (False, True, True),
}


def _defined(name: str, dtype: torch.dtype, other: object) -> bool:
    """Whether torch defines the op for these operands (it refuses bool subtraction and bool powers,
    integer powers with a negative integer exponent, and a scalar operand of maximum/minimum)."""
    if dtype == torch.bool and ("sub" in name or "pow" in name):
        return False
    if "pow" in name and not dtype.is_floating_point and type(other) is int and other < 0:
        return False
    return isinstance(other, torch.Tensor) or name not in ("maximum", "minimum")


def _operands(args: Sequence[object], kwargs: dict) -> tuple[torch.Tensor, object, tuple[int, ...]] | None:
    """A binary op's two positional operands (a tensor, then a tensor or a Python number) and their
    broadcast shape; None for keyword operands or options (alpha=, rounding_mode=: left to torch)."""
    if len(args) != 2 or kwargs:
        return None
    a, b = args
    if not isinstance(a, torch.Tensor) or not isinstance(b, (torch.Tensor, bool, int, float)):
        return None
    shape = broadcast(shape_of(a), shape_of(b))
    return None if shape is None else (a, b, shape)


def _binary_rule(name: str, swap: bool, true_division: bool, inplace: bool) -> Rule:
    def rule(args: Sequence[object], kwargs: dict) -> object:
        operands = _operands(args, kwargs)
        if operands is None:
            return NOT_HANDLED
        a, b, shape = operands
        dtype = torch.result_type(*((b, a) if swap else (a, b)))
        if true_division and not (dtype.is_floating_point or dtype.is_complex):
            dtype = torch.get_default_dtype()
        if not _defined(name, dtype, b):
            return NOT_HANDLED
        if inplace:
            fits = tuple(a.shape) == shape and torch.can_cast(dtype, a.dtype)
            return a if fits else NOT_HANDLED
        like = next((v for v in (a, b) if isinstance(v, torch.Tensor) and tuple(v.shape) == shape), None)
        return empty(shape, dtype, like)

    return rule


RULES.update({name: _binary_rule(name, *flags) for name, flags in _BINARY.items()})


# ------------------------------------------------------------------------- masks and comparisons
_COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__")


@rule(*_COMPARISONS)
def _comparison(args: Sequence[object], kwargs: dict) -> object:
    """A comparison: the broadcast shape, bool (complex operands, which do not order: left to torch)."""
    operands = _operands(args, kwargs)
    if operands is None or operands[0].dtype.is_complex:
        return NOT_HANDLED
    return empty(operands[2], torch.bool)


def _unary_only(args: Sequence[object], kwargs: dict) -> torch.Tensor | None:
    return args[0] if len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor) else None


@rule("logical_not")
def _logical_not(args: Sequence[object], kwargs: dict) -> object:
    x = _unary_only(args, kwargs)
    return NOT_HANDLED if x is None else empty(x.shape, torch.bool, x)


@rule("__invert__", "bitwise_not")
def _bitwise_not(args: Sequence[object], kwargs: dict) -> object:
    """``~x`` keeps a bool or integer dtype (torch refuses floating-point tensors)."""
    x = _unary_only(args, kwargs)
    if x is None or x.dtype.is_floating_point or x.dtype.is_complex:
        return NOT_HANDLED
    return empty(x.shape, x.dtype, x)


def _masked_fill_rule(inplace: bool) -> Rule:
    """masked_fill(input, mask, value): the input's shape and dtype; the bool mask broadcasts to it."""

    def masked_fill(args: Sequence[object], kwargs: dict) -> object:
        x, mask, value = args[0], arg(args, kwargs, 1, "mask"), arg(args, kwargs, 2, "value")
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or broadcast(x.shape, mask.shape) != tuple(x.shape):
            return NOT_HANDLED
        if not isinstance(value, (bool, int, float)) or (isinstance(value, float) and not x.dtype.is_floating_point):
            return NOT_HANDLED  # a tensor value, or a float into an integer tensor: left to torch
        return x if inplace else empty(x.shape, x.dtype, x)

    return masked_fill


RULES.update({"masked_fill": _masked_fill_rule(inplace=False), "masked_fill_": _masked_fill_rule(inplace=True)})


@rule("where")
def _where(args: Sequence[object], kwargs: dict) -> object:
    """where(condition, x, y): the three shapes broadcast; x and y promote (not both Python numbers)."""
    if len(args) != 3 or kwargs:
        return NOT_HANDLED
    condition, x, y = args
    if not isinstance(condition, torch.Tensor) or condition.dtype != torch.bool:
        return NOT_HANDLED
    if not any(isinstance(v, torch.Tensor) for v in (x, y)) or not all(isinstance(v, (torch.Tensor, bool, int, float)) for v in (x, y)):
        return NOT_HANDLED
    shape = broadcast(condition.shape, shape_of(x), shape_of(y))
    return NOT_HANDLED if shape is None else empty(shape, torch.result_type(x, y))


@rule("triu", "tril")
def _triangle(args: Sequence[object], kwargs: dict) -> object:
    """triu/tril(input, diagonal): the input's shape and dtype; at least 2-D."""
    x = args[0]
    return empty(x.shape, x.dtype, x) if x.dim() >= 2 else NOT_HANDLED


@rule("clamp", "clip", "clamp_min", "clamp_max")
def _clamp(args: Sequence[object], kwargs: dict) -> object:
    """clamp(input, min, max) of a floating input with number bounds (tensor bounds: left to torch)."""
    x = args[0]
    bounds = [v for v in (*args[1:], *kwargs.values()) if v is not None]
    return _kept(x, bool(bounds) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bounds))


def _kept(x: torch.Tensor, ok: bool) -> object:
    """A floating input's shape and dtype, when the call's options fit."""
    return same_as_input((x,), {}) if ok else NOT_HANDLED


@rule("flip")
def _flip(args: Sequence[object], kwargs: dict) -> object:
    return _kept(args[0], dims_fit(args[0].dim(), arg(args, kwargs, 1, "dims"), unique=True))


@rule("roll")
def _roll(args: Sequence[object], kwargs: dict) -> object:
    """roll(input, shifts, dims=None): shifts and dims pair up; without dims, one shift of the flat tensor."""
    x, shifts, dims = args[0], arg(args, kwargs, 1, "shifts"), arg(args, kwargs, 2, "dims")
    shifts = [shifts] if type(shifts) is int else list(shifts)
    if dims is None:
        return _kept(x, len(shifts) == 1 and all(type(s) is int for s in shifts))
    count = 1 if type(dims) is int else len(dims)
    return _kept(x, dims_fit(x.dim(), dims) and count == len(shifts) and all(type(s) is int for s in shifts))


@rule("cumsum")
def _cumsum(args: Sequence[object], kwargs: dict) -> object:
    return _kept(args[0], not set(kwargs) - {"dim"} and len(args) <= 2 and dims_fit(args[0].dim(), arg(args, kwargs, 1, "dim")))


@rule("normalize")
def _normalize(args: Sequence[object], kwargs: dict) -> object:
    """F.normalize(input, p, dim, eps): the input's shape and dtype."""
    return _kept(args[0], "out" not in kwargs and dims_fit(args[0].dim(), arg(args, kwargs, 2, "dim", 1)))
