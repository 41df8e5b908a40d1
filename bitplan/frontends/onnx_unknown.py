"""ONNX ops bitplan has no rule for: listed in the profile (``unknown_ops``), so no GEMM goes missing unseen."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from bitplan.frontends.onnx_graph import STANDARD_DOMAINS
from bitplan.frontends.onnx_ops import HANDLERS, has_rule

if TYPE_CHECKING:
    from onnx import NodeProto

GEMM_LIKE = re.compile(r"Conv|MatMul|Gemm|Attention|LSTM|GRU|RNN|Einsum")


def unknown_op(node: NodeProto) -> bool:
    """An op bitplan has no rule for: any op of a custom domain (unless it is an alias of a standard op
    with a rule), a standard op this onnx does not define or that looks like a GEMM without a rule, and
    control flow whose body holds GEMMs (bodies are not profiled)."""
    if has_rule(node):
        return False
    if node.domain not in STANDARD_DOMAINS or node.op_type not in _standard_ops() or GEMM_LIKE.search(node.op_type):
        return True
    return _hides_gemms(node)


@functools.cache
def _standard_ops() -> frozenset[str]:
    import onnx

    return frozenset(schema.name for schema in onnx.defs.get_all_schemas_with_history() if schema.domain in STANDARD_DOMAINS)


def _hides_gemms(node: NodeProto) -> bool:
    """A control-flow op whose body holds GEMMs (or ops with no rule): both go unprofiled."""
    bodies = [attr.g for attr in node.attribute if attr.g.node] + [g for attr in node.attribute for g in attr.graphs]
    return any(unknown_op(inner) or inner.op_type in HANDLERS for body in bodies for inner in body.node)
