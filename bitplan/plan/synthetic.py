"""Hand-built profiles: for tests, for benchmarks, and for planning a model you cannot trace.

``profile_from_gemms`` turns a list of GEMM shapes into a ``ModelProfile``; ``deep_stack_profile``
builds arbitrarily long transformer-like profiles (the 10,000-layer planning benchmark).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from bitplan.profile.schema import GemmLayer, GemmOp, ModelProfile, Tracer


@dataclass(frozen=True)
class GemmShape:
    """One GEMM: ``groups`` products of X[m×k]·W[k×n] at ``depth``; ``weight`` None for activation×activation."""

    name: str
    m: int
    k: int
    n: int
    depth: int
    weight: str | None = ""
    op: GemmOp = GemmOp.linear
    groups: int = 1
    weight_shape: tuple[int, ...] | None = None

    def layer(self) -> GemmLayer:
        weight = f"{self.name}.weight" if self.weight == "" else self.weight
        return GemmLayer(
            name=self.name,
            weight=weight,
            op=self.op,
            m=self.m,
            k=self.k,
            n=self.n,
            groups=self.groups,
            depth=self.depth,
            weight_shape=None if weight is None else list(self.weight_shape or (self.n * self.groups, self.k)),
        )


def profile_from_gemms(
    model: str,
    gemms: Iterable[GemmShape],
    *,
    extra_params: int = 0,
    batch: int = 1,
    input_shapes: list[list[int]] | None = None,
) -> ModelProfile:
    """A profile of ``gemms`` in the given order; ``total_params`` = weights (shared once) + ``extra_params``.

    Example:
        >>> profile = profile_from_gemms("two", [GemmShape("a", 4, 8, 2, 1), GemmShape("b", 4, 2, 3, 2)])
        >>> profile.total_params
        22
    """
    layers = [shape.layer() for shape in gemms]
    weights = {layer.weight: layer.params for layer in layers if layer.weight is not None}
    return ModelProfile(
        model=model,
        batch=batch,
        tracer=Tracer.export,
        input_shapes=input_shapes or [[batch]],
        total_params=sum(weights.values()) + extra_params,
        layers=layers,
    )


def resnet20_profile() -> ModelProfile:
    """The GEMMs of CIFAR ResNet-20 (parameter-free shortcuts, batch 1), written out by hand.

    Matches ``profile_spec("zoo:resnet20")`` layer for layer; planning tests use it without tracing.
    K = 27 (stem), 144, 288, 576 (3×3 convs), 64 (fc); M = 1024, 256, 64 output positions, 1 (fc).
    """
    shapes = [GemmShape("conv1", 1024, 27, 16, 1, op=GemmOp.conv, weight_shape=(16, 3, 3, 3))]
    depth = 2
    for stage, (channels, positions) in enumerate([(16, 1024), (32, 256), (64, 64)], start=1):
        for block in range(3):
            for conv in (1, 2):
                entering = block == 0 and conv == 1 and stage > 1
                inputs = channels // 2 if entering else channels
                name = f"layer{stage}.{block}.conv{conv}"
                shape = (channels, inputs, 3, 3)
                shapes.append(GemmShape(name, positions, inputs * 9, channels, depth, op=GemmOp.conv, weight_shape=shape))
                depth += 1
    shapes.append(GemmShape("fc", 1, 64, 10, depth))
    batch_norm = 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64)
    return profile_from_gemms("zoo:resnet20", shapes, extra_params=batch_norm + 10, input_shapes=[[1, 3, 32, 32]])


def deep_stack_profile(n_layers: int, *, width: int = 256, tokens: int = 128, seed: int = 0) -> ModelProfile:
    """A transformer-like stack with ``n_layers`` weight GEMMs (q, k, v, o, up, down per block).

    Widths vary a little from block to block (seeded) so that factor values are not all tied.
    """
    rng = random.Random(seed)
    shapes = []
    block = 0
    while len(shapes) < n_layers:
        d = width + 64 * rng.randint(0, 3)
        base = 2 * block + 1
        parts = [
            ("q", d, d, base),
            ("k", d, d, base),
            ("v", d, d, base),
            ("o", d, d, base + 1),
            ("up", d, 4 * d, base + 1),
            ("down", 4 * d, d, base + 2),
        ]
        for part, k, n, depth in parts:
            shapes.append(GemmShape(f"blocks.{block}.{part}", tokens, k, n, depth))
        block += 1
    return profile_from_gemms(f"deep_stack_{n_layers}", shapes[:n_layers], extra_params=2 * width * block)
