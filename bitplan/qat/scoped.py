"""Quantization scoped to one module's forward, for GEMMs that are not a torch layer's own forward.

Two kinds of planned GEMM need it:

- activation×activation products: ``F.scaled_dot_product_attention`` (plan entries
  ``<module>.attention_qk`` and ``<module>.attention_av``) and plain matmuls of two activations
  (``<module>.matmul``); the n-th call of a kind inside the module's forward is the plan entry
  ``<kind>`` (n = 1) or ``<kind>#n``, exactly as the profiler names them;
- planned weights used functionally rather than by their layer's forward (``nn.MultiheadAttention``'s
  ``in_proj_weight``, a tied embedding passed to ``F.linear``, a custom module's raw Parameter);
- table lookups (``nn.Embedding``, ``nn.EmbeddingBag``, ``F.embedding``): the table is read from its
  fake-quantized value (per row with per-channel weights, STE); the ids are no activation and the
  rows read have no GEMM whose gradient to quantize, so only the table is quantized.

The module's class is swapped for a subclass whose forward runs the original one inside a
``TorchFunctionMode`` (public ``torch.overrides`` API). The mode sees each torch call made directly by
the module's forward (calls inside its submodules are left to them; calls inside a Python-level torch
function such as ``F.multi_head_attention_forward`` are not seen, so ``nn.MultiheadAttention`` is
refused by ``apply``): a planned parameter, or a view of it, is replaced by its fake-quantized value
(quantized once per forward), the other operand of a GEMM it enters is quantized as an activation,
and the GEMM's output gradient is quantized. Attention is decomposed into QKᵀ, softmax and A·V so
both products compute on quantized operands.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten  # public-in-practice pytree helper used across torch

from bitplan.qat.runtime import LayerQuant, kept_while, quantize_activation, quantize_weight
from bitplan.quant.kept import KeepCodes, keeping_possible
from bitplan.frontends.ops import OPS, gemm_operands
from bitplan.frontends.torch_calls import VIEW_OPS, op_name_of

OBSERVERS = "bitplan_observers"
"""A scoped module's input observers: ``ModuleList`` of 2 per slot (GEMM operands), non-persistent."""


ATTENTION = "scaled_dot_product_attention"
LOOKUPS = frozenset({"embedding", "embedding_bag"})
"""torch-level table lookups: the planned table among their arguments is read quantized."""


@dataclass
class Slot:
    """One planned GEMM inside a scoped module: its bits and its pair of observers (2·index, 2·index + 1)."""

    index: int
    bits: int


@dataclass
class ScopeQuant:
    """What a scoped module quantizes: planned parameters (by identity) and activation GEMMs by name.

    Attributes:
        layer: Activation/gradient settings and the shared runtime (its ``weight_bits`` is unused).
        weights: ``id(parameter)`` -> (FQN, parameter, bits), bits per matrix ``{e: bits}`` for the
            virtual layers ``FQN[e]`` of a stacked expert parameter.
        weight_slots: Weight FQN -> one slot per GEMM that reads it, in call order.
        owners: Weight FQN -> (module that registers it, attribute). Each forward looks the weights
            up there: FSDP2 replaces a parameter by its sharded, then unsharded, tensor, so the
            objects ``weights`` was keyed by at ``apply`` time are not the ones a forward reads.
        activation_slots: Entry suffix (``attention_qk``, ``attention_av#2``, ``matmul``, ...) -> slot.
        child_depth: > 0 while a submodule's forward runs (its calls are not this module's GEMMs).
        hooks: Handles of the submodule hooks that maintain ``child_depth`` (removed by strip).
    """

    layer: LayerQuant
    weights: dict[int, tuple[str, nn.Parameter, int | dict[int, int]]]
    weight_slots: dict[str, list[Slot]]
    activation_slots: dict[str, Slot]
    owners: dict[str, tuple[nn.Module, str]] = field(default_factory=dict)
    child_depth: int = 0
    hooks: list[Any] = field(default_factory=list)


class ScopedForward:
    """Mixin placed before the module's class: runs its forward inside a ``_ScopeMode``."""

    bitplan_scope: ScopeQuant

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        scope = self.bitplan_scope
        scope.child_depth = 0
        with _ScopeMode(self, scope):
            return super().forward(*args, **kwargs)


class _ScopeMode(TorchFunctionMode):
    """The per-forward interception state: quantized weights, tracked views, call counters."""

    def __init__(self, module: nn.Module, scope: ScopeQuant) -> None:
        super().__init__()
        self.module = module
        self.scope = scope
        self.quantized: dict[int, torch.Tensor] = {}  # id(parameter) -> quantized value
        # id(tensor) -> (FQN, tensor, computed): views of a planned weight (computed=False, made from its
        # quantized value) and weights computed from it (computed=True, quantized where a GEMM reads them)
        self.derived: dict[int, tuple[str, torch.Tensor, bool]] = {}
        self.bits = {fqn: bits for fqn, _, bits in scope.weights.values()}
        self.weights = dict(scope.weights)  # id(tensor) -> (FQN, tensor, bits), as this forward reads them
        for fqn, _, bits in scope.weights.values():
            if fqn in scope.owners:
                owner, attribute = scope.owners[fqn]
                current = getattr(owner, attribute)
                self.weights[id(current)] = (fqn, current, bits)
        self.calls: Counter[str] = Counter()
        # quantized operands this forward keeps for backward as codes (None: as autograd keeps them)
        self.keep = KeepCodes() if keeping_possible() else None

    # --- operands -------------------------------------------------------------------------
    def _source(self, value: object) -> str | None:
        """The planned weight FQN ``value`` is (or views), else None."""
        if not isinstance(value, torch.Tensor):
            return None
        if id(value) in self.weights:
            return self.weights[id(value)][0]
        entry = self.derived.get(id(value))
        return entry[0] if entry is not None and entry[1] is value else None

    def _computed(self, value: torch.Tensor) -> bool:
        entry = self.derived.get(id(value))
        return entry is not None and entry[1] is value and entry[2]

    def _weight_value(self, value: torch.Tensor) -> torch.Tensor:
        planned = self.weights.get(id(value))
        if planned is None:
            if self._computed(value):  # the computed weight is what gets quantized
                return _quantize_weight(self.scope.layer, value, self.bits[self._source(value)], self.keep)
            return value  # already a view of a quantized weight
        if id(value) not in self.quantized:
            fqn, parameter, bits = planned
            self.quantized[id(value)] = _quantize_weight(self.scope.layer, parameter, bits, self.keep)
        return self.quantized[id(value)]

    def _activation(self, x: object, slot: Slot, operand: int, bits: int) -> object:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return x
        layer = self.scope.layer
        observer = getattr(self.module, OBSERVERS)[2 * slot.index + operand]
        return quantize_activation(x, layer.capped(bits), observer, layer.forward_quant, layer.grid, self.keep)

    def _next(self, kind: str) -> str:
        self.calls[kind] += 1
        count = self.calls[kind]
        return kind if count == 1 else f"{kind}#{count}"

    # --- dispatch -------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.scope.child_depth > 0:
            return func(*args, **kwargs)
        name = op_name_of(func)
        if name in VIEW_OPS and args and self._source(args[0]) is not None and not self._computed(args[0]):
            return self._view(func, args, kwargs)
        if name == ATTENTION:
            return self._attention(args, kwargs)
        if name in LOOKUPS:
            return self._lookup(func, args, kwargs)
        positions = gemm_operands("matmul" if name == "__rmatmul__" else name, args, kwargs)
        if positions:
            return self._gemm(func, OPS[name].kind if name in OPS else "matmul", list(args), kwargs, positions)
        fqn = self._computed_from(args, kwargs)
        if fqn is not None:
            return self._track(func(*args, **kwargs), fqn, computed=True)
        return func(*args, **kwargs)

    def _computed_from(self, args: tuple, kwargs: dict) -> str | None:
        """The planned weight a call computes a new weight from (``W * 0.5``, a cast, a reshape of a
        computed weight): it reads one and no activation (only parameters and planned-weight values)."""
        tensors = [leaf for leaf in tree_flatten((args, kwargs))[0] if isinstance(leaf, torch.Tensor)]
        planned = [t for t in tensors if self._source(t) is not None]
        if not planned or any(self._source(t) is None and not isinstance(t, nn.Parameter) for t in tensors):
            return None
        return self._source(max(planned, key=lambda t: t.numel()))

    def _track(self, out: Any, fqn: str, *, computed: bool) -> Any:
        for leaf in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(leaf, torch.Tensor):
                self.derived[id(leaf)] = (fqn, leaf, computed)
        return out

    def _view(self, func, args: tuple, kwargs: dict) -> Any:
        return self._track(func(self._weight_value(args[0]), *args[1:], **kwargs), self._source(args[0]), computed=False)

    def _gemm(self, func, kind: str, args: list, kwargs: dict, positions: list[int]) -> Any:
        """A GEMM call: on a planned weight (quantize the other operand), or on two activations (``kind``)."""
        sources = {i: self._source(args[i]) for i in positions}
        weights = [i for i, fqn in sources.items() if fqn is not None]
        if weights:
            fqn = sources[weights[0]]
            slots = self.scope.weight_slots.get(fqn, [])
            use = self.calls[fqn]
            self.calls[fqn] += 1
            slot = slots[min(use, len(slots) - 1)] if slots else None
            for i in positions:
                if i in weights:
                    args[i] = self._weight_value(args[i])
                elif slot is not None and self.scope.layer.activation_bits is not None:
                    args[i] = self._activation(args[i], slot, 0, self.scope.layer.activation_bits)
            with kept_while(self.keep):
                return self.scope.layer.output(func(*args, **kwargs))
        slot = self.scope.activation_slots.get(self._next(kind))
        if slot is None:
            return func(*args, **kwargs)
        for operand, i in enumerate(positions[:2]):
            args[i] = self._activation(args[i], slot, operand, slot.bits)
        with kept_while(self.keep):
            return self.scope.layer.output(func(*args, **kwargs))

    def _lookup(self, func, args: tuple, kwargs: dict) -> Any:
        """A table lookup: the planned table (any argument) replaced by its quantized value; one use of it."""
        def table(value: object) -> object:
            fqn = self._source(value)
            if fqn is None:
                return value
            self.calls[fqn] += 1  # the lookup is one of the weight's plan entries (its slot), as in _gemm
            return self._weight_value(value)

        return func(*(table(arg) for arg in args), **{key: table(value) for key, value in kwargs.items()})

    def _attention(self, args: tuple, kwargs: dict) -> torch.Tensor:
        qk = self.scope.activation_slots.get(self._next("attention_qk"))
        av = self.scope.activation_slots.get(self._next("attention_av"))
        if qk is None and av is None:
            return F.scaled_dot_product_attention(*args, **kwargs)
        return self._decomposed_attention(*args, **kwargs, qk=qk, av=av)

    def _decomposed_attention(
        self,
        query: torch.Tensor,  # [..., L, E]
        key: torch.Tensor,  # [..., S, E]
        value: torch.Tensor,  # [..., S, Ev]
        attn_mask: torch.Tensor | None = None,
        dropout_p: float = 0.0,
        is_causal: bool = False,
        scale: float | None = None,
        enable_gqa: bool = False,
        *,
        qk: Slot | None,
        av: Slot | None,
    ) -> torch.Tensor:
        """softmax(QKᵀ·scale + mask)·V with each product on quantized operands (SDPA's semantics)."""
        layer = self.scope.layer
        length, source = query.shape[-2], key.shape[-2]
        scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
        if enable_gqa and key.dim() >= 3 and key.shape[-3] != query.shape[-3]:
            repeats = query.shape[-3] // key.shape[-3]
            key, value = key.repeat_interleave(repeats, -3), value.repeat_interleave(repeats, -3)
        if qk is not None:
            query, key = self._activation(query, qk, 0, qk.bits), self._activation(key, qk, 1, qk.bits)
        with kept_while(self.keep if qk is not None else None):
            scores = query @ key.transpose(-2, -1)  # [..., L, S]
        scores = scores * scale
        if qk is not None:
            scores = layer.output(scores)
        if is_causal:
            keep = torch.ones(length, source, dtype=torch.bool, device=scores.device).tril()
            scores = scores.masked_fill(~keep, float("-inf"))
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            else:
                scores = scores + attn_mask
        probs = torch.softmax(scores, dim=-1)
        if dropout_p > 0:
            probs = F.dropout(probs, dropout_p)
        if av is not None:
            probs, value = self._activation(probs, av, 0, av.bits), self._activation(value, av, 1, av.bits)
        with kept_while(self.keep if av is not None else None):
            out = probs @ value  # [..., L, Ev]
        return layer.output(out) if av is not None else out


def _quantize_weight(
    layer: LayerQuant, parameter: torch.Tensor, bits: int | dict[int, int], keep: KeepCodes | None
) -> torch.Tensor:
    """The fake-quantized weight; ``bits`` per matrix (``{e: bits}``) quantizes each planned matrix
    ``parameter[e]`` of a stacked [E, out, in] parameter on its own and leaves the others as they are
    (the stack is a new tensor: kept as autograd keeps it)."""
    if isinstance(bits, dict):
        matrices = [
            _quantize_weight(layer, matrix, bits[e], None) if e in bits else matrix for e, matrix in enumerate(parameter)
        ]
        return torch.stack(matrices)  # [E, out, in]
    channel_dim = 0 if layer.channel_dim is not None and parameter.dim() >= 2 else None
    return quantize_weight(parameter, layer.capped(bits), layer.forward_quant, channel_dim, layer.grid, keep)


def scoped_class(cls: type[nn.Module]) -> type[nn.Module]:
    """The scoped subclass of ``cls`` (cached per class)."""
    if cls not in _scoped_classes:
        _scoped_classes[cls] = type(f"Scoped{cls.__name__}", (ScopedForward, cls), {"__module__": __name__})
    return _scoped_classes[cls]


_scoped_classes: dict[type[nn.Module], type[nn.Module]] = {}


def track_children(module: nn.Module, scope: ScopeQuant) -> None:
    """Hook every submodule so the mode knows when a call belongs to a submodule, not to ``module``."""

    def enter(child: nn.Module, args: Any) -> None:
        scope.child_depth += 1

    def leave(child: nn.Module, args: Any, output: Any) -> None:
        scope.child_depth -= 1

    for child in module.modules():
        if child is not module:
            scope.hooks.append(child.register_forward_pre_hook(enter))
            scope.hooks.append(child.register_forward_hook(leave))
