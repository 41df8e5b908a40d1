"""The fast tracer: run the model once on meta tensors and record every torch-level call.

A ``TorchFunctionMode`` sees each call (``F.linear``, ``torch.conv2d``, ``x @ w``,
``F.scaled_dot_product_attention``, ``_VF.lstm``, ...) with its arguments, including functional
calls that module hooks never see; global module hooks give the module path. Parameters and
inputs are replaced by meta tensors of the same shape, so no weight or activation memory is used.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map  # public-in-practice pytree helpers used across torch

from bitplan.frontends.builder import ProfileBuilder
from bitplan.frontends.ops import OPS, TensorRef
from bitplan.frontends.shapes import call_on_meta
from bitplan.frontends.torch_calls import meta_like, op_name_of, record_call


# Python-level torch functions that perform GEMMs internally; while the recorder handles a call the
# mode is switched off, so their inner GEMMs would go unseen. torch.export sees through them.
COMPOSITES = frozenset({"multi_head_attention_forward"})


class _ModuleStack:
    """Tracks the path of the module currently running, through global forward hooks."""

    def __init__(self, model: nn.Module) -> None:
        self._paths = {}
        for path, module in model.named_modules(remove_duplicate=False):
            self._paths.setdefault(id(module), path)
        self.stack: list[str] = []

    def __enter__(self) -> _ModuleStack:
        register = nn.modules.module
        self._handles = [
            register.register_module_forward_pre_hook(self._push),
            register.register_module_forward_hook(self._pop),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()

    def _push(self, module: nn.Module, args: Any) -> None:
        self.stack.append(self._paths.get(id(module), self.current))

    def _pop(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.stack:
            self.stack.pop()

    @property
    def current(self) -> str:
        return self.stack[-1] if self.stack else ""


class _Recorder(TorchFunctionMode):
    def __init__(
        self, builder: ProfileBuilder, modules: _ModuleStack, known: dict[int, TensorRef], fake_shapes: bool
    ) -> None:
        super().__init__()
        self.builder = builder
        self.fake_shapes = fake_shapes
        self.modules = modules
        # id(tensor) -> what it carries (shape left empty); tensors are kept alive so ids are never reused
        self.known = known
        self.alive: list[torch.Tensor] = []

    def _ref(self, value: object) -> object:
        if isinstance(value, torch.Tensor):
            return replace(self.known.get(id(value), TensorRef(())), shape=tuple(value.shape))
        return value

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = op_name_of(func)
        if name in COMPOSITES:
            raise NotImplementedError(
                f"`{name}` runs its GEMMs inside Python code the recorder cannot see into; use torch.export"
            )
        try:
            out = call_on_meta(name, func, args, kwargs) if self.fake_shapes else func(*args, **kwargs)
        except Exception as error:
            self.builder.failed_op = self.builder.failed_op or name
            raise
        inputs = [self._ref(leaf) for leaf in tree_flatten((args, kwargs))[0] if isinstance(leaf, torch.Tensor)]
        if name in OPS or name == "__rmatmul__":  # only GEMMs need their arguments' shapes in place
            ref_args, ref_kwargs = tree_map(self._ref, args), tree_map(self._ref, kwargs)
            if name == "__rmatmul__":
                name, ref_args = "matmul", (ref_args[1], ref_args[0])
        else:
            ref_args, ref_kwargs = args, kwargs
        outputs = tree_flatten(out)[0]
        produces_tensor = any(isinstance(leaf, torch.Tensor) for leaf in outputs)
        carried = record_call(self.builder, self.modules.current, name, ref_args, ref_kwargs, inputs, produces_tensor)
        written = [args[0]] if _in_place(name) and args and isinstance(args[0], torch.Tensor) else []
        for leaf in [*outputs, *written]:  # an in-place write (`result[idx] = rois`) carries into its target
            if isinstance(leaf, torch.Tensor):
                self.known[id(leaf)] = carried
                self.alive.append(leaf)
        return out


IN_PLACE_DUNDERS = frozenset({"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ior__", "__iand__"})


def _in_place(name: str) -> bool:
    """Whether the op writes into its first argument (``add_``, ``index_put_``, ``x[i] = y``)."""
    return name in IN_PLACE_DUNDERS or (name.endswith("_") and not name.startswith("_"))


def record_gemms(
    model: nn.Module, example_inputs: tuple, *, fake_shapes: bool = True, on_meta: bool = True, builder: ProfileBuilder | None = None
) -> ProfileBuilder:
    """Run ``model`` once on meta copies of its parameters and inputs, recording every GEMM.

    With ``fake_shapes``, output shapes of common ops come from ``bitplan.frontends.shapes`` (no
    meta kernel runs for them, so torch's compiler stack is not imported); when the model fails that
    way, it runs again on the real meta kernels, as it does without ``fake_shapes``. Without
    ``on_meta`` it runs on the model's own tensors and the inputs as given (the real-tensor fallback:
    values exist, so ``nonzero`` and ``.item()`` work). ``builder`` receives the GEMMs, so a caller
    keeps what was recorded before a failure.

    Raises whatever the model raises on meta tensors (data-dependent control flow, ``.item()``);
    the caller falls back to torch.export.
    """
    if fake_shapes and on_meta:
        try:
            return _record(model, example_inputs, fake_shapes=True, on_meta=True, builder=ProfileBuilder())
        except Exception:  # any model code may rely on what only the real kernels give (strides, dtypes)
            pass
    return _record(model, example_inputs, fake_shapes=False, on_meta=on_meta, builder=builder or ProfileBuilder())


def _record(model: nn.Module, example_inputs: tuple, fake_shapes: bool, on_meta: bool, builder: ProfileBuilder) -> ProfileBuilder:
    convert = meta_like if on_meta else (lambda t: t)
    state = {name: convert(t) for name, t in model.named_parameters()}
    state.update({name: convert(t) for name, t in model.named_buffers()})
    known = {id(state[name]): TensorRef((), 0, name, frozenset({name})) for name, _ in model.named_parameters()}
    inputs = tree_map(lambda v: convert(v) if isinstance(v, torch.Tensor) else v, tuple(example_inputs))
    known.update((id(leaf), TensorRef((), data=True)) for leaf in tree_flatten(inputs)[0] if isinstance(leaf, torch.Tensor))
    with torch.no_grad(), _ModuleStack(model) as modules:
        recorder = _Recorder(builder, modules, known, fake_shapes)
        wrapper = _RecordingWrapper(model, recorder)
        state = {f"inner.{name}": value for name, value in state.items()}
        torch.func.functional_call(wrapper, state, inputs, strict=False, tie_weights=True)
    return builder


class _RecordingWrapper(nn.Module):
    """Enters the recorder inside ``functional_call``, so its parameter swapping is not recorded."""

    def __init__(self, inner: nn.Module, recorder: _Recorder) -> None:
        super().__init__()
        self.inner = inner
        self._recorder = recorder

    def forward(self, *args: Any) -> Any:
        with self._recorder:
            return self.inner(*args)
