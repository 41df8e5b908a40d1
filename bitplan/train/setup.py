"""From a ``TrainConfig`` to a ready model: data, model sized to the data, effective plan, applied.

The model is sized from the data (``num_classes``/``in_channels``/``input_size`` for classifiers,
``vocab``/``seq_len`` for language models) through ``load_model(spec, options=...)``; options the
spec already sets win. The effective plan is the given plan (or one made from the config's recipe)
with the config's overrides folded in, so ``config.json`` records exactly what was trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

import torch
from torch import nn

from bitplan.qat import apply
from bitplan.data import DataBundle, Task, load_data
from bitplan.plan import BitPlan
from bitplan.spec import load_model, split_spec
from bitplan.train.config import MAX_BITS, TrainConfig
from bitplan.train.records import MetricName


@dataclass(frozen=True)
class RunSetup:
    """A model ready to train (on ``device``, plan applied) and the data it trains on."""

    model: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    data: DataBundle
    plan: BitPlan | None
    model_options: dict[str, str]
    metric_name: MetricName


def resolve_device(config: TrainConfig) -> torch.device:
    """``auto`` → CUDA when available (this rank's GPU under torchrun), else CPU."""
    from bitplan.errors import TrainingError

    wanted = config.device.value
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError("`--device cuda` was given but CUDA is not available here; use `--device cpu`")
        from bitplan.train.distributed import local_rank

        return torch.device("cuda", local_rank())
    return torch.device("cpu")


def model_options(spec: str, data: DataBundle) -> dict[str, str]:
    """Zoo options sizing a model to ``data``: accepted by it, unset in the spec, unlike its defaults.

    Example:
        >>> model_options("zoo:resnet20?num_classes=100", load_data("digits"))  # doctest: +SKIP
        {'in_channels': '1', 'input_size': '8'}
    """
    base, given = split_spec(spec)
    prefix, _, name = base.partition(":")
    if prefix != "zoo":
        return {}
    from bitplan.zoo.registry import entry  # importing the zoo registers its models

    fields = entry(name).config_type.model_fields
    if data.task is Task.language_model:
        wanted = {"vocab": data.vocab_size, "seq_len": data.input_shape[-1]}
    else:
        wanted = {"num_classes": data.num_classes, "in_channels": data.input_shape[0]}
        if len(data.input_shape) == 3 and data.input_shape[1] == data.input_shape[2]:
            wanted["input_size"] = data.input_shape[1]
    return {
        key: str(value)
        for key, value in wanted.items()
        if value is not None and key in fields and key not in given and value != fields[key].default
    }


def spec_with_options(spec: str, options: dict[str, str]) -> str:
    """``spec`` with ``options`` added to its query: the exact model, e.g. ``zoo:resnet20?num_classes=100``."""
    if not options:
        return spec
    base, given = split_spec(spec)
    return f"{base}?{urlencode({**given, **options})}"


def effective_plan(
    config: TrainConfig, model: nn.Module, example_inputs: tuple, options: dict[str, str] | None = None
) -> BitPlan | None:
    """The plan to train with: given or made from the recipe, with the config's overrides applied.

    A plan made here records the model spec with the data's options, so it names the exact model.
    """
    plan = config.plan
    if plan is None and config.factor is not None:
        from bitplan.plan import make_plan
        from bitplan.frontends.torch import trace as profile_model

        spec = spec_with_options(config.model, options or {})
        profile = profile_model(model, example_inputs, name=spec)
        plan = make_plan(profile, factor=config.factor, strategy=config.strategy, bits=config.bits)
    if plan is None:
        return None
    update: dict[str, object] = {}
    if config.activation_bits is not None:
        update["activation_bits"] = None if config.activation_bits >= MAX_BITS else config.activation_bits
    if config.gradient_bits is not None:
        update["gradient_bits"] = None if config.gradient_bits >= MAX_BITS else config.gradient_bits
    if config.gradient_quant is not None:
        update["gradient_quant"] = config.gradient_quant
    if config.weight_granularity is not None:
        update["weight_granularity"] = config.weight_granularity
    if config.keep_last_fp32:
        weighted = [i for i, layer in enumerate(plan.layers) if layer.weight is not None]
        if weighted:
            layers = list(plan.layers)
            layers[weighted[-1]] = layers[weighted[-1]].model_copy(update={"bits": MAX_BITS})
            update["layers"] = layers
    return plan.model_copy(update=update) if update else plan


FIT_SAMPLES = 2
"""Samples of the one forward pass that checks a model fits its data before training starts."""


def check_fits(model: nn.Module, data: DataBundle, example_inputs: tuple, spec: str) -> None:
    """One forward pass on the first training samples: does ``model`` take ``data`` and predict its targets?

    Catches a mismatch before any epoch runs (instead of mid-training), naming both sides. The pass
    runs without gradients in eval mode, so it changes no weight, statistic or random stream.

    Raises:
        TrainingError: The model rejects the data's inputs, or its output cannot score the data's
            classes (classification: [B, ≥ classes]) or tokens (language model: [B, T, ≥ vocabulary]).
    """
    from bitplan.errors import TrainingError

    samples = [data.train[index] for index in range(min(FIT_SAMPLES, len(data.train)))]
    if not samples:
        raise TrainingError(f"the training split of `{data.name}` is empty; give data with at least one sample")
    inputs = torch.stack([sample[0] for sample in samples])  # [B, *input_shape]
    wanted = data.vocab_size if data.task is Task.language_model else data.num_classes
    expected = "[batch, sequence, vocabulary]" if data.task is Task.language_model else "[batch, classes]"
    sides = (
        f"model `{spec}` (example input {[list(t.shape) for t in example_inputs]}) vs data `{data.name}` "
        f"(samples of shape {list(data.input_shape)}, {data.task.value} with "
        f"{'vocabulary' if data.task is Task.language_model else 'classes'} {wanted})"
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(inputs)
    except Exception as error:  # any failure of a user's forward is a mismatch to report, not a crash
        raise TrainingError(
            f"the model does not accept the data: {sides}; its forward pass on a batch of shape "
            f"{list(inputs.shape)} raised {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}. "
            "Pass a model sized for this data (e.g. `?num_classes=`, `?in_channels=`) or other data"
        ) from None
    finally:
        model.train(was_training)
    logits = output[0] if isinstance(output, (tuple, list)) else output
    rank = 3 if data.task is Task.language_model else 2
    shape = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
    if not isinstance(logits, torch.Tensor) or logits.dim() != rank or logits.shape[0] != len(samples) or (
        wanted is not None and logits.shape[-1] < wanted
    ):
        raise TrainingError(
            f"the model's output does not fit the data: {sides}; on a batch of shape {list(inputs.shape)} it "
            f"returned {shape}, but training needs {expected} with at least {wanted} in the last dimension. "
            "Pass a model sized for this data or other data"
        )


def build_run(config: TrainConfig, *, device: torch.device, sr_seed: int) -> RunSetup:
    """Load data and model, apply the effective plan, move to ``device``.

    Args:
        config: The run's configuration (its ``seed`` seeds initialisation and data).
        device: Where the model goes.
        sr_seed: Seed of the stochastic-rounding generators (differs per rank).

    Raises:
        SpecError, DataError, PlanError: From the model, data or plan.
    """
    on_meta = split_spec(config.model)[0].startswith("zoo:")
    probe = load_model(config.model, input_shape=config.input_shape, device="meta" if on_meta else None)
    data = load_data(config.data, seed=config.seed, example_inputs=probe.example_inputs)
    options = model_options(config.model, data)
    torch.manual_seed(config.seed)  # initialisation depends on the seed only
    loaded = load_model(config.model, input_shape=config.input_shape, options=options)
    check_fits(loaded.model, data, loaded.example_inputs, spec_with_options(config.model, options))
    if config.init is not None:  # fine-tuning: trained weights, then the plan on top of them
        from bitplan.train.weights import load_weights

        load_weights(loaded.model, config.init, spec_with_options(config.model, options))
    if config.plan is not None:  # named by its spec, so the message's fix is a command that runs
        from bitplan.plan import verify_fingerprint
        from bitplan.frontends.torch import trace as profile_model

        spec = spec_with_options(config.model, options)
        verify_fingerprint(config.plan, profile_model(loaded.model, loaded.example_inputs, name=spec))
    plan = effective_plan(config, loaded.model, loaded.example_inputs, options)
    model = loaded.model
    if plan is not None:
        apply(
            model,
            plan,
            loaded.example_inputs,
            seed=sr_seed,
            forward_quant=config.forward_quant,
            gradient_samples=config.gradient_samples,
            verify=False,  # a given plan was verified above; a made plan fits by construction
        )
    metric = MetricName.perplexity if data.task is Task.language_model else MetricName.accuracy
    return RunSetup(model.to(device), loaded.example_inputs, data, plan, options, metric)
