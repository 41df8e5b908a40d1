"""``evaluate_model``: the test metric and loss of a trained model, with a plan applied after training.

A plan given here is post-training quantization (PTQ): the trained weights are fake-quantized to
the plan's bits exactly as training would (``bitplan.apply``: per output channel or per tensor,
round to nearest). Activations the plan quantizes use the running ranges a quantization-aware run
saved in its checkpoint, else each test batch's own range (dynamic quantization), so the result
depends on the batch size, which is recorded. A weight-only plan (fp32 activations) does not.

``Evaluator`` holds one trained model and its test split in memory, so a sweep (``bitplan pareto``)
evaluates many plans without reloading either; ``evaluate_model`` is one ``Evaluator`` call.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader

from bitplan.choices import Device
from bitplan.data import DataBundle, make_loader
from bitplan.plan import BitPlan, load_plan
from bitplan.profile.schema import ModelProfile
from bitplan.train.config import TrainConfig
from bitplan.train.loop import metric_of, split_totals
from bitplan.train.records import MetricName
from bitplan.train.setup import build_run, resolve_device, spec_with_options

DEFAULT_EVAL_BATCH = 256
"""Test batch of ``bitplan eval``: large, since evaluation keeps no activations for a backward pass."""


class Evaluation(BaseModel):
    """The test metric and loss of one model (with or without a plan) on one test split."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric_name: MetricName = Field(description="accuracy (%, higher is better) or perplexity (lower is better).")
    metric: float = Field(description="Test accuracy in % or test perplexity exp(loss).")
    loss: float = Field(description="Mean test cross-entropy per prediction (nats).")
    correct: int = Field(description="Correct top-1 predictions (images, or next tokens).")
    predictions: int = Field(description="Predictions scored: test images, or test tokens of a language model.")


class EvalResult(Evaluation):
    """What ``bitplan eval`` reports: the evaluation and what was evaluated."""

    model: str = Field(description="The model spec, with the options that size it to the data.")
    data: str = Field(description="The data spec; its test split was evaluated.")
    checkpoint: str | None = Field(description="The weights evaluated (null: the model's own initialisation).")
    plan: str | None = Field(description="The plan applied after training (null: full precision).")
    weight_only: bool = Field(description="Only the plan's weight bits were applied (activations in full precision).")
    avg_bits: float | None = Field(description="Parameter-weighted mean bits of every planned weight, kept ones included.")
    mbit: float | None = Field(description="The plan's model size in MBit (10^6 bits).")
    batch_size: int = Field(description="Test batch (it sets the dynamic activation ranges of a plan without saved ones).")
    device: str
    seconds: float


def weight_mean_bits(plan: BitPlan) -> float:
    """Σ params × bits / Σ params over every planned weight (each shared weight once), kept layers included.

    Example:
        >>> from bitplan.plan.synthetic import resnet20_profile
        >>> from bitplan.plan import make_plan
        >>> weight_mean_bits(make_plan(resnet20_profile(), factor="A", strategy="U", levels=[2, 4], uniform_bits=4))
        4.0
    """
    by_weight = {layer.weight: (layer.params, layer.bits) for layer in plan.layers if layer.weight is not None}
    params = sum(count for count, _ in by_weight.values())
    return sum(count * bits for count, bits in by_weight.values()) / params if params else 0.0


@dataclass
class Evaluator:
    """A trained model (weights loaded, full precision) and its test split, to evaluate plans against."""

    spec: str  # the model spec with the options sizing it to the data
    data: DataBundle
    model: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    metric_name: MetricName
    device: torch.device
    loader: DataLoader
    batch_size: int
    checkpoint: Path | None
    quant_ranges: dict  # the checkpoint's saved quantizer state (a quantization-aware run's), else empty

    @classmethod
    def load(
        cls,
        model: str,
        data: str,
        *,
        checkpoint: Path | None = None,
        batch_size: int = DEFAULT_EVAL_BATCH,
        device: Device | str = Device.auto,
        input_shape: str | None = None,
    ) -> Evaluator:
        """Load the data, size the model to it, check that they fit, load the checkpoint's weights.

        ``checkpoint`` is a ``bitplan train`` run folder (of one seed), a seed folder, a ``checkpoint.pt``
        or a file holding a plain state_dict.

        Raises:
            TrainingError: Nothing to load at ``checkpoint``.
            SpecError: Unknown model or data, or a checkpoint of another model.
            DataError: The data cannot be read.
            TrainingError: The model does not take the data (one forward pass is checked).
        """
        from bitplan.train.weights import load_weights

        config = TrainConfig(model=model, data=data, device=Device(device), input_shape=input_shape)
        torch_device = resolve_device(config)
        setup = build_run(config, device=torch_device, sr_seed=0)  # checks that the model takes the data
        spec = spec_with_options(model, setup.model_options)
        state = load_weights(setup.model, checkpoint, spec) if checkpoint is not None else None
        setup.model.eval()
        loader = make_loader(setup.data.test, batch_size=batch_size, shuffle=False, seed=0)
        return cls(
            spec=spec, data=setup.data, model=setup.model,
            example_inputs=setup.example_inputs, metric_name=setup.metric_name, device=torch_device, loader=loader,
            batch_size=batch_size, checkpoint=checkpoint,
            quant_ranges=state.quant if state is not None else {},
        )

    def profile(self) -> ModelProfile:
        """The model's profile, as sized to the data (what every plan of it must be made from)."""
        from bitplan.frontends.torch import trace

        with torch.no_grad():
            return trace(copy.deepcopy(self.model).to("cpu"), self.example_inputs, name=self.spec)

    def evaluate(self, plan: BitPlan | None = None) -> Evaluation:
        """The test metric and loss, with ``plan`` applied to a copy of the trained model (None: as trained).

        Raises:
            PlanError: The plan was made for another model (fingerprints differ).
        """
        from bitplan.qat import apply, load_quant_state_dict

        model = self.model
        if plan is not None:
            model = apply(copy.deepcopy(self.model).to("cpu"), plan, self.example_inputs)
            if self.quant_ranges:
                load_quant_state_dict(model, self.quant_ranges)
            model = model.to(self.device)
        loss_sum, correct, count = split_totals(model, self.loader, self.data.task, self.device)
        return Evaluation(
            metric_name=self.metric_name, metric=metric_of(self.metric_name, loss_sum, correct, count),
            loss=loss_sum / max(count, 1), correct=int(correct), predictions=int(count),
        )


def evaluate_model(
    model: str,
    data: str,
    *,
    checkpoint: str | Path | None = None,
    plan: BitPlan | str | Path | None = None,
    weight_only: bool = False,
    batch_size: int = DEFAULT_EVAL_BATCH,
    device: Device | str = Device.auto,
    input_shape: str | None = None,
) -> EvalResult:
    """Test metric and loss of a trained model, with ``plan`` applied as post-training quantization.

    Args:
        model: Model spec, as trained (it is sized to the data as training sized it).
        data: Data spec; its test split is evaluated (``valid.txt`` of a text corpus).
        checkpoint: The trained weights: a ``bitplan train`` run folder (of one seed), a seed folder, a
            ``checkpoint.pt`` or a plain state_dict (None: the model's own initialisation, e.g. a
            pretrained model's weights).
        plan: A plan (or plan file) to quantize the weights (and activations, if it says so) with.
        weight_only: Apply only the plan's weight bits: activations stay in full precision.
        batch_size: Test batch.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        input_shape: Example input of a model spec that has none.

    Returns:
        The metric (accuracy % or perplexity), the mean loss and what was evaluated.

    Raises:
        SpecError: Unknown model, or a checkpoint of another model.
        DataError: The data cannot be read.
        TrainingError: The model does not take the data, or nothing to load at ``checkpoint``.
        PlanError: The plan file cannot be read or belongs to another model.

    Example:
        >>> result = evaluate_model("zoo:digits_cnn", "digits", checkpoint="runs/digits",
        ...                         plan="plan.json")  # doctest: +SKIP
        >>> result.metric_name.value, result.predictions  # doctest: +SKIP
        ('accuracy', 360)
    """
    started = time.perf_counter()
    plan_path = None if plan is None or isinstance(plan, BitPlan) else Path(plan)
    loaded_plan = load_plan(plan_path) if plan_path is not None else plan
    if loaded_plan is not None and weight_only:
        loaded_plan = loaded_plan.model_copy(update={"activation_bits": None, "gradient_bits": None})
    evaluator = Evaluator.load(
        model, data, checkpoint=None if checkpoint is None else Path(checkpoint), batch_size=batch_size,
        device=device, input_shape=input_shape,
    )
    evaluation = evaluator.evaluate(loaded_plan)
    return EvalResult(
        **evaluation.model_dump(),
        model=evaluator.spec,
        data=data,
        checkpoint=None if checkpoint is None else str(checkpoint),
        plan=str(plan_path) if plan_path is not None else (None if loaded_plan is None else "(in memory)"),
        weight_only=weight_only,
        avg_bits=None if loaded_plan is None else weight_mean_bits(loaded_plan),
        mbit=None if loaded_plan is None else loaded_plan.estimates.mbit,
        batch_size=batch_size,
        device=str(evaluator.device),
        seconds=time.perf_counter() - started,
    )
