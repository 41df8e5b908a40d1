"""bitplan.study: distances checked against an independent NumPy computation, reproducibility, files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from bitplan.study import (
    FactorResult,
    StudyConfig,
    StudyFactor,
    StudyResult,
    run_study,
    sample_operands,
)
from bitplan.study.experiments import trial_distances

NUMERIC_COLUMNS = [
    "distance",
    "distance_variance",
    "relative_distance",
    "relative_variance",
    "truth_magnitude",
]


def gemmlowp_numpy(x: np.ndarray, bits: int) -> np.ndarray:
    """docs/quantizers.md's uniform affine quantizer, round to nearest, range per tensor per trial. x: [T, r, c]."""
    low = x.min(axis=(1, 2), keepdims=True)
    high = x.max(axis=(1, 2), keepdims=True)
    scale = np.maximum((high - low) / (2**bits - 1), 1e-8)
    codes = np.clip(np.round((x - low) / scale), 0, 2**bits - 1)
    return codes * scale + low


def numpy_record(truth: np.ndarray, approx: np.ndarray) -> dict[str, float]:
    """The documented statistics: per-trial mean |Ŷ−Y| and its ratio to mean |Y|, mean and variance over trials."""
    distance = np.abs(approx - truth).mean(axis=(1, 2))
    magnitude = np.abs(truth).mean(axis=(1, 2))
    relative = distance / magnitude
    return {
        "distance": distance.mean(),
        "distance_variance": distance.var(),
        "relative_distance": relative.mean(),
        "relative_variance": relative.var(),
        "truth_magnitude": magnitude.mean(),
    }


def read_csv_row(path, value: int, bits: int) -> dict[str, str]:
    with path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["value"]) == value and int(row["bits"]) == bits]
    assert len(rows) == 1
    return rows[0]


def assert_row_matches(row: dict[str, str], expected: dict[str, float]) -> None:
    for column in NUMERIC_COLUMNS:
        assert float(row[column]) == pytest.approx(expected[column], rel=1e-9, abs=1e-15), column


@pytest.mark.parametrize(
    ("factor", "quantize", "distribution", "value"),
    [
        ("accumulation", "right", "normal", 36),
        ("accumulation", "both", "uniform", 9),
        ("frequency", "left", "relu", 24),
        ("frequency", "right", "normal", 5),
    ],
)
@pytest.mark.parametrize("bits", [4, 2])
def test_csv_point_matches_independent_numpy(tmp_path, factor, quantize, distribution, value, bits):
    values = {"accumulation": [9, 36], "frequency": [24, 5]}[factor]
    config = StudyConfig(
        factors=[factor], bits=[4, 2], trials=7, distribution=distribution, quantize=quantize,
        seed=11, size=6, **{factor: values}, out=tmp_path, plots=False,
    )
    run_study(config)
    operands = sample_operands(config, StudyFactor(factor), value)
    x, w = operands.x.numpy(), operands.weights[0].numpy()
    xq = gemmlowp_numpy(x, bits) if quantize in ("left", "both") else x
    wq = gemmlowp_numpy(w, bits) if quantize in ("right", "both") else w
    row = read_csv_row(tmp_path / f"{factor}.csv", value, bits)
    assert (int(row["m"]), int(row["k"]), int(row["n"])) == x.shape[1:] + w.shape[2:]
    if factor == "accumulation":
        assert x.shape[2] == value  # K
    else:
        uses = w.shape[2] if quantize == "left" else x.shape[1]  # uses of each quantized element
        assert uses == value
    assert_row_matches(row, numpy_record(x @ w, xq @ wq))


@pytest.mark.parametrize("quantize", ["right", "left"])
def test_depth_point_matches_independent_numpy(tmp_path, quantize):
    config = StudyConfig(
        factors=["depth"], bits=[3], trials=5, size=5, seed=4, quantize=quantize, out=tmp_path, plots=False
    )
    run_study(config)
    operands = sample_operands(config, StudyFactor.depth, 0)
    x = operands.x.numpy()
    w1, w2, w3 = (w.numpy() for w in operands.weights)
    truth = x @ w1 @ w2 @ w3
    if quantize == "right":
        approx = x @ w1 @ gemmlowp_numpy(w2, 3) @ w3
    else:
        approx = gemmlowp_numpy(x @ w1, 3) @ w2 @ w3
    assert_row_matches(read_csv_row(tmp_path / "depth.csv", 2, 3), numpy_record(truth, approx))


def test_trial_distances_hand_computed():
    truth = torch.tensor([[[1.0, -2.0], [3.0, 4.0]]], dtype=torch.float64)  # [T=1, 2, 2]
    approx = torch.tensor([[[1.5, -2.0], [3.0, 3.0]]], dtype=torch.float64)
    distance, relative, magnitude = trial_distances(truth, approx)
    assert distance.item() == pytest.approx(0.375)  # (0.5 + 0 + 0 + 1) / 4
    assert magnitude.item() == pytest.approx(2.5)  # (1 + 2 + 3 + 4) / 4
    assert relative.item() == pytest.approx(0.15)


def test_sweep_points_are_independent_of_each_other():
    few = run_study(StudyConfig(factors=["accumulation"], accumulation=[36], trials=4, size=8, seed=2))
    many = run_study(StudyConfig(factors=["accumulation"], accumulation=[9, 36, 144], trials=4, size=8, seed=2))
    again = run_study(StudyConfig(factors=["accumulation"], accumulation=[9, 36, 144], trials=4, size=8, seed=2))
    point_36 = [p for p in many.factors[0].points if p.value == 36]
    assert few.factors[0].points == point_36
    assert many.factors[0].points == again.factors[0].points
    other_seed = run_study(StudyConfig(factors=["accumulation"], accumulation=[36], trials=4, size=8, seed=3))
    assert other_seed.factors[0].points[0].distance != few.factors[0].points[0].distance


def test_fewer_bits_give_larger_distance_and_16_bits_almost_none():
    result = run_study(StudyConfig(bits=[16, 4, 2], trials=6, size=8, accumulation=[9, 144], frequency=[64, 9]))
    for factor_result in result.factors:
        sixteen, four, two = (factor_result.series(b) for b in (16, 4, 2))
        for p16, p4, p2 in zip(sixteen, four, two):
            assert p16.relative_distance < 1e-4 < p4.relative_distance < p2.relative_distance


def test_relu_relative_distance_falls_with_accumulation():
    """Non-zero-mean inputs: |Y| grows ~K while zero-mean rounding error grows ~√K (docs/study.md).

    At 2 bits rounding a skewed distribution is biased, so the relative distance falls less (to a floor).
    """
    result = run_study(
        StudyConfig(factors=["accumulation"], distribution="relu", accumulation=[9, 2304], trials=10, size=16)
    )
    for bits, at_least in ((4, 4.0), (2, 1.5)):
        small, large = result.factors[0].series(bits)
        assert large.distance > small.distance  # absolute error still grows
        assert large.relative_distance < small.relative_distance / at_least


def test_json_files_round_trip(tmp_path):
    config = StudyConfig(trials=3, size=4, accumulation=[9, 18], frequency=[8, 4], depth=2, out=tmp_path, plots=False)
    result = run_study(config)
    assert StudyResult.model_validate_json((tmp_path / "study.json").read_text()) == result
    for factor in StudyFactor:
        loaded = FactorResult.model_validate_json((tmp_path / f"{factor.value}.json").read_text())
        assert loaded == result.factor(factor)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [f"{factor.value}.{suffix}" for factor in StudyFactor for suffix in ("csv", "json")] + ["study.json"]
    )
    payload = json.loads((tmp_path / "study.json").read_text())
    assert payload["schema_version"] == 1 and payload["config"]["trials"] == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bits": [0]}, r"`bits` must be in 1\.\.16"),
        ({"bits": [4, 17]}, r"`bits` must be in 1\.\.16, got \[17\]"),
        ({"bits": [4, 4]}, "`bits` lists a bit-width twice"),
        ({"factors": []}, "`factors` is empty"),
        ({"accumulation": [9, 0]}, "`accumulation` values must be >= 1"),
        ({"frequency": [8, 8]}, "`frequency` lists a value twice"),
        ({"trials": 100_000, "size": 512}, "lower `trials`, `size`"),
        ({"device": "warp-drive"}, "`device` 'warp-drive' is not a torch device"),
    ],
)
def test_invalid_config_names_the_field(options, message):
    with pytest.raises(ValidationError, match=message):
        StudyConfig(**options)


def test_thread_setting_is_restored():
    before = torch.get_num_threads()
    seen = []
    run_study(
        StudyConfig(factors=["depth"], trials=2, size=4, threads=1),
        on_progress=lambda done, total, name: seen.append((done, total, name, torch.get_num_threads())),
    )
    assert seen == [(1, 3, "depth", 1), (2, 3, "depth", 1), (3, 3, "depth", 1)]
    assert torch.get_num_threads() == before


def test_a_factor_is_found_by_its_name_too() -> None:
    from bitplan.study import StudyConfig, run_study

    result = run_study(StudyConfig(factors=["depth"], trials=2, size=4))
    assert result.factor("depth") is result.factor(StudyFactor.depth) is result.factors[0]
