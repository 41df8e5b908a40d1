"""``measure_sensitivity``: per-layer sensitivity of a model on data, by one of four methods."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import torch
from torch import nn

from bitplan.errors import SpecError
from bitplan.profile.schema import ModelProfile
from bitplan.sensitivity_analysis import methods
from bitplan.choices import DEFAULT_WEIGHT_GRANULARITY, Device, WeightGranularity
from bitplan.sensitivity_analysis.schema import Initialization, LayerSensitivity, SensitivityMethod, SensitivityReport


def _targets(model: nn.Module, profile: ModelProfile) -> list[methods.Target]:
    """Every weight GEMM, with the module that runs it and the attribute holding its weight there."""
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    targets = []
    for layer in profile.weight_layers:
        candidates = [layer.name.split("#")[0], layer.weight.rpartition(".")[0]]
        for path in candidates:
            module = modules.get(path)
            if module is None:
                continue
            attribute = next(
                (name for name, p in module.named_parameters(recurse=False) if p is params[layer.weight]), None
            )
            if attribute is not None:
                targets.append(methods.Target(layer.name, layer.weight, path, attribute))
                break
        else:
            raise SpecError(
                f"cannot find the module that runs `{layer.name}` (weight `{layer.weight}`); "
                "sensitivity needs each weight to be a direct parameter of the module using it"
            )
    return targets


def measure_sensitivity(
    model: str,
    data: str,
    *,
    method: SensitivityMethod | str = SensitivityMethod.fisher,
    bits: int = 4,
    batches: int = 8,
    batch_size: int = 128,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    probes: int = 8,
    weight_granularity: WeightGranularity | str = DEFAULT_WEIGHT_GRANULARITY,
    device: Device | str = Device.auto,
    progress: bool = False,
) -> SensitivityReport:
    """Measure how much each weight GEMM's quantization to ``bits`` hurts, on ``batches`` batches.

    Args:
        model: model spec (as for ``bitplan train``); sized to the data automatically.
        data: data spec (``digits``, ``cifar10:PATH``, ``text:PATH``, ``synthetic``...).
        method: ``fisher`` (½ Σ F·Δw²), ``loss-delta`` (exact loss increase), ``sqnr`` (output
            noise-to-signal ratio) or ``hessian`` (Hutchinson trace / n · ‖Δw‖², as HAWQ-v2).
        bits: weight bits the quantization error Δw is taken at.
        batches, batch_size: how much training data the measure averages over.
        checkpoint: a ``bitplan train`` checkpoint (or a plain state_dict); None = random init.
        probes: Rademacher probes per batch (hessian only).
        weight_granularity: ranges for Δw per output channel (as training's default) or per tensor.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.

    Returns:
        A ``SensitivityReport`` with one entry per weight GEMM (larger = more sensitive).

    Example:
        >>> report = measure_sensitivity("zoo:digits_cnn", "digits", method="sqnr", batches=2)  # doctest: +SKIP
    """
    from bitplan.data import make_loader
    from bitplan.frontends.torch import trace as profile_model
    from bitplan.train.config import TrainConfig
    from bitplan.train.loop import batch_loss
    from bitplan.train.setup import build_run, resolve_device
    from bitplan.torchfile import state_dict_mismatch

    method = SensitivityMethod(method)
    started = time.perf_counter()
    per_channel = WeightGranularity(weight_granularity) is WeightGranularity.channel
    config = TrainConfig(model=model, data=data, seed=seed, device=Device(device))
    torch_device = resolve_device(config)
    setup = build_run(config, device=torch_device, sr_seed=seed)
    net = setup.model
    if checkpoint is not None:
        try:
            net.load_state_dict(_state_dict(Path(checkpoint)))
        except RuntimeError as error:
            raise SpecError(
                f"checkpoint `{checkpoint}` does not fit model `{model}` ({state_dict_mismatch(error)}); "
                "pass the model spec and data it was trained with"
            ) from None
    net.eval()  # fixed batch-norm statistics and no dropout: the measure is of the weights alone
    profile = profile_model(net, setup.example_inputs, name=model)
    targets = _targets(net, profile)
    loader = make_loader(setup.data.train, batch_size=batch_size, shuffle=True, seed=seed, drop_last=False)
    cached = [
        ((x.to(torch_device),), y.to(torch_device)) for x, y in itertools.islice(iter(loader), batches)
    ]

    def loss_fn(module: nn.Module, inputs: tuple, target: torch.Tensor) -> torch.Tensor:
        return batch_loss(module(*inputs), target, setup.data.task)[0]

    sqnr_db: dict[str, float] = {}
    if method is SensitivityMethod.fisher:
        scores = methods.fisher(net, targets, cached, loss_fn, bits, per_channel)
    elif method is SensitivityMethod.loss_delta:
        scores = _with_progress(progress, len(targets), lambda advance: methods.loss_delta(
            net, targets, cached, loss_fn, bits, per_channel, advance))
    elif method is SensitivityMethod.sqnr:
        scores, sqnr_db = methods.sqnr(net, targets, cached, bits, per_channel, lambda m, inputs: m(*inputs))
    else:
        scores = methods.hessian(net, targets, cached, loss_fn, bits, per_channel, probes, seed)
    layers = [
        LayerSensitivity(
            name=layer.name,
            weight=layer.weight,
            sensitivity=scores[layer.name],
            sqnr_db=sqnr_db.get(layer.name),
            accumulation=layer.accumulation,
            weight_frequency=layer.weight_frequency,
            depth=layer.depth,
            params=layer.params,
            macs=layer.macs,
        )
        for layer in profile.weight_layers
    ]
    return SensitivityReport(
        model=model,
        fingerprint=profile.fingerprint(),
        data=data,
        method=method,
        bits=bits,
        batches=len(cached),
        batch_size=batch_size,
        seed=seed,
        probes=probes if method is SensitivityMethod.hessian else None,
        per_channel=per_channel,
        model_options=setup.model_options,
        initialization=Initialization.checkpoint if checkpoint else Initialization.random,
        checkpoint=str(checkpoint) if checkpoint else None,
        seconds=time.perf_counter() - started,
        layers=layers,
    )


def _state_dict(path: Path) -> dict:
    from bitplan.torchfile import read_torch_file

    loaded = read_torch_file(path, "pass the `checkpoint.pt` of a `bitplan train` run")
    state = loaded["model"] if isinstance(loaded, dict) and "model" in loaded else loaded
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise SpecError(f"checkpoint `{path}` holds no model state_dict; pass the `checkpoint.pt` of a `bitplan train` run")
    return state


def _with_progress(enabled: bool, total: int, work):
    if not enabled:
        return work(lambda: None)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("quantizing one layer at a time", total=total)
        return work(lambda: bar.advance(task))
