"""The ONNX front end, ``trace(path) -> ModelProfile``: every GEMM of an ONNX model, from the graph and ONNX shape inference.

Weights are never read: neither external data (so models over 2 GB work) nor embedded values (``onnx_read``),
shapes come from ``onnx.shape_inference``, and each Conv/ConvTranspose/Gemm/MatMul/Einsum/LSTM/GRU/RNN/
Attention node becomes GEMM records with the same definitions as the PyTorch front end (docs/onnx.md).
``onnx`` is imported inside the function, so ``import bitplan`` works without it.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bitplan.errors import OnnxError
from bitplan.frontends.builder import ProfileBuilder
from bitplan.frontends.onnx_graph import (
    SELECTION_OPS,
    SMALL_TENSOR,
    STANDARD_DOMAINS,
    OnnxGraph,
    format_shape,
    value_shape,
)
from bitplan.frontends.onnx_names import torch_scope
from bitplan.frontends.onnx_read import read_graph_bytes
from bitplan.frontends.ops import Gemm
from bitplan.profile.schema import ModelProfile, Tracer, UnknownOp

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto


INTEGER_TYPES = frozenset({2, 3, 4, 5, 6, 7, 12, 13})
FOLD_ROUNDS = 4


def trace(
    path: str | Path,
    *,
    input_shapes: list[list[int]] | None = None,
    batch: int | None = None,
    name: str | None = None,
) -> ModelProfile:
    """Profile every GEMM of the ONNX model at ``path`` without reading its weights.

    Args:
        path: an ``.onnx`` file; weights stored as external data are never read.
        input_shapes: one shape per graph input, in order, replacing the declared shapes (resolves
            symbolic dims such as ``batch_size``); fewer shapes than inputs leave the rest as declared.
        batch: the leading dim of every graph input, applied after ``input_shapes``.
        name: what to call the model in the profile (default: the path as given).

    Returns:
        A ``ModelProfile`` with ``tracer=Tracer.onnx`` and one ``GemmLayer`` per GEMM in graph order.

    Raises:
        OnnxError: the file is missing or not an ONNX model, shape inference fails, a needed dim stays
            symbolic (pass ``input_shapes``/``--input-shape``), or ``input_shapes`` does not fit the inputs.

    Example:
        >>> profile = trace("resnet20.onnx", batch=8)  # doctest: +SKIP
        >>> profile.layers[0].k, profile.layers[0].m  # doctest: +SKIP
        (27, 8192)
    """
    onnx = _import_onnx()
    path = Path(path)
    model = _load(onnx, path)
    overridden = _override_inputs(model, path, input_shapes, batch)
    model = _infer_shapes(onnx, model, path, overridden)
    shapes = _resolved_input_shapes(model, path)
    graph = OnnxGraph(_fold_until_static(onnx, model, path, overridden).graph)
    _check_reshapes(graph, overridden)
    drafts, unknown = _find_gemms(graph)
    builder = ProfileBuilder()
    _add_layers(builder, graph, drafts)
    parameters = _parameters(graph, drafts)
    for initializer in parameters:
        for node, _ in graph.terminal_uses(initializer, through=SELECTION_OPS):  # how it is read: lookup, elementwise...
            builder.note_consumer(initializer, node.op_type)
    profile = builder.build(
        model=name or str(path),
        batch=shapes[0][0] if shapes and shapes[0] else 1,
        tracer=Tracer.onnx,
        input_shapes=shapes,
        parameters=parameters,
        total_params=_total_params(graph, drafts, parameters),
    )
    listed = [UnknownOp(op=op, count=count) for op, count in sorted(unknown.items())]
    return profile.model_copy(update={"unknown_ops": listed}) if listed else profile


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise OnnxError(
            "profiling an ONNX file needs the `onnx` package, which is not installed; install it with "
            "`pip install onnx`"
        ) from None
    return onnx


def _load(onnx: Any, path: Path) -> ModelProto:
    """Read the graph (not the weights: ``onnx_read``) and inline local functions, or explain why the
    file is unusable."""
    if not path.is_file():
        where = "is a directory" if path.is_dir() else "does not exist"
        raise OnnxError(f"ONNX file `{path}` {where}; check the path (relative paths start at {Path.cwd()}).")
    from google.protobuf.message import DecodeError

    try:
        model = onnx.ModelProto()
        model.ParseFromString(read_graph_bytes(path, keep_values_up_to=SMALL_TENSOR))
    except (DecodeError, ValueError, RuntimeError, OSError) as error:
        model, reason = None, f"{type(error).__name__}: {error}"
    else:
        reason = "it holds no graph nodes"
    if model is None or not model.HasField("graph") or not model.graph.node:
        raise OnnxError(
            f"`{path}` is not a readable ONNX model ({reason}). The file may be truncated or not ONNX at all; "
            "re-export it (e.g. `torch.onnx.export(model, inputs, 'model.onnx')`) or copy it again."
        )
    _load_small_external_tensors(onnx, model, path)
    if model.functions:
        from onnx import inliner

        model = inliner.inline_local_functions(model)
    return model


def _load_small_external_tensors(onnx: Any, model: ModelProto, path: Path) -> None:
    """Read the integer constants that shape inference needs from external data; leave weights on disk."""
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

    for tensor in model.graph.initializer:
        if uses_external_data(tensor) and tensor.data_type in INTEGER_TYPES and math.prod(tensor.dims) <= SMALL_TENSOR:
            try:
                load_external_data_for_tensor(tensor, str(path.parent))
            except (OSError, ValueError, onnx.checker.ValidationError) as error:
                raise OnnxError(
                    f"initializer `{tensor.name}` of `{path}` lives in an external data file that cannot be read "
                    f"({error}); keep the `.data` file the exporter wrote next to the `.onnx` file."
                ) from None
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]


def _override_inputs(model: ModelProto, path: Path, input_shapes: list[list[int]] | None, batch: int | None) -> bool:
    """Write user shapes into the graph inputs; return whether anything was overridden.

    Stale intermediate shapes (value_info, declared output shapes) are dropped so inference recomputes them.
    """
    initializers = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if input_shapes is not None and len(input_shapes) > len(inputs):
        raise OnnxError(
            f"{len(input_shapes)} input shapes were given but `{path}` has {len(inputs)} input(s) "
            f"({', '.join(f'`{v.name}`' for v in inputs)}); pass one shape per input, joined by `,` in that "
            "order (`--input-shape 1x3x32x32,1x10`)."
        )
    if batch is not None and batch < 1:
        raise OnnxError(f"`--batch` must be at least 1, got {batch}.")
    wanted: dict[str, list[int | str | None]] = {}
    for value, shape in zip(inputs, input_shapes or []):
        declared = value_shape(value)
        if declared is not None and len(declared) != len(shape):
            raise OnnxError(
                f"input `{value.name}` of `{path}` has rank {len(declared)} (shape {format_shape(declared)}) but "
                f"the given shape {'x'.join(map(str, shape))} has rank {len(shape)}; pass a shape with "
                f"{len(declared)} dims."
            )
        if any(int(dim) < 1 for dim in shape):
            raise OnnxError(f"the shape given for input `{value.name}` has a dim below 1: {shape}.")
        wanted[value.name] = [int(dim) for dim in shape]
    if batch is not None:
        for value in inputs:
            dims = wanted.get(value.name) or value_shape(value)
            if dims:
                wanted[value.name] = [batch, *dims[1:]]
    for value in inputs:
        if value.name in wanted:
            shape = value.type.tensor_type.shape
            del shape.dim[:]
            for dim in wanted[value.name]:
                entry = shape.dim.add()
                if isinstance(dim, int):
                    entry.dim_value = dim
                elif isinstance(dim, str):
                    entry.dim_param = dim
    if wanted:
        del model.graph.value_info[:]
        for output in model.graph.output:
            output.type.tensor_type.ClearField("shape")
    return bool(wanted)


def _infer_shapes(onnx: Any, model: ModelProto, path: Path, overridden: bool) -> ModelProto:
    """Strict ONNX shape inference (with constant propagation through Shape/Gather/Concat).

    A model that fails strict inference at its own shapes is retried leniently (partial shapes suffice
    when the GEMMs' shapes are known); with user shapes a failure means the shapes do not fit the graph.
    """
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as error:
        if overridden:
            raise OnnxError(
                f"ONNX shape inference failed on `{path}` with the given input shapes: {error}. The shapes may not "
                "fit the graph (exporters often bake the traced shapes into Reshape nodes); try the shapes the model "
                "was exported with, or re-export it with dynamic axes."
            ) from None
        try:
            return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except onnx.shape_inference.InferenceError as lenient:
            raise OnnxError(f"ONNX shape inference failed on `{path}`: {lenient}. Check the model with "
                            "`python -c \"import onnx; onnx.checker.check_model('MODEL.onnx')\"`.") from None


def _fold_until_static(onnx: Any, model: ModelProto, path: Path, overridden: bool) -> ModelProto:
    """Fold shape computations and infer again while a GEMM operand's shape is unknown (at most 4 rounds)."""
    from bitplan.frontends.onnx_fold import fold_shape_computations

    for _ in range(FOLD_ROUNDS):
        if not _gemm_shapes_unknown(model) or not fold_shape_computations(model):
            break
        model = _infer_shapes(onnx, model, path, overridden)
    return model


def _gemm_shapes_unknown(model: ModelProto) -> bool:
    from bitplan.frontends.onnx_ops import has_rule

    graph = OnnxGraph(model.graph)
    for node in graph.nodes:
        if has_rule(node):
            for name in [*node.input, node.output[0]]:
                shape = graph.shape(name) if name else []
                if shape is None or not all(isinstance(dim, int) for dim in shape):
                    return True
    return False


def _resolved_input_shapes(model: ModelProto, path: Path) -> list[list[int]]:
    """Every graph input's shape, which must now be concrete."""
    initializers = {t.name for t in model.graph.initializer}
    shapes = []
    for value in (v for v in model.graph.input if v.name not in initializers):
        shape = value_shape(value)
        if shape is None or not all(isinstance(dim, int) for dim in shape):
            example = "x".join(str(d) if isinstance(d, int) else "1" for d in shape) if shape else "1x3x224x224"
            raise OnnxError(
                f"input `{value.name}` of `{path}` has shape {format_shape(shape)} with symbolic or unknown dims, "
                "so GEMM sizes cannot be computed. Pass concrete shapes with `--input-shape` (one per input, "
                f"joined by `,` in input order; e.g. `--input-shape {example}`), or `--batch N` when only the "
                "leading dim is symbolic."
            )
        shapes.append([int(dim) for dim in shape])
    return shapes


def _check_reshapes(graph: OnnxGraph, overridden: bool) -> None:
    """Refuse shapes that do not fit a Reshape baked into the graph (inference does not check this)."""
    for node in graph.nodes:
        if node.op_type != "Reshape":
            continue
        before, after = graph.shape(node.input[0]), graph.shape(node.output[0])
        if before and after and all(isinstance(d, int) for d in [*before, *after]):
            if math.prod(before) != math.prod(after):
                hint = (
                    "the graph has the exporter's shapes baked in; profile it at its exported shape (drop "
                    "`--batch`/`--input-shape`) or re-export it with dynamic axes"
                    if overridden else "the model is inconsistent; re-export it"
                )
                raise OnnxError(
                    f"Reshape node `{node.name or node.output[0]}` turns {format_shape(before)} into "
                    f"{format_shape(after)}, which hold different numbers of elements: {hint}."
                )


def _find_gemms(graph: OnnxGraph) -> tuple[list[tuple[Gemm, NodeProto]], Counter[str]]:
    """Every GEMM with its node and depth (1 + the largest GEMM depth among its inputs; constants are 0),
    and the ops with no rule, counted by type (``unknown_op``)."""
    from bitplan.frontends.onnx_ops import gemms_of
    from bitplan.frontends.onnx_unknown import unknown_op

    depth: dict[str, int] = {}
    found: list[tuple[Gemm, NodeProto]] = []
    unknown: Counter[str] = Counter()
    for node in graph.nodes:
        base = max((depth.get(name, 0) for name in node.input if name), default=0)
        drafts = [d for d in gemms_of(node, graph) if min(d.m, d.k, d.n, d.groups) > 0]  # empty GEMMs do no work
        found.extend((replace(draft, depth=base + 1 + draft.step), node) for draft in drafts)
        multiplied = [draft for draft in drafts if not draft.op.lookup]  # a lookup adds no depth after it
        out = base + 1 + max(draft.step for draft in multiplied) if multiplied else base
        depth.update((name, out) for name in node.output if name)
        if unknown_op(node):
            unknown[f"{node.domain}::{node.op_type}" if node.domain not in STANDARD_DOMAINS else node.op_type] += 1
    if unknown:
        warnings.warn(
            f"not profiled (ops with no rule: custom domains, control-flow bodies holding GEMMs): "
            f"{', '.join(sorted(unknown))}; GEMMs inside them are missing from the profile", stacklevel=3,
        )
    return found, unknown


def _add_layers(builder: ProfileBuilder, graph: OnnxGraph, found: list[tuple[Gemm, NodeProto]]) -> None:
    """Feed each GEMM to the builder with its name and whether its weight is read by more than one op."""
    sources: dict[str, set[str]] = {}
    for gemm, _ in found:
        if gemm.weight is not None:
            sources.setdefault(gemm.weight, set()).update(gemm.sources)
    for gemm, node in found:
        shared = False
        if gemm.weight is not None:
            # a folded copy of a parameter (tied embedding transposed by the exporter) shares its uses
            copied = _initializer(gemm, graph) is not None and gemm.weight in graph.initializers
            readers = sources[gemm.weight] | ({gemm.weight} if copied else set())
            shared = sum(len(graph.terminal_uses(source)) for source in readers) > 1
        builder.add("", replace(gemm, name=_gemm_name(gemm, node)), shared=shared)


def _source(gemm: Gemm) -> str:
    """The constant tensor a weight GEMM reads its weight from (an initializer or a folded value)."""
    (source,) = gemm.sources
    return source


def _initializer(gemm: Gemm, graph: OnnxGraph) -> str | None:
    """The initializer a weight GEMM reads, or None when its weight is computed from several."""
    source = _source(gemm)
    return source if source in graph.initializers else None


def _gemm_name(draft: Gemm, node: NodeProto) -> str:
    """The layer name: the weight's module path when known, else the node's name (docs/onnx.md)."""
    if draft.name:
        return draft.name
    scope = torch_scope(node)
    if draft.weight is None:
        prefix = scope.module_path if scope else node.name
        return f"{prefix}.{draft.op.value}" if prefix else draft.op.value
    weight = draft.weight
    if weight.endswith(".weight"):
        return weight.removesuffix(".weight")
    if scope is not None:
        inside = scope.module_path and weight.startswith(scope.module_path + ".")
        return weight if inside or not scope.module_path else scope.module_path
    return node.name or weight


def _parameters(graph: OnnxGraph, found: list[tuple[Gemm, NodeProto]]) -> dict[str, list[int]]:
    """Every initializer that holds parameters → its dims (the coverage ledger's universe)."""
    weight_sources = {_source(gemm) for gemm, _ in found if gemm.weight is not None}
    biased_outputs = {out for gemm, node in found if gemm.weight is not None for out in node.output}
    return {
        name: list(tensor.dims)
        for name, tensor in graph.initializers.items()
        if graph.is_parameter(name, weight_sources, biased_outputs)
    }


def _total_params(graph: OnnxGraph, found: list[tuple[Gemm, NodeProto]], parameters: dict[str, list[int]]) -> int:
    """Elements of the initializers that hold parameters, each counted once (rule in docs/onnx.md).

    Folded copies of one parameter (a transposed tied embedding) count once: initializers are grouped
    by the parameter name their GEMMs give them.
    """
    group_of: dict[str, str] = {name: name for name in parameters}
    for gemm, _ in found:
        initializer = _initializer(gemm, graph) if gemm.weight is not None else None
        if initializer in parameters and gemm.weight in graph.initializers:
            group_of[initializer] = gemm.weight
    sizes: dict[str, int] = {}
    for name in parameters:
        sizes[group_of[name]] = max(sizes.get(group_of[name], 0), graph.numel(name))
    return sum(sizes.values())
