"""``measure_sensitivity``: per-layer sensitivity of a model on data, by one of four methods."""

from __future__ import annotations

import time
from pathlib import Path

from bitplan.choices import DEFAULT_WEIGHT_GRANULARITY, Device, WeightGranularity
from bitplan.sensitivity_analysis import methods
from bitplan.sensitivity_analysis.calibration import Calibration, calibrate
from bitplan.sensitivity_analysis.schema import Initialization, LayerSensitivity, SensitivityMethod, SensitivityReport


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
        checkpoint: a ``bitplan train`` run folder, seed folder or checkpoint.pt (or a plain state_dict);
            None = random init.
        probes: Rademacher probes per batch (hessian only).
        weight_granularity: ranges for Δw per output channel (as training's default) or per tensor.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.

    Returns:
        A ``SensitivityReport`` with one entry per weight GEMM (larger = more sensitive).

    Example:
        >>> report = measure_sensitivity("zoo:digits_cnn", "digits", method="sqnr", batches=2)  # doctest: +SKIP
    """
    method = SensitivityMethod(method)
    started = time.perf_counter()
    per_channel = WeightGranularity(weight_granularity) is WeightGranularity.channel
    calibration = calibrate(
        model, data, checkpoint=checkpoint, batches=batches, batch_size=batch_size, seed=seed, device=device,
        per_channel=per_channel,
    )
    profile, cached = calibration.profile, calibration.batches
    scores, sqnr_db = scores_on(calibration, method, bits, per_channel=per_channel, probes=probes, seed=seed, progress=progress)
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
        model_options=calibration.model_options,
        initialization=Initialization.checkpoint if checkpoint else Initialization.random,
        checkpoint=str(checkpoint) if checkpoint else None,
        seconds=time.perf_counter() - started,
        layers=layers,
    )


def scores_on(
    calibration: Calibration,
    method: SensitivityMethod | str,
    bits: int,
    *,
    per_channel: bool = True,
    probes: int = 8,
    seed: int = 0,
    progress: bool = False,
) -> tuple[dict[str, float], dict[str, float]]:
    """{GEMM name: score} of one method on a loaded model and its cached batches, and SQNR in dB (sqnr only).

    Several methods can share one ``calibrate`` (one model load, one profile, the same batches).
    """
    method = SensitivityMethod(method)
    net, targets, cached, loss_fn = calibration.net, calibration.targets, calibration.batches, calibration.loss
    if method is SensitivityMethod.fisher:
        return methods.fisher(net, targets, cached, loss_fn, bits, per_channel), {}
    if method is SensitivityMethod.loss_delta:
        return _with_progress(progress, len(targets), lambda advance: methods.loss_delta(
            net, targets, cached, loss_fn, bits, per_channel, advance)), {}
    if method is SensitivityMethod.sqnr:
        return methods.sqnr(net, targets, cached, bits, per_channel, lambda m, inputs: m(*inputs))
    return methods.hessian(net, targets, cached, loss_fn, bits, per_channel, probes, seed), {}


def _with_progress(enabled: bool, total: int, work):
    if not enabled:
        return work(lambda: None)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("quantizing one layer at a time", total=total)
        return work(lambda: bar.advance(task))
