"""Collect the GEMMs a tracer finds into a ModelProfile: names, shared-weight flags, totals."""

from __future__ import annotations

from collections import Counter

from bitplan.profile.gemms import Gemm
from bitplan.profile.schema import GemmLayer, ModelProfile, Tracer


class ProfileBuilder:
    """Accumulates GEMMs in execution order, then names them and flags shared weights.

    Naming: a GEMM is named after its weight without ``.weight`` when the running module owns it
    (``layer1.0.conv1``, ``lstm.weight_ih_l0``, ``self_attn.out_proj``); a weight borrowed from
    elsewhere (tied embeddings) takes the running module's path (``lm_head``); activation GEMMs
    append the op (``blocks.0.attn.attention_qk``).
    A repeated name gets ``#2``, ``#3``, ...
    """

    def __init__(self) -> None:
        self._found: list[tuple[str, Gemm]] = []
        self._param_uses: Counter[str] = Counter()

    def add(self, module_path: str, gemm: Gemm) -> None:
        """Record ``gemm``, executed inside the module at ``module_path`` ('' for the root)."""
        self._found.append((module_path, gemm))

    def note_use(self, parameter: str) -> None:
        """Count one op (GEMM or not) that reads ``parameter``; two or more uses mean shared."""
        self._param_uses[parameter] += 1

    def build(
        self, *, model: str, batch: int, tracer: Tracer, input_shapes: list[list[int]], total_params: int
    ) -> ModelProfile:
        """Name every GEMM uniquely and assemble the profile."""
        counts: Counter[str] = Counter()
        layers = []
        for module_path, gemm in self._found:
            base = _gemm_name(module_path, gemm)
            counts[base] += 1
            name = base if counts[base] == 1 else f"{base}#{counts[base]}"
            layers.append(
                GemmLayer(
                    name=name,
                    weight=gemm.weight,
                    op=gemm.op,
                    m=gemm.m,
                    k=gemm.k,
                    n=gemm.n,
                    groups=gemm.groups,
                    depth=gemm.depth,
                    weight_shape=list(gemm.weight_shape) if gemm.weight_shape else None,
                    shared=gemm.weight is not None and self._param_uses[gemm.weight] > 1,
                )
            )
        return ModelProfile(
            model=model,
            batch=batch,
            tracer=tracer,
            input_shapes=input_shapes,
            total_params=total_params,
            layers=layers,
        )


def _gemm_name(module_path: str, gemm: Gemm) -> str:
    if gemm.weight is None:
        suffix = gemm.suffix or gemm.op.value
        return f"{module_path}.{suffix}" if module_path else suffix
    prefix = f"{module_path}." if module_path else ""
    if gemm.weight.startswith(prefix):  # the running module (or a child) owns the weight
        return gemm.weight.removesuffix(".weight") or module_path
    return module_path or gemm.weight.removesuffix(".weight")
