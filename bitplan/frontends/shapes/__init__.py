"""Output shapes of common torch calls, computed in Python, so tracing on meta runs no meta kernel.

Why: on the meta device most ops (``add``, ``relu``, ``conv2d``, ``batch_norm``, ``randn``, ...) run
torch's Python reference kernels, which import ``torch._dynamo`` and sympy on first use — about
1.2 s of a 2-core machine, more than the whole profile. The recorder and the meta model builder ask
``fake_call`` first: for the ops of the rule modules (``elementwise``, ``layers``, ``tensors``) it
returns fresh meta tensors of the right shape and dtype,
made with ``torch.empty_strided`` (a C++ kernel); for anything else it returns ``NOT_HANDLED`` and
the caller runs the real meta kernel. The rules follow torch's own shape functions (broadcasting,
type promotion, convolution and pooling sizes); ``tests/test_shapes.py`` checks each one against the
real meta kernels, and every zoo model's profile against a trace that runs them.

Strides are contiguous, or those of a dense input of the output's shape (elementwise ops), so a model
that relies on an unusual memory layout may fail here: the recorder then traces again without
this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from bitplan.frontends.shapes import elementwise, layers, tensors  # noqa: F401  (importing registers the rules)
from bitplan.frontends.shapes.registry import NOT_HANDLED, RULES, broadcast

__all__ = ["NOT_HANDLED", "RULES", "broadcast", "call_on_meta", "fake_call"]


def fake_call(name: str, args: Sequence[object], kwargs: dict) -> object:
    """The result of calling the torch function ``name`` on meta tensors, or ``NOT_HANDLED``.

    Only calls whose tensor arguments are all on the meta device, without ``out=``, are handled;
    a call whose arguments a rule cannot read (``F.linear(input=x, weight=w)``) is left to torch.
    """
    rule = RULES.get(name)
    if rule is None or "out" in kwargs:
        return NOT_HANDLED
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    tensors += [t for a in args if isinstance(a, (list, tuple)) for t in a if isinstance(t, torch.Tensor)]
    if any(t.device.type != "meta" for t in tensors):
        return NOT_HANDLED
    try:
        return rule(args, kwargs)
    except (IndexError, KeyError, TypeError, AttributeError, ValueError):  # a call spelled as no rule reads it
        return NOT_HANDLED


def call_on_meta(name: str, func: Callable, args: Sequence[object], kwargs: dict) -> object:
    """``func(*args, **kwargs)``: the rule's result when there is one, else torch's (its meta kernel)."""
    out = fake_call(name, args, kwargs)
    return func(*args, **kwargs) if out is NOT_HANDLED else out
