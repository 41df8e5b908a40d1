"""Planning with measured sensitivity: factor S and the exact min-sensitivity objective."""

from __future__ import annotations

import itertools

import pytest
from typer.testing import CliRunner

from bitplan.cli.app import app
from bitplan.errors import PlanError
from bitplan.plan import Budget, BudgetKind, make_plan
from bitplan.plan.knapsack import noise_scale
from bitplan.sensitivity_analysis import LayerSensitivity, SensitivityReport
from bitplan.spec import profile_spec


def report_for(profile, scores: list[float], bits: int = 4) -> SensitivityReport:
    layers = [
        LayerSensitivity(
            name=layer.name, weight=layer.weight, sensitivity=score, accumulation=layer.accumulation,
            weight_frequency=layer.weight_frequency, depth=layer.depth, params=layer.params, macs=layer.macs,
        )
        for layer, score in zip(profile.weight_layers, scores)
    ]
    return SensitivityReport(
        model=profile.model, fingerprint=profile.fingerprint(), data="digits", method="fisher", bits=bits,
        batches=1, batch_size=1, seed=0, initialization="random", seconds=0.0, layers=layers,
    )


@pytest.fixture(scope="module")
def digits_profile():
    return profile_spec("zoo:digits_cnn")


def test_factor_s_gives_sensitive_layers_more_bits(digits_profile) -> None:
    scores = [0.5, 3.0, 0.1, 9.0, 1.0]
    plan = make_plan(digits_profile, factor="S", strategy="C+", bits=(4, 8), scores=report_for(digits_profile, scores).scores())
    bits = [layer.bits for layer in plan.layers]
    assert bits == [5, 7, 4, 8, 6]  # ranks 1, 3, 0, 4, 2 of five distinct values on five levels
    assert [layer.factor_value for layer in plan.layers] == scores
    assert plan.sensitivity_method == "fisher" and plan.sensitivity_bits == 4


def test_objective_plan_equals_brute_force(digits_profile) -> None:
    scores = [0.02, 0.7, 0.3, 0.05, 0.9]
    levels = [4, 6, 8]
    report = report_for(digits_profile, scores, bits=4)
    for avg_bits in (4.5, 5.2, 6.0, 7.3):
        plan = make_plan(
            digits_profile, levels=levels, bits=None, objective="min-sensitivity", scores=report.scores(),
            budget=Budget(kind=BudgetKind.avg_bits, value=avg_bits),
        )
        params = [layer.params for layer in digits_profile.weight_layers]
        best = min(
            sum(s * noise_scale(b, 4) for s, b in zip(scores, combo))
            for combo in itertools.product(levels, repeat=len(scores))
            if sum(p * b for p, b in zip(params, combo)) <= avg_bits * sum(params)
        )
        assert plan.objective_value == pytest.approx(best, rel=1e-12)
        assert plan.estimates.avg_bits <= avg_bits + 1e-12
        assert plan.strategy.value == "opt" and plan.factor.value == "S"


def test_sensitivity_errors(digits_profile) -> None:
    report = report_for(digits_profile, [1.0] * 5)
    with pytest.raises(PlanError, match="--factor S needs measured sensitivities"):
        make_plan(digits_profile, factor="S", strategy="C+")
    with pytest.raises(PlanError, match="needs --sensitivity sens.json and one budget"):
        make_plan(digits_profile, objective="min-sensitivity", scores=report.scores())
    other = profile_spec("zoo:resnet20")
    with pytest.raises(PlanError, match="measured on another model"):
        make_plan(other, factor="S", strategy="C+", scores=report.scores())
    with pytest.raises(PlanError, match="below every plan"):
        make_plan(digits_profile, objective="min-sensitivity", scores=report.scores(),
                  budget=Budget(kind=BudgetKind.avg_bits, value=2.0))


def test_cli_objective_plan_passes_check(tmp_path, digits_profile) -> None:
    sens = tmp_path / "sens.json"
    sens.write_text(report_for(digits_profile, [0.1, 0.2, 0.3, 0.4, 0.5]).model_dump_json())
    plan = tmp_path / "plan.json"
    runner = CliRunner()
    result = runner.invoke(app, ["plan", "zoo:digits_cnn", "--objective", "min-sensitivity", "--sensitivity", str(sens),
                                 "--budget-avg-bits", "6", "-o", str(plan)])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["check", str(plan), "--model", "zoo:digits_cnn"]).exit_code == 0
    broken = tmp_path / "broken.json"
    broken.write_text('{"model": 3}')
    result = runner.invoke(app, ["plan", "zoo:digits_cnn", "--factor", "S", "--strategy", "C+", "--sensitivity", str(broken)])
    assert result.exit_code == 2 and "not a sensitivity report" in result.output


def test_negative_scores_count_as_insensitive(digits_profile) -> None:
    levels = [4, 8]
    scores = [-0.4, 0.7, 0.3, -2.0, 0.9]
    plan = make_plan(
        digits_profile, levels=levels, bits=None, objective="min-sensitivity", scores=report_for(digits_profile, scores).scores(),
        budget=Budget(kind=BudgetKind.avg_bits, value=6.0),
    )
    params = [layer.params for layer in digits_profile.weight_layers]
    best = min(
        sum(max(s, 0.0) * noise_scale(b, 4) for s, b in zip(scores, combo))
        for combo in itertools.product(levels, repeat=len(scores))
        if sum(p * b for p, b in zip(params, combo)) <= 6.0 * sum(params)
    )
    assert plan.objective_value == pytest.approx(best, rel=1e-12) and plan.objective_value >= 0


def test_insensitive_layers_take_the_budget_left_over(digits_profile) -> None:
    """Layers measured at 0 (a loss that fell when quantized) still get the bits the budget leaves: among
    plans of equal noise the knapsack takes the wider one, so no budget is left unused."""
    levels = [1, 2, 3, 4, 8]
    scores = [0.0, 0.7, -0.3, 0.0, 0.9]
    params = [layer.params for layer in digits_profile.weight_layers]
    for avg_bits in (2.5, 3.0, 4.0):
        plan = make_plan(
            digits_profile, levels=levels, bits=None, objective="min-sensitivity",
            scores=report_for(digits_profile, scores).scores(), budget=Budget(kind=BudgetKind.avg_bits, value=avg_bits),
        )
        bits = [layer.bits for layer in plan.layers]
        spent = sum(p * b for p, b in zip(params, bits))
        assert spent <= avg_bits * sum(params)
        # no single layer can be raised one level within the budget: the budget is used
        for index, (p, b) in enumerate(zip(params, bits)):
            if b < max(levels):
                wider = levels[levels.index(b) + 1]
                assert spent + p * (wider - b) > avg_bits * sum(params), (index, bits)
        best = min(
            sum(max(s, 0.0) * noise_scale(b, 4) for s, b in zip(scores, combo))
            for combo in itertools.product(levels, repeat=len(scores))
            if sum(p * b for p, b in zip(params, combo)) <= avg_bits * sum(params)
        )
        assert plan.objective_value == pytest.approx(best, rel=1e-6, abs=1e-12)
