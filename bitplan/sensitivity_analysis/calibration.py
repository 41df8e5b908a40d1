"""A model, its trained weights and a few cached training batches: what every measure runs on.

One loader for ``bitplan sensitivity`` and the recommended plan, so ``--checkpoint`` means the same
everywhere: a run folder, a seed folder or a ``checkpoint.pt`` (``bitplan.export.checkpoint``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bitplan.choices import Device, WeightGranularity
from bitplan.errors import SpecError
from bitplan.profile.schema import ModelProfile
from bitplan.sensitivity_analysis.methods import Batch, Target
from bitplan.train.loop import batch_loss

DEFAULT_BATCHES = 8
DEFAULT_BATCH_SIZE = 128
MAX_TOKENS_PER_BATCH = 8192
"""A language model's calibration batch holds at most this many tokens (windows × sequence length,
at least one window): every measurement runs the model on every batch, and each batch's
full-precision output distribution ([tokens, vocabulary]) is kept for the KL."""


@dataclass
class Calibration:
    """A model in eval mode on its device, its profile, and ``batches`` cached training batches.

    Attributes:
        model: The model spec as given; ``spec`` adds the options that size it to the data.
        net: The module, trained weights loaded, in eval mode.
        profile: Its GEMM profile, named by ``spec`` (plans made from it fit ``bitplan eval``).
        targets: Every weight GEMM with the module that runs it.
        batches: ((inputs,), target) pairs on the model's device.
        channel_dims: Weight FQN -> dimension with one quantization range per index (None: per tensor),
            as ``bitplan.apply`` quantizes it.
        cache: What measures compute once and share (``per_level.reference_outputs``: the
            full-precision outputs, keyed by the model's state).
    """

    model: str
    spec: str
    data: str
    checkpoint: str | None
    net: nn.Module
    profile: ModelProfile
    targets: list[Target]
    batches: list[Batch]
    task: object
    model_options: dict[str, str]
    description: str
    channel_dims: dict[str, int | None] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def loss(self, module: nn.Module, inputs: tuple, target: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch."""
        return batch_loss(module(*inputs), target, self.task)[0]


def calibrate(
    model: str,
    data: str,
    *,
    checkpoint: str | Path | None = None,
    batches: int = DEFAULT_BATCHES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    device: Device | str = Device.auto,
    per_channel: bool = True,
) -> Calibration:
    """Build ``model`` sized to ``data``, load ``checkpoint``, profile it and cache ``batches`` training batches.

    Raises:
        SpecError, DataError: The model, the data, or a model that does not take the data.
        TrainingError: No checkpoint at ``checkpoint``.
        SpecError: A checkpoint of another model.
    """
    from bitplan.data import make_loader
    from bitplan.frontends.torch import trace as profile_model
    from bitplan.train.config import TrainConfig
    from bitplan.train.setup import build_run, resolve_device, spec_with_options
    from bitplan.train.weights import load_weights

    config = TrainConfig(model=model, data=data, seed=seed, device=Device(device))
    torch_device = resolve_device(config)
    setup = build_run(config, device=torch_device, sr_seed=seed)  # checks that the model takes the data
    net = setup.model
    if checkpoint is not None:
        load_weights(net, checkpoint, model)  # bitplan.train.weights: the one loader of trained weights
    net.eval()  # fixed batch-norm statistics and no dropout: the measure is of the weights alone
    spec = spec_with_options(model, setup.model_options)
    profile = profile_model(net, setup.example_inputs, name=spec)
    size, description = calibration_batch(batch_size, setup.data)
    loader = make_loader(setup.data.train, batch_size=size, shuffle=True, seed=seed, drop_last=False)
    cached = [((x.to(torch_device),), y.to(torch_device)) for x, y in itertools.islice(iter(loader), batches)]
    targets = find_targets(net, profile)
    channel_dims = applied_channel_dims(net, profile, per_channel)
    return Calibration(
        model=model,
        spec=spec,
        data=data,
        checkpoint=str(checkpoint) if checkpoint is not None else None,
        net=net,
        profile=profile,
        targets=targets,
        batches=cached,
        task=setup.data.task,
        model_options=setup.model_options,
        description=f"{len(cached)} training batches of {description}, seed {seed}",
        channel_dims=channel_dims,
    )


def calibration_batch(batch_size: int, data) -> tuple[int, str]:
    """Samples per calibration batch and how to say it: ``batch_size``, but a language model's
    windows capped to ``MAX_TOKENS_PER_BATCH`` tokens."""
    from bitplan.data import Task

    if data.task is not Task.language_model:
        return batch_size, f"{batch_size}"
    seq_len = data.input_shape[-1]
    windows = min(batch_size, max(1, MAX_TOKENS_PER_BATCH // seq_len))
    if windows == batch_size:
        return batch_size, f"{batch_size}"
    return windows, f"{windows} windows of {seq_len} tokens ({batch_size} asked; at most {MAX_TOKENS_PER_BATCH} tokens)"


def applied_channel_dims(net: nn.Module, profile: ModelProfile, per_channel: bool) -> dict[str, int | None]:
    """Weight FQN -> the dimension ``bitplan.apply`` gives one range per index (None: per tensor)."""
    from bitplan.plan import make_plan
    from bitplan.qat import weight_channel_dims

    granularity = WeightGranularity.channel if per_channel else WeightGranularity.tensor
    template = make_plan(profile, strategy="U", bits=(8, 8), weight_granularity=granularity, weight_only=True)
    return weight_channel_dims(net, template)


def with_granularity(calibration: Calibration, granularity: WeightGranularity | str) -> Calibration:
    """``calibration`` measuring weights as a plan of ``granularity`` applies them (itself when it already does).

    A plan's weights are quantized per channel or per tensor; what measures and searches for it must
    quantize them the same way, or it scores plans that ``bitplan eval --plan`` never runs.
    """
    per_channel = WeightGranularity(granularity) == WeightGranularity.channel
    dims = applied_channel_dims(calibration.net, calibration.profile, per_channel)
    return calibration if dims == calibration.channel_dims else replace(calibration, channel_dims=dims)


def find_targets(model: nn.Module, profile: ModelProfile) -> list[Target]:
    """Every weight GEMM, with the module that runs it and the attribute holding its weight there.

    Raises:
        SpecError: A weight that is not a direct parameter of the module using it.
    """
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    targets = []
    for layer in profile.weight_layers:
        for path in (layer.name.split("#")[0], layer.weight.rpartition(".")[0]):
            module = modules.get(path)
            if module is None:
                continue
            attribute = next(
                (name for name, p in module.named_parameters(recurse=False) if p is params[layer.weight]), None
            )
            if attribute is not None:
                targets.append(Target(layer.name, layer.weight, path, attribute))
                break
        else:
            raise SpecError(
                f"cannot find the module that runs `{layer.name}` (weight `{layer.weight}`); "
                "sensitivity needs each weight to be a direct parameter of the module using it"
            )
    return targets
