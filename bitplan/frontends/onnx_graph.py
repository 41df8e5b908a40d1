"""An index over one shape-inferred ONNX graph: shapes, constants, producers, consumers, weights.

The op handlers (``onnx_ops``) ask it questions about tensors; it never decides what a GEMM is.
A *weight* is an operand computed from initializers alone (no graph input reaches it); its name is
the initializer it comes from, found by walking back through layout ops (Transpose, Reshape, Cast...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bitplan.errors import OnnxError
from bitplan.frontends.onnx_names import is_generated_name, reads_parameter, recovered_weight_fqn, torch_scope

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto, TensorProto

Dim = int | str | None
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})
# Integer tensors up to this many elements may be read or computed: shape inference needs their values.
SMALL_TENSOR = 4096

# Ops that only move, relabel or re-encode their first input: a weight seen through them is the same weight.
LAYOUT_OPS = frozenset(
    {"Identity", "Cast", "CastLike", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
     "DequantizeLinear", "QuantizeLinear"}
)
# Ops that select or repeat a tensor's elements: what reads their output reads the parameter (a
# positional embedding sliced to the sequence length, then added).
SELECTION_OPS = frozenset({"Slice", "Expand", "Tile", "Split"})
# Consumers that read only a tensor's shape: they do not "use" a weight.
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})
# Ops whose outputs are not a function of their inputs, so they are never constant.
NONDETERMINISTIC_OPS = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
)
# Input slots that hold trainable parameters besides GEMM weights: biases, norm affines, embeddings.
PARAMETER_SLOTS: dict[str, frozenset[int]] = {
    "Conv": frozenset({2}), "ConvTranspose": frozenset({2}), "QLinearConv": frozenset({8}), "Gemm": frozenset({2}),
    "LSTM": frozenset({3, 7}), "GRU": frozenset({3}), "RNN": frozenset({3}),
    "BatchNormalization": frozenset({1, 2}), "LayerNormalization": frozenset({1, 2}),
    "InstanceNormalization": frozenset({1, 2}), "GroupNormalization": frozenset({1, 2}),
    "RMSNormalization": frozenset({1}), "Gather": frozenset({0}), "PRelu": frozenset({1}),
}
# Input slots that hold state or statistics, never parameters (torch calls these buffers or inputs).
NON_PARAMETER_SLOTS: dict[str, frozenset[int]] = {
    "BatchNormalization": frozenset({3, 4}), "LSTM": frozenset({4, 5, 6}), "GRU": frozenset({4, 5}),
    "RNN": frozenset({4, 5}), "DequantizeLinear": frozenset({1, 2}), "QuantizeLinear": frozenset({1, 2}),
    "ConvInteger": frozenset({2, 3}), "MatMulInteger": frozenset({2, 3}),
    "QLinearConv": frozenset({1, 2, 4, 5, 6, 7}), "QLinearMatMul": frozenset({1, 2, 4, 5, 6, 7}),
}
FLOAT_TYPES = frozenset({1, 10, 11, 16, 17, 18, 19, 20, 23})  # float, float16, double, bfloat16, float8*, float4


@dataclass(frozen=True)
class WeightRef:
    """The W operand of a GEMM: its parameter name, stored shape and the initializer it is read from.

    ``initializer`` is None when the weight is computed from several initializers (``name`` is then the
    tensor's own name). ``name`` differs from ``initializer`` when the exporter renamed a folded copy
    of a parameter and the torch metadata says which parameter it was.
    """

    name: str
    shape: list[int]
    initializer: str | None
    source: str  # the constant tensor the weight is read from (an initializer or a folded value)


class OnnxGraph:
    """Lookups over a shape-inferred ``GraphProto``; build once per profile."""

    def __init__(self, graph: GraphProto) -> None:
        self.nodes: list[NodeProto] = list(graph.node)
        self.initializers: dict[str, TensorProto] = {t.name: t for t in graph.initializer}
        # Old exporters also list initializers as graph inputs; only the others are fed by the user.
        self.inputs = [v for v in graph.input if v.name not in self.initializers]
        self.producer: dict[str, NodeProto] = {}
        self.consumers: dict[str, list[tuple[NodeProto, int]]] = {}
        for node in self.nodes:
            for out in node.output:
                if out:
                    self.producer[out] = node
            for index, name in enumerate(node.input):
                if name:
                    self.consumers.setdefault(name, []).append((node, index))
        self._shapes: dict[str, list[Dim] | None] = {}
        for value in [*graph.input, *graph.value_info, *graph.output]:
            self._shapes[value.name] = value_shape(value)
        for name, tensor in self.initializers.items():
            self._shapes[name] = list(tensor.dims)
        self.constants = self._find_constants()

    def _find_constants(self) -> set[str]:
        """Tensors computed from initializers and Constant nodes only (nodes are topologically sorted)."""
        constants = set(self.initializers)
        for node in self.nodes:
            inputs = [name for name in node.input if name]
            if node.op_type in NONDETERMINISTIC_OPS or any(a.g.node or a.graphs for a in node.attribute):
                continue
            if node.op_type == "Constant" or (inputs and all(name in constants for name in inputs)):
                constants.update(out for out in node.output if out)
        return constants

    def shape(self, name: str) -> list[Dim] | None:
        """The inferred shape of a tensor: ints, symbolic names (str) or None per dim; None if unknown."""
        return self._shapes.get(name)

    def static_shape(self, name: str, node: NodeProto) -> list[int]:
        """The shape of ``name`` with every dim known, or an OnnxError naming the node that needs it."""
        shape = self.shape(name)
        if shape is None or not all(isinstance(dim, int) and dim >= 0 for dim in shape):
            raise OnnxError(
                f"ONNX shape inference could not determine the shape of `{name}` (an input of {node.op_type} "
                f"node `{node.name or node.output[0]}`; got {format_shape(shape)}), so its GEMM size is unknown. "
                "Pass concrete input shapes with `--input-shape` (e.g. `--input-shape 1x3x224x224`; `--batch N` "
                "fixes only the leading dimension), or export the model with static shapes."
            )
        return [int(dim) for dim in shape]

    def is_constant(self, name: str) -> bool:
        return name in self.constants

    def trace_back(self, name: str) -> str:
        """Follow ``name`` back through layout ops to the tensor they all read."""
        while name not in self.initializers and name in self.producer:
            node = self.producer[name]
            if node.op_type not in LAYOUT_OPS or not node.input:
                break
            name = node.input[0]
        return name

    def resolve_weight(self, name: str, node: NodeProto) -> WeightRef | None:
        """The weight behind GEMM operand ``name`` of ``node``, or None when it is an activation."""
        if not name or not self.is_constant(name):
            return None
        source = self.trace_back(name)
        initializer = source if source in self.initializers else None
        shape = self.shape(source) or self.shape(name) or []
        param = source
        if initializer is not None and is_generated_name(initializer):
            param = recovered_weight_fqn(torch_scope(node)) or initializer
        return WeightRef(name=param, shape=[int(d) for d in shape if isinstance(d, int)], initializer=initializer,
                         source=source)

    def terminal_uses(self, name: str, through: frozenset[str] = frozenset()) -> list[tuple[NodeProto, int]]:
        """Consumers of ``name`` seen through layout ops (and the ops in ``through``), ignoring ops that read only its shape."""
        uses: list[tuple[NodeProto, int]] = []
        for node, index in self.consumers.get(name, []):
            if node.op_type in SHAPE_ONLY_OPS:
                continue
            if (node.op_type in LAYOUT_OPS or node.op_type in through) and index == 0:
                for out in node.output:
                    uses.extend(self.terminal_uses(out, through))
            else:
                uses.append((node, index))
        return uses

    def is_parameter(self, name: str, gemm_weight_sources: set[str], biased_gemm_outputs: set[str]) -> bool:
        """Whether initializer ``name`` holds trainable parameters (the rule is in docs/onnx.md).

        Args:
            name: an initializer name.
            gemm_weight_sources: initializers read as the W operand of some GEMM.
            biased_gemm_outputs: outputs of GEMMs with a weight (an Add of a constant to one is a bias).
        """
        uses = self.terminal_uses(name)
        if not uses or all(index in NON_PARAMETER_SLOTS.get(node.op_type, ()) for node, index in uses):
            return False
        if name in gemm_weight_sources:  # any element type: quantized weights are int8
            return True
        tensor = self.initializers[name]
        if tensor.data_type not in FLOAT_TYPES:
            return False
        feeds_slot = any(
            index in PARAMETER_SLOTS.get(node.op_type, ())
            or (node.op_type == "Add" and any(other in biased_gemm_outputs for other in node.input))
            for node, index in uses
        )
        if feeds_slot:
            return True
        scopes = [scope for scope in (torch_scope(node) for node, _ in uses) if scope is not None and scope.call]
        if scopes:  # the torch exporter says whether the ops read it as a parameter
            return any(reads_parameter(scope, name) for scope in scopes)
        return len(tensor.dims) > 0 and not is_generated_name(name)

    def numel(self, name: str) -> int:
        return math.prod(self.initializers[name].dims)

    def call_index(self, node: NodeProto) -> int:
        """How many earlier nodes of ``node``'s type implement the same torch call (an LSTM's layer index)."""
        scope = torch_scope(node)
        count = 0
        for other in self.nodes:
            if other is node:
                break
            other_scope = torch_scope(other) if other.op_type == node.op_type else None
            count += other_scope is not None and scope is not None and other_scope.call == scope.call
        return count


def format_shape(shape: list[Dim] | None) -> str:
    """``(batch_size, 3, ?, 32)``: parentheses, because the CLI renders messages as rich markup."""
    if shape is None:
        return "unknown"
    return "(" + ", ".join("?" if dim is None else str(dim) for dim in shape) + ")"


def value_shape(value: object) -> list[Dim] | None:
    """Dims of a ValueInfoProto: int when known, the symbol's name when symbolic, None when blank."""
    tensor_type = value.type.tensor_type  # type: ignore[attr-defined]
    if not tensor_type.HasField("shape"):
        return None
    dims: list[Dim] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return dims
