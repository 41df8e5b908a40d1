"""The four sensitivity measures. Each returns {GEMM name: score}, larger = more sensitive.

All work on any model the profiler understands: a GEMM's weight is addressed by its parameter
FQN, and the module that runs it (``GemmLayer.name`` or the weight's parent) is called with the
quantized weight substituted through ``torch.func.functional_call``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bitplan.quant import uniform_quantize

LossFn = Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]
Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor]


@dataclass(frozen=True)
class Target:
    """A weight GEMM to score: its profile name, parameter FQN, and the module that runs it."""

    name: str
    weight: str
    module: str
    attribute: str


def quantization_error(weight: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
    """Δw = Q(w) − w with the same GEMMLOWP quantizer training uses (round to nearest)."""
    channel_dim = 0 if per_channel and weight.dim() > 1 else None
    return uniform_quantize(weight.detach(), bits, channel_dim=channel_dim) - weight.detach()


def fisher(
    model: nn.Module, targets: Sequence[Target], batches: Sequence[Batch], loss_fn: LossFn, bits: int, per_channel: bool
) -> dict[str, float]:
    """½ Σ F ⊙ Δw², F the empirical Fisher diagonal: mean over batches of (∂L/∂w)²."""
    params = dict(model.named_parameters())
    squares = {t.weight: torch.zeros_like(params[t.weight]) for t in targets}
    for inputs, target in batches:
        model.zero_grad(set_to_none=True)
        loss_fn(model, inputs, target).backward()
        for t in targets:
            grad = params[t.weight].grad
            if grad is not None:
                squares[t.weight] += grad.detach() ** 2
    scores = {}
    for t in targets:
        fisher_diag = squares[t.weight] / len(batches)
        delta = quantization_error(params[t.weight], bits, per_channel)
        scores[t.name] = 0.5 * float((fisher_diag * delta**2).sum())
    model.zero_grad(set_to_none=True)
    return scores


@torch.no_grad()
def loss_delta(
    model: nn.Module,
    targets: Sequence[Target],
    batches: Sequence[Batch],
    loss_fn: LossFn,
    bits: int,
    per_channel: bool,
    advance: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """Loss with only this layer's weight quantized, minus the full-precision loss, over the batches."""
    params = dict(model.named_parameters())

    def mean_loss() -> float:
        return sum(float(loss_fn(model, inputs, target)) for inputs, target in batches) / len(batches)

    baseline = mean_loss()
    scores = {}
    for t in targets:
        weight = params[t.weight]
        original = weight.detach().clone()
        weight.add_(quantization_error(weight, bits, per_channel))
        try:
            scores[t.name] = mean_loss() - baseline
        finally:
            weight.copy_(original)
        advance()
    return scores


@torch.no_grad()
def sqnr(
    model: nn.Module, targets: Sequence[Target], batches: Sequence[Batch], bits: int, per_channel: bool, forward: Callable
) -> tuple[dict[str, float], dict[str, float]]:
    """Noise-to-signal ratio ‖Ŷ − Y‖² / ‖Y‖² of each layer's output with only its weight quantized.

    The layer sees its full-precision input (captured by a forward hook) in both products.
    Returns (noise-to-signal ratios, SQNR in dB).
    """
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    by_module: dict[str, list[Target]] = {}
    for t in targets:
        by_module.setdefault(t.module, []).append(t)
    quantized = {t.weight: params[t.weight] + quantization_error(params[t.weight], bits, per_channel) for t in targets}
    signal = {t.name: 0.0 for t in targets}
    noise = {t.name: 0.0 for t in targets}
    busy = {"inside": False}

    def hook(path: str) -> Callable:
        def record(module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
            if busy["inside"]:
                return
            reference = _first_tensor(output)
            busy["inside"] = True
            try:
                for t in by_module[path]:
                    swapped = torch.func.functional_call(module, {t.attribute: quantized[t.weight]}, args, kwargs)
                    difference = _first_tensor(swapped) - reference
                    noise[t.name] += float(difference.double().pow(2).sum())
                    signal[t.name] += float(reference.double().pow(2).sum())
            finally:
                busy["inside"] = False

        return record

    handles = [modules[path].register_forward_hook(hook(path), with_kwargs=True) for path in by_module]
    try:
        for inputs, _ in batches:
            forward(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    ratios = {name: noise[name] / max(signal[name], 1e-30) for name in signal}
    decibels = {name: (math.inf if ratio == 0 else -10.0 * math.log10(ratio)) for name, ratio in ratios.items()}
    return ratios, decibels


def hutchinson_traces(
    model: nn.Module,
    weights: Sequence[str],
    batches: Sequence[Batch],
    loss_fn: LossFn,
    probes: int,
    generator: torch.Generator,
) -> dict[str, float]:
    """Hutchinson estimate of tr(H_ww) for each weight block: E_v[vᵀ H v], v Rademacher.

    One probe draws v for every block at once; H·v comes from differentiating (∇L · v) again
    (a Hessian-vector product through autograd), averaged over the batches. Attention runs in its
    math kernel here: the fused CPU and flash kernels have no second derivative.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    params = dict(model.named_parameters())
    blocks = [params[name] for name in weights]
    totals = [0.0] * len(blocks)
    for inputs, target in batches:
        with sdpa_kernel(SDPBackend.MATH):
            loss = loss_fn(model, inputs, target)
        grads = torch.autograd.grad(loss, blocks, create_graph=True)
        for probe in range(probes):
            vectors = [
                torch.randint(0, 2, block.shape, generator=generator, dtype=torch.int8).to(
                    device=block.device, dtype=block.dtype
                )
                * 2
                - 1
                for block in blocks
            ]
            dot = sum((g * v).sum() for g, v in zip(grads, vectors))
            products = torch.autograd.grad(dot, blocks, retain_graph=probe < probes - 1)
            for index, (v, hv) in enumerate(zip(vectors, products)):
                totals[index] += float((v * hv).sum())
    count = probes * len(batches)
    return {name: total / count for name, total in zip(weights, totals)}


def hessian(
    model: nn.Module,
    targets: Sequence[Target],
    batches: Sequence[Batch],
    loss_fn: LossFn,
    bits: int,
    per_channel: bool,
    probes: int,
    seed: int,
) -> dict[str, float]:
    """HAWQ-v2's measure: (tr(H_ww) / n) · ‖Δw‖², the trace from Hutchinson probes."""
    params = dict(model.named_parameters())
    weights = list(dict.fromkeys(t.weight for t in targets))
    generator = torch.Generator().manual_seed(seed)
    traces = hutchinson_traces(model, weights, batches, loss_fn, probes, generator)
    scores = {}
    for t in targets:
        weight = params[t.weight]
        delta = quantization_error(weight, bits, per_channel)
        scores[t.name] = traces[t.weight] / weight.numel() * float(delta.pow(2).sum())
    return scores


def _first_tensor(value: object) -> torch.Tensor:
    """The main output of a module: the tensor itself, or the first tensor of a tuple (LSTM)."""
    while isinstance(value, (tuple, list)):
        value = value[0]
    return value
