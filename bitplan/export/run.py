"""``bitplan export``: load a model (and its trained weights), check the plan fits, write one format.

The library function the CLI calls; each format's own function (``save_packed``, ``to_onnx``,
``to_torchao``, ``to_compressed_tensors``, ``to_modelopt``) works on a model already in memory.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from bitplan.atomic import atomic_write_text
from bitplan.choices import FULL_PRECISION_BITS, ExportFormat, ZeroPoint
from bitplan.errors import ExportError, TrainingError
from bitplan.export.checkpoint import TrainedState, load_trained_state
from bitplan.export.weights import ExportWarning, require
from bitplan.plan import BitPlan, load_plan
from bitplan.trust import spec_from_file


class ExportReport(BaseModel):
    """What ``bitplan export`` wrote."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="The model spec exported.")
    format: ExportFormat
    plan_fingerprint: str
    zero_point: ZeroPoint = Field(description="The plan's grid.")
    output: str
    checkpoint: str | None = Field(description="Where the weights came from; null = the model's own.")
    bytes: int = Field(description="Bytes written (a directory's files summed).")
    plan_mbit: float = Field(description="The plan's size: Σ planned params × bits + other params × 32, / 10^6.")
    fp32_mbit: float
    layers_quantized: int = Field(description="Planned weights below 32 bits.")
    seconds: float = Field(description="Wall time of the export, loading included.")
    warnings: list[str] = Field(description="What the export changed to fit the format (widths, grid, layers left out).")


def export_model(
    model: str | None,
    plan: BitPlan | str | os.PathLike,
    format: ExportFormat | str,
    output: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    strict: bool = False,
    trust_model_spec: bool = False,
) -> ExportReport:
    """Export ``model`` quantized as ``plan`` says, in ``format``, to ``output``.

    Args:
        model: Model spec (None: the checkpoint's, else the plan's).
        plan: The plan (object or file).
        format: packed, onnx, torchao, compressed-tensors or modelopt.
        output: File (packed ``.safetensors``, ``.onnx``, torchao/modelopt JSON) or directory
            (compressed-tensors).
        checkpoint: A run directory, its ``checkpoint.pt``, or a saved state_dict; None exports
            the weights the model's factory builds.
        strict: Refuse instead of widening a width or leaving a layer out.
        trust_model_spec: With ``model`` None, resolve the checkpoint's or plan's spec even when it
            names code (files never run code otherwise; see ``bitplan.trust``).

    Returns:
        The ``ExportReport``.

    Raises:
        PlanError: The plan was made for another model.
        TrainingError: The checkpoint cannot be read or does not fit the model.
        ExportError: A missing optional dependency, or ``strict`` and the plan does not fit the format.
        SpecError: The model spec cannot be built, or (``model`` None) a code spec from a file is not trusted.

    Example:
        >>> export_model("zoo:resnet20", "plan.json", "packed", "/tmp/r20.safetensors")  # doctest: +SKIP
    """
    started = time.perf_counter()
    format = _format(format)
    if not isinstance(plan, BitPlan):
        plan = load_plan(Path(plan))
    trained = load_trained_state(checkpoint) if checkpoint is not None else None
    saved = trained.model_spec if trained else None
    spec = model or spec_from_file(saved or plan.model, "the checkpoint" if saved else "the plan", trusted=trust_model_spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExportWarning)
        if format is ExportFormat.modelopt:
            from bitplan.export.modelopt import to_modelopt

            atomic_write_text(output, json.dumps(to_modelopt(plan, strict=strict), indent=2) + "\n")
        else:
            _write(format, _load(spec, plan, trained, format), plan, Path(output), strict)
    estimates = plan.estimates
    return ExportReport(
        model=spec,
        format=format,
        plan_fingerprint=plan.fingerprint,
        zero_point=plan.zero_point,
        output=str(output),
        checkpoint=str(checkpoint) if checkpoint is not None else None,
        bytes=_size(Path(output)),
        plan_mbit=estimates.mbit,
        fp32_mbit=estimates.mbit_fp32,
        layers_quantized=sum(1 for bits in plan.bits_by_weight().values() if bits < FULL_PRECISION_BITS),
        seconds=time.perf_counter() - started,
        warnings=[str(item.message) for item in caught if issubclass(item.category, ExportWarning)],
    )


def _format(format: ExportFormat | str) -> ExportFormat:
    try:
        return ExportFormat(format)
    except ValueError:
        choices = ", ".join(member.value for member in ExportFormat)
        raise ExportError(f"unknown export format `{format}`; choose one of {choices}.") from None


def _load(spec: str, plan: BitPlan, trained: TrainedState | None, format: ExportFormat) -> tuple[nn.Module, tuple]:
    """The model with its weights, checked against the plan; quantized when ONNX needs trained ranges."""
    from bitplan.qat import apply, load_quant_state_dict, verify_plan
    from bitplan.spec import load_model

    loaded = load_model(spec, options=trained.model_options if trained else None)
    network = loaded.model
    if trained is not None:
        try:
            network.load_state_dict(trained.weights)
        except RuntimeError as error:
            raise TrainingError(
                f"the checkpoint does not fit model `{spec}` ({str(error).splitlines()[0]}); pass the model spec "
                "it was trained with as MODEL"
            ) from None
    verify_plan(network, plan, loaded.example_inputs)
    ranges = trained.quant.get("ranges") if trained is not None else None
    if format is ExportFormat.onnx and plan.activation_bits is not None and ranges:
        apply(network, plan, loaded.example_inputs, verify=False)
        load_quant_state_dict(network, trained.quant)
    return network.eval(), loaded.example_inputs


def _write(format: ExportFormat, loaded: tuple[nn.Module, tuple], plan: BitPlan, output: Path, strict: bool) -> None:
    network, example_inputs = loaded
    if format is ExportFormat.packed:
        from bitplan.export.packed import save_packed

        save_packed(network, plan, output)
    elif format is ExportFormat.onnx:
        from bitplan.export.onnx_qdq import to_onnx

        require("onnx")
        to_onnx(network, plan, output, example_inputs, strict=strict)
    elif format is ExportFormat.torchao:
        from bitplan.export.torchao_config import to_torchao

        prepare = to_torchao(plan, network, strict=strict)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExportWarning)  # the prepare stage has said it
            convert = to_torchao(plan, network, stage="convert")
        require("torchao")
        from torchao.core.config import config_to_dict

        text = json.dumps({"prepare": config_to_dict(prepare), "convert": config_to_dict(convert)}, indent=2)
        atomic_write_text(output, text + "\n")
    elif format is ExportFormat.compressed_tensors:
        from bitplan.export.compressed import to_compressed_tensors

        to_compressed_tensors(network, plan, output, strict=strict)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
    return path.stat().st_size if path.exists() else 0
