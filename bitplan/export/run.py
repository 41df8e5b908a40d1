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
from bitplan.choices import ExportFormat, ZeroPoint
from bitplan.errors import ExportError, TrainingError
from bitplan.export.checkpoint import TrainedState, load_trained_state
from bitplan.export.weights import ExportWarning, name_list, refuse_or_warn, require
from bitplan.plan import BitPlan, as_plan, plan_estimates
from bitplan.torchfile import state_dict_mismatch
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
    layers_quantized: int = Field(description="Weights the written format stores quantized (those it left in float32 not counted).")
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
    allow_nonfinite: bool = False,
    trust_model_spec: bool = False,
) -> ExportReport:
    """Export ``model`` quantized as ``plan`` says, in ``format``, to ``output``.

    Every check runs before anything is written: the plan's fingerprint, that it covers every
    weight GEMM of the model (``strict`` refuses, else a warning names the layers left in
    float32), that the checkpoint was trained with this plan (``strict`` refuses, else a warning
    names the differing layers), and that no weight holds NaN or Inf.

    Args:
        model: Model spec (None: the checkpoint's, else the plan's).
        plan: The plan (object or file).
        format: packed, onnx, torchao, compressed-tensors, modelopt or hf.
        output: File (packed ``.safetensors``, ``.onnx``, torchao/modelopt JSON) or directory
            (compressed-tensors, hf).
        checkpoint: A run directory, its ``checkpoint.pt``, or a saved state_dict; None exports
            the weights the model's factory builds.
        strict: Refuse instead of widening a width, leaving a layer out, or exporting weights
            trained with another plan.
        allow_nonfinite: Export a model holding NaN/Inf as the format allows (planned weights
            with them stay in float32), with a warning, instead of refusing it.
        trust_model_spec: With ``model`` None, resolve the checkpoint's or plan's spec even when it
            names code (files never run code otherwise; see ``bitplan.trust``).

    Returns:
        The ``ExportReport``.

    Raises:
        PlanError: The plan was made for another model.
        TrainingError: The checkpoint cannot be read or does not fit the model.
        NonFiniteWeightsError: A weight holds NaN or Inf (without ``allow_nonfinite``).
        ExportError: A missing optional dependency, or ``strict`` and the plan does not fit the
            format, the model or the checkpoint.
        SpecError: The model spec cannot be built, or (``model`` None) a code spec from a file is not trusted.

    Example:
        >>> export_model("zoo:resnet20", "plan.json", "packed", "/tmp/r20.safetensors")  # doctest: +SKIP
    """
    started = time.perf_counter()
    format = _format(format)
    plan = as_plan(plan)
    trained = load_trained_state(checkpoint) if checkpoint is not None else None
    saved = trained.model_spec if trained else None
    spec = model or spec_from_file(saved or plan.model, "the checkpoint" if saved else "the plan", trusted=trust_model_spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExportWarning)
        if trained is not None and trained.plan is not None:
            compare_training_plan(trained.plan, plan, strict=strict)
        loaded = _load(spec, plan, trained, format, strict)
        quantized = _write(format, loaded, plan, Path(output), strict, allow_nonfinite)
    estimates = plan_estimates(plan)
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
        layers_quantized=quantized,
        seconds=time.perf_counter() - started,
        warnings=[str(item.message) for item in caught if issubclass(item.category, ExportWarning)],
    )


def compare_training_plan(trained: dict, plan: BitPlan, *, strict: bool) -> None:
    """Warn (``strict``: refuse) when the checkpoint's run trained with bits or a grid other than ``plan``'s.

    Raises:
        ExportError: ``strict`` and the plans differ.
    """
    try:
        other = BitPlan.model_validate(trained)
    except ValueError:
        return  # a checkpoint of an older plan schema: nothing to compare against
    theirs, ours = other.bits_by_name(), plan.bits_by_name()
    differing = [
        f"`{name}` (trained {theirs.get(name, 'absent')}, plan {ours.get(name, 'absent')})"
        for name in dict.fromkeys([*theirs, *ours])
        if theirs.get(name) != ours.get(name)
    ]
    settings = [
        f"{field} (trained {getattr(other, field)}, plan {getattr(plan, field)})"
        for field in ("zero_point", "weight_granularity", "activation_bits")
        if getattr(other, field) != getattr(plan, field)
    ]
    if differing or settings:
        shown = ", ".join([*settings, *differing[:8]]) + (f" and {len(differing) - 8} more layers" if len(differing) > 8 else "")
        refuse_or_warn(
            f"the checkpoint was trained with another plan than the one exported: {shown}",
            "--strict refuses it: export with the plan the run trained with (its config.json).",
            strict=strict,
            consequence="; the exported weights are not the ones training computed with",
        )


def _format(format: ExportFormat | str) -> ExportFormat:
    try:
        return ExportFormat(format)
    except ValueError:
        choices = ", ".join(member.value for member in ExportFormat)
        raise ExportError(f"unknown export format `{format}`; choose one of {choices}.") from None


def _load(spec: str, plan: BitPlan, trained: TrainedState | None, format: ExportFormat, strict: bool) -> tuple[nn.Module, tuple]:
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
                f"the checkpoint does not fit model `{spec}` ({state_dict_mismatch(error)}); pass the model spec it was "
                "trained with as MODEL"
            ) from None
    profile = verify_plan(network, plan, loaded.example_inputs)
    # a lookup without an entry is a plan made before lookups were layers: its table is fp32 there too
    planned = plan.bits_by_name()
    _require_coverage([layer.name for layer in profile.weight_layers if layer.name not in planned and not layer.op.lookup], spec, strict)
    ranges = trained.quant.get("ranges") if trained is not None else None
    if format is ExportFormat.onnx and plan.activation_bits is not None and ranges:
        apply(network, plan, loaded.example_inputs, verify=False)
        load_quant_state_dict(network, trained.quant)
    return network.eval(), loaded.example_inputs


def _require_coverage(uncovered: list[str], spec: str, strict: bool) -> None:
    """Warn (``strict``: refuse) naming the model's weight GEMMs the plan has no entry for: they stay float32.

    Raises:
        ExportError: ``strict`` and some weight GEMM is not in the plan.
    """
    if uncovered:
        refuse_or_warn(
            f"the plan has no entry for {len(uncovered)} weight GEMM(s) of `{spec}`: {name_list(uncovered)}",
            "--strict refuses a plan that does not cover every weight GEMM: make the plan for this model with "
            "`bitplan plan` (`bitplan check PLAN` lists what is missing).",
            strict=strict,
            consequence=": they are exported in float32",
        )


def _write(
    format: ExportFormat, loaded: tuple[nn.Module, tuple], plan: BitPlan, output: Path, strict: bool, allow_nonfinite: bool
) -> int:
    """Write ``output``; returns how many weights the format stores quantized (not those it left in float)."""
    network, example_inputs = loaded
    if format is ExportFormat.packed:
        from bitplan.export.packed import save_packed

        return len(save_packed(network, plan, output, allow_nonfinite=allow_nonfinite).layers)
    if format is ExportFormat.onnx:
        from bitplan.export.onnx_qdq import to_onnx

        onnx = require("onnx")
        to_onnx(network, plan, output, example_inputs, strict=strict, allow_nonfinite=allow_nonfinite)
        return sum(1 for tensor in onnx.load(str(output), load_external_data=False).graph.initializer if tensor.name.endswith("_quantized"))
    if format is ExportFormat.modelopt:
        from bitplan.export.modelopt import to_modelopt

        config = to_modelopt(plan, network, strict=strict, allow_nonfinite=allow_nonfinite)
        atomic_write_text(output, json.dumps(config, indent=2) + "\n")
        return sum(1 for entry in config["quant_cfg"] if not entry["quantizer_name"].endswith(("input_quantizer", "*")))
    if format is ExportFormat.torchao:
        from bitplan.export.torchao_config import to_torchao

        prepare = to_torchao(plan, network, strict=strict, allow_nonfinite=allow_nonfinite)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExportWarning)  # the prepare stage has said it
            convert = to_torchao(plan, network, stage="convert", allow_nonfinite=allow_nonfinite)
        require("torchao")
        from torchao.core.config import config_to_dict

        text = json.dumps({"prepare": config_to_dict(prepare), "convert": config_to_dict(convert)}, indent=2)
        atomic_write_text(output, text + "\n")
        return len(prepare.fqn_to_config)
    if format is ExportFormat.hf:
        from bitplan.export.hf import to_hf

        return to_hf(network, plan, output, strict=strict, allow_nonfinite=allow_nonfinite)
    from bitplan.export.compressed import to_compressed_tensors

    to_compressed_tensors(network, plan, output, strict=strict, allow_nonfinite=allow_nonfinite)
    config = json.loads((output / "config.json").read_text())["quantization_config"]["config_groups"]
    return sum(len(group["targets"]) for group in config.values())


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
    return path.stat().st_size if path.exists() else 0
