"""Mixture-of-experts layers under uniform top-k routing: every expert's GEMMs, without the router's data.

Which tokens reach which expert depends on the router's values, which tracing on meta tensors does
not have (``nonzero`` and ``where`` have no meta result, and a loop over the experts a batch hit
silently skips all of them). While a model is traced, each mixture-of-experts module found here runs
a stand-in forward that sends every expert its expected share of the tokens under uniform routing:
T tokens choosing top_k of E experts give T·top_k expert rows, split as evenly as integers allow
(the first T·top_k mod E experts get one row more), so the experts' MACs add up to exactly
T·top_k × one expert's MACs per token. The router and shared experts run on all T tokens as usual.

Two layouts are recognised (docs/concepts.md, "Mixture of experts"):

- fused experts: a module with an int ``num_experts`` attribute and 3-D parameters ``[E, out, in]``
  (``[E, in, out]`` when ``is_transposed`` is set), called as ``experts(hidden, top_k_index, weights)``,
  as in transformers 5 (Mixtral, Qwen-MoE, OLMoE, DeepSeek-V3). Expert e of parameter ``P`` is the
  virtual layer ``P[e]``; consecutive parameters chain (a ``[2I, H]`` gate-up output is split into
  gate and up halves before a ``[H, I]`` down projection; two parameters of one shape both read the
  expert's input);
- a block with an ``experts`` ``nn.ModuleList``, an int ``top_k`` (or ``num_experts_per_tok``)
  attribute and a ``gate`` or ``router`` submodule, whose forward maps hidden states to a tensor of
  the same shape (a hand-written loop over experts). Its ``shared_expert(s)`` and
  ``shared_expert_gate`` submodules run on every token.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from bitplan.frontends.ops import uniform_rows

__all__ = ["expert_paths", "fused_expert_parameters", "uniform_routing", "uniform_rows"]

ROUTER_NAMES = ("gate", "router")
SHARED_NAMES = ("shared_expert", "shared_experts", "shared_expert_gate")


def fused_expert_parameters(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The ``[E, out, in]`` parameters of a fused-experts module (empty when it is not one)."""
    experts = getattr(module, "num_experts", None)
    if not isinstance(experts, int) or experts < 1:
        return []
    return [
        (name, parameter)
        for name, parameter in module.named_parameters(recurse=False)
        if parameter.dim() == 3 and parameter.shape[0] == experts
    ]


def _top_k(module: nn.Module) -> int | None:
    for name in ("top_k", "num_experts_per_tok"):
        value = getattr(module, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _is_expert_block(module: nn.Module) -> bool:
    experts = getattr(module, "experts", None)
    return (
        isinstance(experts, nn.ModuleList)
        and len(experts) > 0
        and _top_k(module) is not None
        and any(isinstance(getattr(module, name, None), nn.Module) for name in ROUTER_NAMES)
    )


def _fused_forward(module: nn.Module) -> Any:
    names = [name for name, _ in fused_expert_parameters(module)]
    transposed = bool(getattr(module, "is_transposed", False))

    def forward(hidden_states: torch.Tensor, top_k_index: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        x = hidden_states.reshape(-1, hidden_states.shape[-1])  # [T, H]
        top_k = top_k_index.shape[-1] if top_k_index.dim() > 1 else 1
        out = torch.zeros_like(hidden_states)
        for e, rows in enumerate(uniform_rows(x.shape[0], top_k, module.num_experts)):
            if rows == 0:
                continue
            # read at call time: tracers substitute the module's parameters (functional_call, torch.export)
            matrices = [getattr(module, name)[e] for name in names]  # each [out, in] ([in, out] transposed)
            y = _chain(x[:rows], [w.t() for w in matrices] if transposed else matrices)  # [rows, out]
            out = out + y.sum()  # carries the experts' depth to what reads the block's output
        return out

    return forward


def _chain(x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """One expert's MLP on ``x`` [rows, H] from its weight matrices [out, in], in parameter order."""
    inputs, h, previous = x, x, None
    for w in weights:
        if previous is not None and w.shape == previous.shape:  # gate and up: both read the same input
            h = F.linear(inputs, w) * h
        else:
            if h.shape[-1] == 2 * w.shape[-1]:  # fused gate-up output: gate half × up half
                gate, up = h.chunk(2, dim=-1)
                h = gate * up
            inputs = h
            h = F.linear(h, w)
        previous = w
    return h


def _block_forward(module: nn.Module, experts: nn.ModuleList, router: nn.Module, top_k: int) -> Any:
    shared = [getattr(module, name) for name in SHARED_NAMES if isinstance(getattr(module, name, None), nn.Module)]

    def forward(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        x = hidden_states.reshape(-1, hidden_states.shape[-1])  # [T, H]
        router(x)
        out = torch.zeros_like(hidden_states)
        for expert, rows in zip(experts, uniform_rows(x.shape[0], top_k, len(experts))):
            if rows:
                out = out + expert(x[:rows]).sum()  # carries the experts' depth
        for extra in shared:
            out = out + extra(x).sum()
        return out

    return forward


def _moe_modules(model: nn.Module) -> Iterator[tuple[nn.Module, str, Callable[[], Any]]]:
    """Each mixture-of-experts module of ``model``: (module, the path of its expert GEMMs, its stand-in maker)."""
    paths: list[str] = []
    for path, module in model.named_modules():
        if any(path.startswith(f"{done}.") for done in paths):
            continue
        if fused_expert_parameters(module):
            found = module, path, functools.partial(_fused_forward, module)
        elif _is_expert_block(module):
            router = next(getattr(module, name) for name in ROUTER_NAMES if isinstance(getattr(module, name, None), nn.Module))
            make = functools.partial(_block_forward, module, module.experts, router, _top_k(module))
            found = module, f"{path}.experts" if path else "experts", make
        elif (probed := probe_expert_block(module)) is not None:
            list_name, router_name, top_k = probed
            make = functools.partial(_block_forward, module, getattr(module, list_name), getattr(module, router_name), top_k)
            found = module, f"{path}.{list_name}" if path else list_name, make
        else:
            continue
        paths.append(found[1])
        yield found


def expert_paths(model: nn.Module) -> list[str]:
    """The module paths whose GEMMs are expert GEMMs, without changing any forward (measured routing)."""
    return [path for _, path, _ in _moe_modules(model)]


@contextlib.contextmanager
def uniform_routing(model: nn.Module) -> Iterator[list[str]]:
    """Within this context, every mixture-of-experts module of ``model`` routes uniformly.

    Yields:
        The module paths whose GEMMs are expert GEMMs (their records get ``routing="uniform"``).
    """
    patched: list[tuple[nn.Module, Any]] = []  # (module, the instance forward it had, if any)
    paths: list[str] = []
    for module, path, make in list(_moe_modules(model)):
        patched.append((module, module.__dict__.get("forward")))
        module.forward = make()
        paths.append(path)
    try:
        yield paths
    finally:
        for module, own in patched:
            if own is None:
                del module.forward  # the class's forward shows again
            else:
                module.forward = own


def _expert_list(module: nn.Module) -> tuple[str, nn.ModuleList, list[tuple[str, int]]] | None:
    """A child ``ModuleList`` of E >= 2 alike modules and the sibling children holding a Linear with E outputs."""
    for list_name, child in module.named_children():
        if not isinstance(child, nn.ModuleList) or len(child) < 2 or not _alike(child):
            continue
        routers = [
            (name, linear.in_features)
            for name, sibling in module.named_children()
            if sibling is not child
            for linear in sibling.modules()
            if isinstance(linear, nn.Linear) and linear.out_features == len(child)
        ]
        if routers:
            return list_name, child, routers
    return None


def _alike(modules: nn.ModuleList) -> bool:
    shapes = [(type(m), [tuple(p.shape) for p in m.parameters()]) for m in modules]
    return bool(shapes[0][1]) and all(shape == shapes[0] for shape in shapes)


def probe_expert_block(module: nn.Module) -> tuple[str, str, int] | None:
    """(experts list, router child, top_k) of a mixture-of-experts block with no naming convention, or None.

    The block's own forward runs once on meta tensors (a few tokens of the router's input width) while
    a function mode follows the router candidates' outputs to the first ``topk`` (or ``argmax``) call;
    the run usually stops at the data-dependent selection after it, which is expected.
    """
    found = _expert_list(module)
    if found is None:
        return None
    list_name, _, routers = found
    spy = _TopKSpy({name for name, _ in routers})
    state = {name: torch.empty_like(t, device="meta") for name, t in [*module.named_parameters(), *module.named_buffers()]}
    hooks = [getattr(module, name).register_forward_hook(spy.mark(name)) for name, _ in routers]
    try:
        for shape in ((1, 4, routers[0][1]), (4, routers[0][1])):
            with contextlib.suppress(Exception), torch.no_grad(), spy:  # the data-dependent part fails on meta
                torch.func.functional_call(module, state, (torch.zeros(shape, device="meta"),), strict=False)
            if spy.found is not None:
                return list_name, *spy.found
    finally:
        for hook in hooks:
            hook.remove()
    return None


class _TopKSpy(TorchFunctionMode):
    """Follows tensors derived from the marked modules' outputs to the first top-k selection on them."""

    def __init__(self, names: set[str]) -> None:
        super().__init__()
        self.names = names
        self.origin: dict[int, str] = {}  # id(tensor) -> router candidate it derives from
        self.alive: list[torch.Tensor] = []  # keeps ids from being reused
        self.found: tuple[str, int] | None = None

    def mark(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                self.origin[id(output)] = name
                self.alive.append(output)

        return hook

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        leaves = [leaf for leaf in tree_flatten((args, kwargs))[0] if isinstance(leaf, torch.Tensor)]
        router = next((self.origin[id(leaf)] for leaf in leaves if id(leaf) in self.origin), None)
        if router is None:
            return out
        name = getattr(func, "__name__", "")
        if self.found is None and name == "topk":
            self.found = (router, int(kwargs.get("k", args[1] if len(args) > 1 else 1)))
        elif self.found is None and name == "argmax":
            self.found = (router, 1)
        for leaf in tree_flatten(out)[0]:
            if isinstance(leaf, torch.Tensor):
                self.origin[id(leaf)] = router
                self.alive.append(leaf)
        return out
