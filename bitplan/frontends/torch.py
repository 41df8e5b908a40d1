"""The PyTorch front end: ``trace(model, inputs) -> ModelProfile`` by the fastest tracer that works.

``bitplan.profile_model`` is this ``trace``; the ONNX front end (``bitplan.frontends.onnx.trace``)
has the same verb and feeds the same ``ProfileBuilder``.
"""

from __future__ import annotations

import torch
from torch import nn

from bitplan.choices import TracerChoice
from bitplan.errors import TraceError
from bitplan.frontends.builder import ProfileBuilder
from bitplan.frontends.moe import uniform_routing
from bitplan.frontends.torch_export import export_gemms
from bitplan.frontends.torch_record import record_gemms
from bitplan.profile.schema import ModelProfile, Tracer


def _run(tracer: Tracer, model: nn.Module, example_inputs: tuple) -> ProfileBuilder:
    """One tracer run, mixture-of-experts modules routing uniformly (``bitplan.frontends.moe``)."""
    with uniform_routing(model) as expert_paths:
        builder = record_gemms(model, example_inputs) if tracer is Tracer.record else export_gemms(model, example_inputs)
    builder.expert_paths = tuple(expert_paths)
    return builder


def trace(
    model: nn.Module,
    example_inputs: tuple | torch.Tensor,
    *,
    name: str | None = None,
    tracer: TracerChoice | str = TracerChoice.auto,
) -> ModelProfile:
    """Profile every GEMM of ``model`` for ``example_inputs`` without allocating weights or activations.

    Args:
        model: any ``nn.Module`` (on any device, including ``meta``).
        example_inputs: the positional inputs of one forward call (a tensor or a tuple).
        name: what to call the model in the profile (default: its class name).
        tracer: ``auto`` (recording, then torch.export when recording fails), ``record`` or ``export``.

    Returns:
        A ``ModelProfile`` with one ``GemmLayer`` per GEMM in execution order.

    Raises:
        TraceError: when no tracer can run the model; the message names the failing op.

    Example:
        >>> from torch import nn
        >>> profile = trace(nn.Linear(4, 3), torch.zeros(2, 4))
        >>> (profile.layers[0].m, profile.layers[0].k, profile.layers[0].n)
        (2, 4, 3)
    """
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    choice = TracerChoice(tracer)
    order = {
        TracerChoice.auto: [Tracer.record, Tracer.export],
        TracerChoice.record: [Tracer.record],
        TracerChoice.export: [Tracer.export],
    }[choice]
    was_training = model.training
    model.eval()  # batch-norm on a batch of one refuses training mode; GEMM shapes are identical
    failures = []
    try:
        for candidate in order:
            try:
                builder = _run(candidate, model, inputs)
                break
            except Exception as error:  # any model code can fail under tracing; we report all of them
                failures.append(f"{candidate.value}: {type(error).__name__}: {_first_line(error)}")
        else:
            raise TraceError(
                f"could not trace `{name or type(model).__name__}`. "
                + " | ".join(failures)
                + ". Check that the example input matches what the model expects (pass `--input-shape`, "
                "e.g. `--input-shape 1x3x32x32` or `1x128:int64` for token ids), or try `--tracer export` "
                "for models whose Python code does not run on meta tensors."
            )
    finally:
        model.train(was_training)
    first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
    return builder.build(
        model=name or type(model).__name__,
        batch=int(first.shape[0]) if first is not None and first.dim() > 0 else 1,
        tracer=candidate,
        input_shapes=[list(t.shape) for t in inputs if isinstance(t, torch.Tensor)],
        parameters={name: tuple(parameter.shape) for name, parameter in model.named_parameters()},
    )


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""
