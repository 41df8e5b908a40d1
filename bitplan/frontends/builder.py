"""The one builder both front ends feed: GEMMs in execution order → a named ``ModelProfile`` with a
coverage ledger (which parameters no GEMM consumes, and why)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence

from bitplan.errors import TraceError
from bitplan.frontends.ops import Gemm
from bitplan.profile.schema import (
    Coverage,
    GemmLayer,
    ModelProfile,
    Routing,
    Tracer,
    UncoveredKind,
    UncoveredParameter,
)

# Ops that read a parameter as a lookup table (torch and ONNX names).
EMBEDDING_OPS = frozenset({"embedding", "embedding_bag", "_embedding_bag", "Gather"})
# Ops that combine a parameter with activations element by element (or place it beside them).
ELEMENTWISE_OPS = frozenset(
    {
        "add", "sub", "mul", "div", "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__mul__",
        "__rmul__", "__imul__", "__truediv__", "__rtruediv__", "add_", "mul_", "addcmul", "where", "cat",
        "concat", "concatenate", "stack", "hstack", "vstack", "Add", "Sub", "Mul", "Div", "Concat", "Where",
    }
)
REASONS = {
    UncoveredKind.embedding: "embedding lookup: a table read, no multiply-accumulate (plannable for size, not ranked by A/F)",
    UncoveredKind.elementwise: "combined with activations elementwise (e.g. a positional embedding or a scale): no GEMM",
    UncoveredKind.unused: "not read by the traced forward (it may run only in training mode or on another input)",
    UncoveredKind.unsupported: "read by an op bitplan does not count as a GEMM; if it multiplies matrices, a GEMM is missing",
}


class ProfileBuilder:
    """Accumulates GEMMs in execution order, then names them, flags shared weights and keeps the ledger.

    Naming: a GEMM is named after its weight without ``.weight`` when the running module owns it
    (``layer1.0.conv1``, ``lstm.weight_ih_l0``, ``self_attn.out_proj``); a weight borrowed from
    elsewhere (tied embeddings) takes the running module's path (``lm_head``); activation GEMMs
    append the op (``blocks.0.attn.attention_qk``). A front end that knows the name sets ``Gemm.name``.
    A repeated name gets ``#2``, ``#3``, ...
    """

    def __init__(self) -> None:
        self._found: list[tuple[str, Gemm, bool | None]] = []
        self._dropped: set[int] = set()
        self._param_uses: Counter[str] = Counter()
        self._consumers: dict[str, str] = {}
        self.expert_paths: tuple[str, ...] = ()  # modules whose GEMMs are expert GEMMs
        self.routing = Routing.uniform  # how expert GEMMs count their rows (measured: the router's real choice)
        self.failed_op: str | None = None  # the op a failed trace stopped at (a partial profile names it)

    def add(self, module_path: str, gemm: Gemm, shared: bool | None = None) -> int:
        """Record ``gemm``, executed inside the module at ``module_path`` ('' for the root); returns its index.

        ``shared`` overrides the use count (the ONNX front end decides sharing from its graph).
        """
        self._found.append((module_path, gemm, shared))
        return len(self._found) - 1

    def drop(self, *indices: frozenset[int]) -> None:
        """Forget GEMMs recorded earlier that turned out to compute a weight (``TensorRef.pending``)."""
        for group in indices:
            self._dropped.update(group)

    def note_use(self, parameter: str) -> None:
        """Count one op (GEMM or not) that reads ``parameter``; two or more uses mean shared."""
        self._param_uses[parameter] += 1

    def note_consumer(self, parameter: str, op: str) -> None:
        """Remember the first op that read ``parameter`` (the ledger names it when no GEMM covers it)."""
        self._consumers.setdefault(parameter, op)

    def build(
        self,
        *,
        model: str,
        batch: int,
        tracer: Tracer,
        input_shapes: list[list[int]],
        parameters: Mapping[str, Sequence[int]],
        total_params: int | None = None,
    ) -> ModelProfile:
        """Name every GEMM uniquely and assemble the profile with its coverage ledger.

        Args:
            parameters: Every parameter, each once, by the name GEMMs use for it → its shape.
            total_params: All parameter elements when ``parameters`` is not every parameter (ONNX).
        """
        counts: Counter[str] = Counter()
        layers = []
        found = [entry for index, entry in enumerate(self._found) if index not in self._dropped]
        for module_path, gemm, shared in found:
            base = gemm.name or _gemm_name(module_path, gemm)
            counts[base] += 1
            name = base if counts[base] == 1 else f"{base}#{counts[base]}"
            if shared is None:
                shared = gemm.weight is not None and self._param_uses[gemm.weight] > 1
            layers.append(
                GemmLayer(
                    name=name, weight=gemm.weight, op=gemm.op, m=gemm.m, k=gemm.k, n=gemm.n, groups=gemm.groups,
                    depth=gemm.depth, weight_shape=_stored_shape(gemm, parameters),
                    shared=shared, routing=self.routing if gemm.expert or self._is_expert(module_path) else None,
                )
            )
        covered = {source for _, gemm, _ in found if gemm.weight is not None for source in gemm.sources}
        uncovered = [
            self._uncovered(name, shape)
            for name, shape in parameters.items()
            if len(shape) >= 2 and name not in covered
        ]
        sizes = {name: math.prod(shape) for name, shape in parameters.items()}
        coverage = Coverage(
            gemm_params=sum(size for name, size in sizes.items() if name in covered),
            matrix_params=sum(size for name, size in sizes.items() if len(parameters[name]) >= 2),
            uncovered_params=sum(sizes[entry.parameter] for entry in uncovered),
            total_params=sum(sizes.values()) if total_params is None else total_params,
        )
        profile = ModelProfile(
            model=model, batch=batch, tracer=tracer, input_shapes=input_shapes, total_params=coverage.total_params,
            layers=layers, coverage=coverage, uncovered=uncovered,
        )
        check_weight_params(profile)
        return profile

    def _is_expert(self, module_path: str) -> bool:
        return any(module_path == path or module_path.startswith(f"{path}.") for path in self.expert_paths)

    def _uncovered(self, parameter: str, shape: Sequence[int]) -> UncoveredParameter:
        op = self._consumers.get(parameter)
        if op is None:
            kind = UncoveredKind.unused
        elif op in EMBEDDING_OPS:
            kind = UncoveredKind.embedding
        elif op in ELEMENTWISE_OPS:
            kind = UncoveredKind.elementwise
        else:
            kind = UncoveredKind.unsupported
        return UncoveredParameter(parameter=parameter, shape=list(shape), op=op, kind=kind, reason=REASONS[kind])


def _stored_shape(gemm: Gemm, parameters: Mapping[str, Sequence[int]]) -> list[int] | None:
    """The weight's shape: the view the GEMM reads, or the parameter as stored when the view holds more
    elements than it (a gather or an ``expand`` repeats elements; the GEMM's params are then capped there)."""
    if gemm.weight_shape is None:
        return None
    stored = parameters.get(gemm.weight)
    larger = gemm.k * gemm.n * gemm.groups > math.prod(stored) if stored else False
    return list(stored) if larger and gemm.sources == {gemm.weight} else list(gemm.weight_shape)


def check_weight_params(profile: ModelProfile) -> None:
    """The invariant every profile keeps: its GEMM weight parameters, each weight counted once,
    never exceed the model's parameters (a weight seen through a view, a slice or a gather is the
    parameter it reads, never a copy per use).

    Raises:
        TraceError: when a profile breaks it; that is a bug in bitplan's rules, named with its largest weight.
    """
    if profile.gemm_params <= profile.total_params:
        return
    largest = max(profile.weight_layers, key=lambda layer: layer.params)
    raise TraceError(
        f"`{profile.model}`: its GEMMs hold {profile.gemm_params:,} weight parameters but the model has only "
        f"{profile.total_params:,} (largest: `{largest.name}` on `{largest.weight}`, {largest.params:,}); a weight "
        "was counted more than once. This is a bug in bitplan: please report it with the model; `--tracer export` "
        "may count it correctly"
    )


def _gemm_name(module_path: str, gemm: Gemm) -> str:
    if gemm.weight is None:
        suffix = gemm.suffix or gemm.op.value
        return f"{module_path}.{suffix}" if module_path else suffix
    prefix = f"{module_path}." if module_path else ""
    weight = parametrized_attribute(gemm.weight)
    if weight.startswith(prefix):  # the running module (or a child) owns the weight
        return weight.removesuffix(".weight") or module_path
    return module_path or weight.removesuffix(".weight")


PARAMETRIZATION = re.compile(r"\.parametrizations\.(\w+)\.original\d*$")


def parametrized_attribute(parameter: str) -> str:
    """The attribute a parametrization computes from ``parameter``: ``fc.parametrizations.weight.original1``
    → ``fc.weight`` (torch.nn.utils.parametrize's naming); other names are returned unchanged."""
    return PARAMETRIZATION.sub(r".\1", parameter)
