"""``run_study``: sweep the configured factors and (optionally) write the tables and figures."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from bitplan.quant import kernel_policy
from bitplan.study.config import StudyConfig, StudyError, StudyFactor
from bitplan.study.experiments import depth_points, product_points
from bitplan.study.result import SWEEP_LABELS, FactorResult, StudyPoint, StudyResult
from bitplan.study.sampling import sample_operands

ProgressCallback = Callable[[int, int, str], None]


def resolve_device(config: StudyConfig) -> torch.device:
    """The configured device, or CUDA when available, else the CPU.

    Raises:
        StudyError: when the configured device is CUDA and this machine has none.
    """
    if config.device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StudyError(
            f"the study asks for device {config.device!r}, but torch sees no CUDA device here; "
            "pass --device cpu or leave the device unset to use CUDA only when it is present."
        )
    return device


@contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run the body with ``threads`` intra-op CPU threads (None: unchanged), then restore the setting."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_factor(
    config: StudyConfig, factor: StudyFactor, device: torch.device, advance: Callable[[], None]
) -> FactorResult:
    """Run one factor's sweep; ``advance`` is called after each sweep point."""
    started = time.perf_counter()
    points: list[StudyPoint] = []
    if factor is StudyFactor.depth:
        operands = sample_operands(config, factor, 0)  # one chain, quantized at each position in turn
        for position in config.sweep_values(factor):
            points.extend(depth_points(config, position, operands, device))
            advance()
    else:
        for value in config.sweep_values(factor):
            operands = sample_operands(config, factor, value)
            points.extend(product_points(config, factor, value, operands, device))
            advance()
    return FactorResult(
        factor=factor, sweep=SWEEP_LABELS[factor], points=points, seconds=time.perf_counter() - started
    )


def run_study(config: StudyConfig, *, on_progress: ProgressCallback | None = None) -> StudyResult:
    """Run the matrix experiments of the seed paper's Section 3 and return every distance.

    For each factor and sweep point, draw ``config.trials`` random operand sets, compute the float64
    product as the truth, quantize the chosen operand at each bit-width with ``bitplan.quant``'s
    GEMMLOWP quantizer (per-tensor range per trial), and record the mean per-element distance, the
    relative distance and their variances over trials. When ``config.out`` is set, also write
    ``<factor>.csv``, ``<factor>.json``, ``<factor>.png`` and ``study.json`` there (see ``write_study``).

    Args:
        config: what to sweep and how.
        on_progress: called as ``on_progress(done, total, factor_name)`` after each sweep point.

    Returns:
        The study result (configuration, per-factor records, timings).

    Example:
        >>> result = run_study(StudyConfig(factors=["depth"], trials=4, size=8))
        >>> [p.value for p in result.factors[0].series(4)]
        [1, 2, 3]
    """
    device = resolve_device(config)
    total = config.total_points()
    done = 0
    started = time.perf_counter()
    factors = []
    # The quantizer's compiled kernels give bit-identical results, but compiling them takes longer
    # (seconds per dtype) than the whole default study spends quantizing eagerly.
    with kernel_policy(compile=False), cpu_threads(config.threads):
        for factor in config.factors:

            def advance(name: str = factor.value) -> None:
                nonlocal done
                done += 1
                if on_progress is not None:
                    on_progress(done, total, name)

            factors.append(run_factor(config, factor, device, advance))
    result = StudyResult(config=config, factors=factors, seconds=time.perf_counter() - started)
    if config.out is not None:
        from bitplan.study.report import write_study

        write_study(result, config.out, plots=config.plots)
    return result
