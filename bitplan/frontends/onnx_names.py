"""Parameter names from the metadata ``torch.onnx.export`` leaves on each ONNX node.

The exporter keeps parameter names on initializers it does not touch ("layer1.0.conv1.weight"), but its
optimizer folds some of them into new initializers with generated names: a Linear on a 3-D input becomes
``MatMul(x, val_12)`` with ``val_12`` the transposed weight, and an LSTM's weights are concatenated into one
``val_125``. The node still records the torch module it came from (``pkg.torch.onnx.name_scopes``) and the
aten call with its parameter placeholders (``pkg.torch.onnx.fx_node``, e.g. ``%p_layer1_0_fc_weight``); this
module turns those back into torch names so an ONNX profile lines up with the PyTorch one.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnx import NodeProto

# Initializer names that exporters invent: torch.onnx's dynamo exporter (val_12) and TorchScript exporter
# (onnx::MatMul_123). Any other name is taken to be the parameter's own name.
GENERATED_NAME = re.compile(r"^(_?val_\d+|onnx::.*)$")
PLACEHOLDER = re.compile(r"%p_(\w+)")
SCOPES_KEY = "pkg.torch.onnx.name_scopes"
FX_NODE_KEY = "pkg.torch.onnx.fx_node"


@dataclass(frozen=True)
class TorchScope:
    """Where a node came from in the torch model.

    ``module_path`` is the module's qualified name ("" for the root), ``call`` the text of the aten
    call the node implements (one call can become several ONNX nodes), ``leaf`` the call's name.
    """

    module_path: str
    call: str
    leaf: str


def is_generated_name(name: str) -> bool:
    """Whether an initializer name was invented by an exporter rather than taken from a parameter."""
    return bool(GENERATED_NAME.match(name))


def torch_scope(node: NodeProto) -> TorchScope | None:
    """The torch module and call behind ``node``, or None when the exporter left no metadata."""
    meta = {prop.key: prop.value for prop in node.metadata_props}
    if SCOPES_KEY not in meta:
        return None
    try:
        scopes = ast.literal_eval(meta[SCOPES_KEY])
    except (ValueError, SyntaxError):
        return None
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        return None
    # ['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'conv2d']: each entry is a full module path, then the call.
    module_path = scopes[-2] if len(scopes) >= 2 else ""
    return TorchScope(module_path=module_path, call=meta.get(FX_NODE_KEY, ""), leaf=scopes[-1])


def recovered_weight_fqn(scope: TorchScope | None) -> str | None:
    """The torch name of the weight a node's aten call reads, e.g. "blocks.0.fc.weight".

    The call's placeholders are ``p_`` plus the parameter name with dots turned into underscores; only
    placeholders under the node's own module are trusted, so the split back into a name is unambiguous.
    """
    if scope is None:
        return None
    prefix = _mangle(scope.module_path) + "_" if scope.module_path else ""
    suffixes = [p[len(prefix):] for p in PLACEHOLDER.findall(scope.call) if p.lower().startswith(prefix.lower())]
    suffixes = [s for s in suffixes if s and not s.startswith("bias")]
    if "weight" in suffixes:
        suffix = "weight"
    elif len(set(suffixes)) == 1:
        suffix = suffixes[0]
    else:  # none, or several parameters (an unrolled RNN step) with no way to tell which one this is
        return None
    return f"{scope.module_path}.{suffix}" if scope.module_path else suffix


def reads_parameter(scope: TorchScope, name: str) -> bool:
    """Whether the aten call behind a node reads torch parameter ``name`` (as placeholder ``%p_<name>``).

    A folded value (``slice_1``: a buffer or parameter sliced at export) appears as ``%slice_1`` instead.
    """
    return f"%p_{_mangle(name)}".lower() in scope.call.lower()


def rnn_weight_fqn(scope: TorchScope, layer: int, hidden: bool, reverse: bool) -> str:
    """The torch name of one RNN weight: ``{module}.weight_{ih|hh}_l{layer}[_reverse]``."""
    name = f"weight_{'hh' if hidden else 'ih'}_l{layer}{'_reverse' if reverse else ''}"
    return f"{scope.module_path}.{name}" if scope.module_path else name


def _mangle(module_path: str) -> str:
    """How torch.export spells a module path inside placeholder names."""
    return re.sub(r"\W", "_", module_path)
