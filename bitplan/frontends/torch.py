"""The PyTorch front end: ``trace(model, inputs) -> ModelProfile`` by the fastest tracer that works.

``bitplan.profile_model`` is this ``trace``; the ONNX front end (``bitplan.frontends.onnx.trace``)
has the same verb and feeds the same ``ProfileBuilder``.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from bitplan.choices import RoutingChoice, TracerChoice
from bitplan.errors import TraceError
from bitplan.frontends.builder import ProfileBuilder
from bitplan.frontends.moe import expert_paths, uniform_routing
from bitplan.frontends.torch_export import export_gemms
from bitplan.frontends.torch_record import record_gemms
from bitplan.profile.schema import ModelProfile, Routing, Tracer

VALUES_NOTE = (
    "traced on real tensors on the CPU (tracing on meta tensors failed: {reason}); counts that depend on "
    "values (detection proposals, data-dependent loops) are those of this input"
)


# Ops whose result needs values: where recording stops at one, torch.export stops too (after seconds).
DATA_DEPENDENT_OPS = frozenset(
    {"nonzero", "argwhere", "item", "tolist", "__bool__", "__int__", "__float__", "__index__", "unique", "_unique2",
     "unique_consecutive", "masked_select", "bincount", "equal"}
)
MEASURED_NOTE = (
    "routing measured: traced on real tensors on the CPU; expert GEMMs count the tokens this router sent "
    "for this input, with these weights"
)


def _run(
    tracer: Tracer, model: nn.Module, example_inputs: tuple, builder: ProfileBuilder, on_meta: bool = True,
    routing: RoutingChoice = RoutingChoice.uniform,
) -> ProfileBuilder:
    """One tracer run, mixture-of-experts modules routing uniformly (``bitplan.frontends.moe``) unless
    ``routing`` is measured: then they run their own forward on real values."""
    measured = routing is RoutingChoice.measured
    builder.routing = Routing.measured if measured else Routing.uniform
    with nullcontext(expert_paths(model)) if measured else uniform_routing(model) as paths:
        if tracer is Tracer.record:
            builder = record_gemms(model, example_inputs, on_meta=on_meta, builder=builder)
        else:
            builder = export_gemms(model, example_inputs)
    builder.expert_paths = tuple(paths)
    return builder


def trace(
    model: nn.Module,
    example_inputs: tuple | torch.Tensor,
    *,
    name: str | None = None,
    tracer: TracerChoice | str = TracerChoice.auto,
    values: bool = False,
    allow_partial: bool = False,
    routing: RoutingChoice | str = RoutingChoice.uniform,
) -> ModelProfile:
    """Profile every GEMM of ``model`` for ``example_inputs`` without allocating weights or activations.

    A model whose tracing needs values (``nonzero``, ``.item()``, shapes that depend on data) and that
    has real weights is then recorded once on its real tensors with these inputs; the profile's
    ``notes`` say so (docs/concepts.md, "Tracers").

    Args:
        model: any ``nn.Module`` (on any device, including ``meta``).
        example_inputs: the positional inputs of one forward call (a tensor or a tuple).
        name: what to call the model in the profile (default: its class name).
        tracer: ``auto`` (recording, then torch.export when recording fails), ``record`` or ``export``.
        values: skip the meta tracers and record on real tensors at once (the caller knows they fail).
        allow_partial: when every tracer fails, return the GEMMs recorded before the failing op (with a
            note naming it) instead of raising.
        routing: ``uniform`` (mixture-of-experts layers send every expert its expected share of tokens)
            or ``measured`` (their own forward on real weights and these inputs: the router's real choice;
            traced on real tensors).

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
    choice, routing = TracerChoice(tracer), RoutingChoice(routing)
    values = values or routing is RoutingChoice.measured
    order = {
        TracerChoice.auto: [Tracer.record, Tracer.export],
        TracerChoice.record: [Tracer.record],
        TracerChoice.export: [Tracer.export],
    }[choice]
    label = name or type(model).__name__
    has_values = not any(t.device.type == "meta" for t in [*model.parameters(), *model.buffers(), *_tensors(inputs)])
    if routing is RoutingChoice.measured and not has_values:
        raise TraceError(
            f"`{label}`: --routing measured runs the model on real weights and inputs, but they are on the meta "
            "device here; build the model on the CPU (a spec builds it there for measured routing) or use "
            "--routing uniform"
        )
    was_training = model.training
    model.eval()  # batch-norm on a batch of one refuses training mode; GEMM shapes are identical
    failures, notes, builder, last = [], [], None, ProfileBuilder()
    try:
        for candidate in [] if values else order:
            try:
                last = ProfileBuilder()
                builder = _run(candidate, model, inputs, last, routing=routing)
                break
            except Exception as error:  # any model code can fail under tracing; we report all of them
                failures.append(_failure(candidate.value, last, error))
                if candidate is Tracer.record and _needs_values(last.failed_op, error) and len(order) > 1:
                    failures.append(f"torch.export: not tried (it cannot trace `{last.failed_op}` either)")
                    break
        if builder is None and choice is not TracerChoice.export and has_values:
            candidate, last = Tracer.record, ProfileBuilder()
            try:
                builder = _run(candidate, model, inputs, last, on_meta=False, routing=routing)
                notes.append(MEASURED_NOTE if routing is RoutingChoice.measured else VALUES_NOTE.format(reason=_stopped_at(failures, values)))
            except Exception as error:
                failures.append(_failure("record on real tensors", last, error))
    finally:
        model.train(was_training)
    if builder is None:
        if not (allow_partial and last.failed_op):
            raise TraceError(_refusal(label, failures, has_values))
        builder, candidate = last, Tracer.record
        notes.append(f"PARTIAL: tracing stopped at op `{last.failed_op}`; GEMMs after it are missing (--allow-partial)")
    first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
    profile = builder.build(
        model=label,
        batch=int(first.shape[0]) if first is not None and first.dim() > 0 else 1,
        tracer=candidate,
        input_shapes=[list(t.shape) for t in inputs if isinstance(t, torch.Tensor)],
        parameters={name: tuple(parameter.shape) for name, parameter in model.named_parameters()},
    )
    return profile.model_copy(update={"notes": notes}) if notes else profile


def _needs_values(op: str | None, error: Exception) -> bool:
    """Whether recording stopped where only values help (``nonzero``, ``.item()``, a boolean mask)."""
    text = str(error).lower()
    return op in DATA_DEPENDENT_OPS or "nonzero" in text or "data-dependent" in text


def _stopped_at(failures: list[str], values: bool) -> str:
    """Why the meta tracers did not do: the first failure, short (its op when known)."""
    if values or not failures:
        return "see the note before"
    return failures[0] if len(failures[0]) <= 160 else failures[0][:157] + "..."


def _tensors(inputs: tuple) -> list[torch.Tensor]:
    return [t for t in inputs if isinstance(t, torch.Tensor)]


def _failure(tracer: str, builder: ProfileBuilder, error: Exception) -> str:
    at = f" at op `{builder.failed_op}`" if builder.failed_op else ""
    return f"{tracer}{at}: {type(error).__name__}: {_first_line(error)}"


def _refusal(label: str, failures: list[str], has_values: bool) -> str:
    values = "" if has_values else " (the model has no real weights here, so it was not run on real tensors)"
    return (
        f"could not trace `{label}`{values}. "
        + " | ".join(failures)
        + ". Check that the example input matches what the model expects (pass `--input-shape`, "
        "e.g. `--input-shape 1x3x32x32` or `1x128:int64` for token ids), or try `--tracer export` "
        "for models whose Python code does not run on meta tensors; `--allow-partial` writes the GEMMs "
        "recorded before the failing op"
    )


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""
