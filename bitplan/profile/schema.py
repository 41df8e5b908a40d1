"""The profile data model: one record per GEMM, Y[M×N] = X[M×K]·W[K×N], per group, and per table lookup.

A lookup (``nn.Embedding``, ``F.embedding``, ``embedding_bag``, ONNX ``Gather`` on a parameter) is the
product one-hot(ids)[M×V]·W[V×D] that nobody computes: M = ids looked up, K = V rows of the table,
N = D columns. It has a weight to plan but no multiply-accumulate, so its MACs and every reduction
statistic are 0 (docs/concepts.md, "Lookups").

Both front ends (torch, ONNX) emit these records; planning, training and reports only read them.
Exact definitions of every field are in docs/concepts.md.
"""

from __future__ import annotations

import hashlib
import math
import re
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROFILE_SCHEMA_VERSION = 1


class GemmOp(str, Enum):
    """What kind of operator a GEMM came from."""

    linear = "linear"
    matmul = "matmul"
    conv = "conv"
    conv_transpose = "conv_transpose"
    attention_qk = "attention_qk"
    attention_av = "attention_av"
    rnn_ih = "rnn_ih"
    rnn_hh = "rnn_hh"
    embedding = "embedding"  # a table lookup: weight only, no MACs (docs/concepts.md, "Lookups")

    @property
    def lookup(self) -> bool:
        """Whether the op reads rows of its weight instead of multiplying by it."""
        return self is GemmOp.embedding


class Tracer(str, Enum):
    """Which front end produced a profile."""

    record = "record"  # torch-function recording on meta tensors (fast; the default)
    export = "torch.export"  # aten-level FX graph from torch.export
    onnx = "onnx"


class Routing(str, Enum):
    """How a mixture-of-experts GEMM's M was counted (docs/concepts.md, "Mixture of experts")."""

    uniform = "uniform"  # tokens × top_k / n_experts rows per expert: the expectation under uniform routing
    measured = "measured"  # the rows the router actually sent, for real weights and inputs (--routing measured)


class GemmLayer(BaseModel):
    """One GEMM: ``groups`` independent products of X[m×k] by W[k×n]; or one lookup (op ``embedding``):
    m ids read rows of a table W[k×n] (k rows of n values), no MACs.

    ``weight`` is the fully qualified parameter name of the W operand, or None when both operands
    are activations (attention's QKᵀ and A·V, a matmul of two activations).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Module path of the op (plus a suffix when one module holds several GEMMs).")
    weight: str | None = Field(description="Fully qualified parameter name of W; null for activation×activation GEMMs.")
    op: GemmOp
    m: int = Field(ge=1, description="Rows of X per group: how many times each W element is used.")
    k: int = Field(ge=1, description="Reduction length: products summed into each output element.")
    n: int = Field(ge=1, description="Columns of W per group: how many times each X element is used.")
    groups: int = Field(ge=1, description="Independent GEMMs of this shape (conv groups, bmm batch).")
    depth: int = Field(ge=1, description="1 + the largest depth among the GEMMs this one depends on.")
    weight_shape: list[int] | None = Field(default=None, description="Shape of the weight parameter as stored.")
    shared: bool = Field(default=False, description="The weight is also used by another op (tied embeddings).")
    routing: Routing | None = Field(default=None, description="Set on expert GEMMs: how their M (routed tokens) was counted.")

    accumulation: int = Field(default=0, description="A: the reduction length K (0 for a lookup).")
    weight_frequency: int = Field(default=0, description="F: uses of each weight element for the traced input (M; 0 for a lookup).")
    activation_frequency: int = Field(default=0, description="Uses of each input element (N, per group; 0 for a lookup).")
    params: int = Field(default=0, description="Weight elements of this GEMM: K·N·groups, at most weight_shape's elements (0 without a weight).")
    macs: int = Field(default=0, description="Multiply-accumulates: M·K·N·groups (0 for a lookup).")
    grad_input_accumulation: int = Field(default=0, description="Reduction length of dX = dY·Wᵀ (N; 0 for a lookup).")
    grad_weight_accumulation: int = Field(default=0, description="Reduction length of dW = Xᵀ·dY (M; 0 for a lookup).")

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: object) -> object:
        """Fill the derived statistics from m, k, n, groups so front ends state only the shape."""
        if not isinstance(data, dict):
            return data
        missing = [key for key in ("m", "k", "n", "groups") if key not in data]
        if missing:
            raise ValueError(f"a GEMM record needs {', '.join(f'`{key}`' for key in missing)}")
        stored = math.prod(data["weight_shape"]) if data.get("weight_shape") else None
        lookup = GemmOp(data["op"]).lookup if "op" in data else False
        derived = derive_stats(data["m"], data["k"], data["n"], data["groups"], data.get("weight") is not None, stored, lookup)
        for key, value in derived.items():
            if data.get(key) not in (None, 0) and data[key] != value:
                raise ValueError(
                    f"`{key}` is {data[key]} but m, k, n, groups give {value}; the profile was edited by hand"
                )
            data = {**data, key: value}
        return data


VIRTUAL_WEIGHT = re.compile(r"^(?P<parameter>.+)\[(?P<index>\d+)\]$")


def split_virtual_weight(weight: str) -> tuple[str, int | None]:
    """``'experts.down_proj[3]'`` → (``'experts.down_proj'``, 3): matrix 3 of a stacked parameter
    [E, out, in] is a virtual layer of its own (fused experts); a plain FQN gives (FQN, None)."""
    match = VIRTUAL_WEIGHT.match(weight)
    return (match["parameter"], int(match["index"])) if match else (weight, None)


def derive_stats(
    m: int, k: int, n: int, groups: int, has_weight: bool, stored: int | None = None, lookup: bool = False
) -> dict[str, int]:
    """The statistics every GEMM record carries, from its shape (definitions: docs/concepts.md).

    ``params`` is K·N·groups, but never more than the ``stored`` elements of the weight: a gathered or
    expanded view (a relative-position table indexed per query, ``W.expand(B, ...)``) reads some
    elements several times, and they are still stored once. A ``lookup`` multiplies nothing: only its
    params count, every other statistic is 0.
    """
    params = k * n * groups if has_weight else 0
    params = min(params, stored) if stored else params
    if lookup:
        return {key: 0 for key in LOOKUP_ZERO} | {"params": params}
    return {
        "accumulation": k,
        "weight_frequency": m,
        "activation_frequency": n,
        "params": params,
        "macs": m * k * n * groups,
        "grad_input_accumulation": n,
        "grad_weight_accumulation": m,
    }


LOOKUP_ZERO = (
    "accumulation", "weight_frequency", "activation_frequency", "macs", "grad_input_accumulation", "grad_weight_accumulation"
)
"""The statistics a lookup does not have: no reduction, no multiply, no dX (ids have no gradient)."""


class UncoveredKind(str, Enum):
    """Why a matrix parameter has no GEMM (docs/concepts.md, "Coverage")."""

    embedding = "embedding"  # a lookup the front end could not record as a layer (older profiles: every lookup)
    elementwise = "elementwise"  # added, multiplied or concatenated elementwise (positional embeddings, scales)
    unused = "unused"  # not read by the traced forward (e.g. a head that runs only in training mode)
    unsupported = "unsupported"  # read by an op bitplan cannot count: a GEMM may be missing

    @property
    def suspect(self) -> bool:
        """Whether a GEMM may be missing from the profile: the CLI warns, and ``--strict`` fails."""
        return self in (UncoveredKind.unsupported, UncoveredKind.unused)


class UncoveredParameter(BaseModel):
    """A parameter (or computed weight's source) of >= 2 dims that no recorded GEMM consumes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    parameter: str = Field(description="Fully qualified parameter name (ONNX: the initializer name).")
    shape: list[int]
    op: str | None = Field(description="The op that consumed it (torch op or ONNX op type); null when none did.")
    kind: UncoveredKind
    reason: str


class UnknownOp(BaseModel):
    """An op type the front end has no rule for (ONNX): GEMMs inside it would be missing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op: str = Field(description="Op type, `domain::type` outside the standard ONNX domain.")
    count: int = Field(ge=1, description="Nodes of this type in the graph.")


class Coverage(BaseModel):
    """How much of the model's parameters the profile's GEMMs account for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gemm_params: int = Field(ge=0, description="Parameter elements consumed by recorded GEMMs and lookups, each parameter once.")
    matrix_params: int = Field(ge=0, description="Elements of all parameters with >= 2 dims.")
    uncovered_params: int = Field(ge=0, description="Elements of the parameters listed in `uncovered`.")
    total_params: int = Field(ge=0, description="All parameter elements, each parameter once.")


class ModelProfile(BaseModel):
    """Every GEMM of a model for one traced input, in graph (topological) order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = PROFILE_SCHEMA_VERSION
    model: str = Field(description="The model spec or class name that was profiled.")
    batch: int = Field(ge=1, description="Leading dimension of the first example input.")
    tracer: Tracer
    input_shapes: list[list[int]]
    total_params: int = Field(ge=0, description="All parameters of the model, each counted once.")
    layers: list[GemmLayer]
    coverage: Coverage | None = Field(default=None, description="Parameter elements consumed by GEMMs (null in old profiles).")
    uncovered: list[UncoveredParameter] = Field(
        default_factory=list, description="Every parameter of >= 2 dims that no GEMM consumes, with the reason."
    )
    notes: list[str] = Field(default_factory=list, description="How the model was built or traced, when unusual.")
    unknown_ops: list[UnknownOp] = Field(
        default_factory=list,
        description="Ops with no rule in bitplan (ONNX: custom domains, GEMM-like ops without a rule, control flow holding GEMMs).",
    )

    @model_validator(mode="after")
    def _names_unique(self) -> ModelProfile:
        seen: set[str] = set()
        for layer in self.layers:
            if layer.name in seen:
                raise ValueError(f"layer name `{layer.name}` appears twice; every GEMM needs a unique name")
            seen.add(layer.name)
        return self

    @property
    def weight_layers(self) -> list[GemmLayer]:
        """GEMMs with a weight operand and lookups (the layers a plan gives bits)."""
        return [layer for layer in self.layers if layer.weight is not None]

    @property
    def lookups(self) -> list[GemmLayer]:
        """The table lookups (op ``embedding``): weight only, no MACs."""
        return [layer for layer in self.layers if layer.op.lookup]

    @property
    def gemm_params(self) -> int:
        """Weight elements of GEMMs and lookups, each shared weight (a tied table) counted once."""
        sizes: dict[str, int] = {}
        for layer in self.weight_layers:
            sizes[layer.weight] = max(sizes.get(layer.weight, 0), layer.params)
        return sum(sizes.values())

    @property
    def suspect_uncovered(self) -> list[UncoveredParameter]:
        """Uncovered parameters that may hide a GEMM: read by an op bitplan cannot count, or not read at all."""
        return [entry for entry in self.uncovered if entry.kind.suspect]

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def fingerprint(self) -> str:
        """Hash of GEMM names and weight shapes: identifies the architecture, not the input size.

        Lookups are left out, so plans made before lookups were layers still match their model."""
        digest = hashlib.sha256()
        for layer in self.weight_layers:
            if layer.op.lookup:
                continue
            digest.update(f"{layer.name}|{layer.weight}|{layer.weight_shape}\n".encode())
        return digest.hexdigest()[:16]
