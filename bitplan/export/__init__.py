"""A trained plan as files other stacks load: packed safetensors, ONNX QDQ, torchao, compressed-tensors, ModelOpt.

One module per format, each a function working on a model in memory; ``export_model`` (the CLI's
``bitplan export``) loads the model and its checkpoint first. Formats, widths and what runs them:
docs/export.md.

Example:
    >>> save_packed(model, plan, "/tmp/model.safetensors")  # doctest: +SKIP
    >>> model.load_state_dict(load_packed("/tmp/model.safetensors"))  # doctest: +SKIP
"""

from bitplan.export.compressed import to_compressed_tensors
from bitplan.export.modelopt import to_modelopt
from bitplan.export.onnx_qdq import to_onnx
from bitplan.export.packed import PackedHeader, load_packed, save_packed
from bitplan.export.run import ExportReport, export_model
from bitplan.export.torchao_config import to_torchao
from bitplan.export.weights import ExportWarning

__all__ = [
    "save_packed",
    "load_packed",
    "to_torchao",
    "to_compressed_tensors",
    "to_onnx",
    "to_modelopt",
    "export_model",
    "ExportReport",
    "PackedHeader",
    "ExportWarning",
]
