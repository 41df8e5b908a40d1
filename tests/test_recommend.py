"""The recommended plan and the methods at a budget, on a briefly trained digits CNN.

Checks: per-level scores against an independent loop; the local search never ends worse than any of
its starts; every method stays within its budget and records its source; ``--checkpoint`` takes a
run folder, a seed folder or a file in every command; bad input exits 2 and writes nothing.
"""

from __future__ import annotations

import copy
import json
import random
import re

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from bitplan.cli.app import app
from bitplan.errors import BitplanError, PlanError, SpecError
from bitplan.plan import Budget, load_plan
from bitplan.plan.space import request_space
from bitplan.plan.request import PlanRequest
from bitplan.quant import uniform_quantize
from bitplan.sensitivity_analysis.at_budget import MethodPlanner, parse_method
from bitplan.plan.planner import plan_from_bits
from bitplan.qat import apply
from bitplan.sensitivity_analysis.calibration import calibrate, with_granularity
from bitplan.sensitivity_analysis.per_level import OutputComparer, QuantizedWeights, measure_levels
from bitplan.sensitivity_analysis.recommend import recommend_plan, search_starts
from bitplan.sensitivity_analysis.refine import BudgetSpace, objective_key, refine_bits
from bitplan.train.weights import load_weights

runner = CliRunner()
MODEL = "zoo:digits_cnn"
LEVELS = (1, 2, 3, 4, 8)
BUDGET = Budget(kind="avg_bits", value=1.5)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: these models are tiny


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """digits_cnn after 60 Adam steps on its calibration batches, saved as a run folder with one seed."""
    calibration = calibrate(MODEL, "digits", batches=2, batch_size=64, device="cpu")
    net = calibration.net
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for step in range(60):
        inputs, target = calibration.batches[step % 2]
        optimizer.zero_grad()
        F.cross_entropy(net(*inputs), target).backward()
        optimizer.step()
    net.eval()
    run = tmp_path_factory.mktemp("run")
    (run / "seed-0").mkdir()
    torch.save(net.state_dict(), run / "seed-0" / "checkpoint.pt")
    return calibration, run


def test_checkpoint_is_a_run_folder_a_seed_folder_or_a_file(trained, tmp_path) -> None:
    calibration, run = trained
    expected = calibration.net.state_dict()
    for checkpoint in (run, run / "seed-0", run / "seed-0" / "checkpoint.pt"):
        net = copy.deepcopy(calibration.net)
        with torch.no_grad():
            for parameter in net.parameters():
                parameter.zero_()
        load_weights(net, checkpoint, MODEL)
        assert all(torch.equal(net.state_dict()[key], value) for key, value in expected.items())
    out = tmp_path / "sens.json"
    result = runner.invoke(app, ["sensitivity", MODEL, "--data", "digits", "--checkpoint", str(run / "seed-0"),
                                 "--method", "sqnr", "--batches", "1", "--batch-size", "16", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["checkpoint"] == str(run / "seed-0")


def test_a_checkpoint_of_another_model_is_refused(trained, tmp_path) -> None:
    calibration, _ = trained
    state = dict(calibration.net.state_dict())
    state["fc2.weight"] = torch.zeros(3, 64)
    other = tmp_path / "other.pt"
    torch.save(state, other)
    with pytest.raises(SpecError, match="does not fit model `zoo:digits_cnn`"):
        load_weights(copy.deepcopy(calibration.net), other, MODEL)
    out = tmp_path / "plan.json"
    result = runner.invoke(app, ["plan", MODEL, "--data", "digits", "--checkpoint", str(other), "--levels", "1,2,3,4,8",
                                 "--budget-avg-bits", "1.5", "--weight-only", "-o", str(out)])
    assert result.exit_code == 2 and "does not fit model" in result.output and not out.exists()


def test_per_level_scores_match_an_independent_loop(trained) -> None:
    calibration, _ = trained
    table = measure_levels(calibration, [1, 8])
    weight = dict(calibration.net.named_parameters())["conv2.weight"]
    original = weight.detach().clone()
    with torch.no_grad():
        reference = [F.log_softmax(calibration.net(*x), -1) for x, _ in calibration.batches]
        base = sum(F.cross_entropy(calibration.net(*x), y).item() for x, y in calibration.batches) / 2
        weight.copy_(uniform_quantize(original, 1, channel_dim=0))
        losses = [F.cross_entropy(calibration.net(*x), y).item() for x, y in calibration.batches]
        kls = [
            (ref.exp() * (ref - F.log_softmax(calibration.net(*x), -1))).sum(-1).mean().item()
            for (x, _), ref in zip(calibration.batches, reference)
        ]
        weight.copy_(original)
    assert table.loss_delta["conv2.weight"][1] == pytest.approx(sum(losses) / 2 - base, rel=1e-5)
    assert table.kl["conv2.weight"][1] == pytest.approx(sum(kls) / 2, rel=1e-4)
    assert all(row[1] >= row[8] >= 0 for row in table.kl.values())
    assert torch.equal(weight, original)  # the model is left as it was


def test_the_search_never_ends_worse_than_any_start(trained) -> None:
    calibration, _ = trained
    table = measure_levels(calibration, [1, 2, 8])
    space = request_space(calibration.profile, PlanRequest.of(levels=(1, 2, 8), budget=BUDGET, weight_only=True))
    budget_space = BudgetSpace(
        levels=space.levels, weights={u.key: w for u, w in zip(space.assigned, space.terms.weights)},
        values=space.terms.values, capacity=space.terms.capacity,
    )
    starts = [{u.key: 1 for u in space.assigned}, {**{u.key: 1 for u in space.assigned}, "conv1.weight": 8, "fc2.weight": 8}]
    result = refine_bits(calibration, starts, budget_space, table.kl, objective="error", rounds=2, candidates=8)
    comparer, weights = OutputComparer(calibration), QuantizedWeights(calibration)
    key = objective_key("error")
    scores = []
    for bits in (*starts, result.bits):
        weights.set(bits)
        scores.append(comparer.measure())
    weights.restore()
    assert key(scores[-1]) <= min(key(scores[0]), key(scores[1]))
    assert scores[-1] == pytest.approx(result.after)
    assert budget_space.cost(result.bits) <= budget_space.capacity


def test_recommended_plan_is_within_budget_and_records_its_source(trained) -> None:
    calibration, run = trained
    plan = recommend_plan(MODEL, "digits", budget=BUDGET, levels=LEVELS, calibration=calibration, weight_only=True, restarts=2)
    assert plan.budget_reached <= 1.5 and plan.estimates.avg_bits == plan.budget_reached
    assert plan.activation_bits is None and plan.gradient_bits is None
    source = plan.source
    assert source.method == "recommended" and source.data == "digits" and "2 training batches of 64" in source.calibration
    assert set(source.scores) == {layer.weight for layer in plan.layers}
    assert all(set(row) == {str(b) for b in LEVELS} for row in source.scores.values())
    assert source.measured["error_refined"] <= source.measured["error_knapsack"]
    assert plan.fingerprint == calibration.profile.fingerprint()
    assert plan.model == calibration.spec


def test_every_method_stays_within_its_budget(trained) -> None:
    calibration, _ = trained
    planner = MethodPlanner(profile=calibration.profile, levels=LEVELS, calibration=calibration, plan_options={"weight_only": True})
    for method in ("uniform", "random", "first-last", "dpc", "A:C-", "F:C+", "D:R", "fisher", "sqnr", "loss-delta", "recommended"):
        plan = planner.plan(method, BUDGET, seed=3)
        assert plan.estimates.avg_bits <= 1.5, method
        assert plan.source.method == parse_method(method)
    assert planner.plan("uniform", BUDGET).bits_by_name() == {layer.name: 1 for layer in calibration.profile.weight_layers}
    with pytest.raises(PlanError, match="unknown method `magic`"):
        planner.plan("magic", BUDGET)
    structural = MethodPlanner(profile=calibration.profile, levels=LEVELS)
    with pytest.raises(PlanError, match="pass --data"):
        structural.plan("fisher", BUDGET)


def test_cli_recommended_plan_in_one_command(trained, tmp_path) -> None:
    _, run = trained
    out = tmp_path / "plan.json"
    args = ["plan", MODEL, "--data", "digits", "--checkpoint", str(run), "--levels", "1,2,3,4,8", "--budget-avg-bits", "1.25",
            "--weight-only", "--batches", "1", "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    plan = load_plan(out)
    assert plan.budget_reached <= 1.25 and plan.source.checkpoint == str(run) and plan.source.method == "recommended"
    assert "recommended" in result.output and "Objective." not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget-avg-bits", "9"], "above every plan .* from 1 avg bits .* to 8 avg bits"),
        (["--budget-mbit", "0.001"], "below every plan .* from 0.049744 MBit .* to 0.3312 MBit"),  # 40,208 weights at 1 or 8 bits + 298 others at 32
        (["--budget-avg-bits", "2", "--method", "magic"], "unknown method `magic`"),
        (["--budget-avg-bits", "2", "--levels", "0,2"], "levels \\[0, 2\\]"),
        (["--budget-avg-bits", "2", "--factor", "A"], "drop --factor"),
        ([], "needs a budget"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args: list[str], message: str) -> None:
    out = tmp_path / "plan.json"
    base = ["plan", MODEL, "--data", "digits", "--batches", "1", "--weight-only", "-o", str(out)]
    if "--levels" not in args:
        base += ["--levels", "1,2,3,4,8"]
    result = runner.invoke(app, base + args)
    assert result.exit_code == 2, result.output
    assert re.search(message, " ".join(result.output.split())), result.output
    assert not out.exists()


def test_data_that_does_not_fit_the_model_is_refused(tmp_path) -> None:
    out = tmp_path / "plan.json"
    result = runner.invoke(app, ["plan", "zoo:transformer_lm", "--data", "digits", "--budget-avg-bits", "2", "-o", str(out)])
    assert result.exit_code == 2 and not out.exists(), result.output
    with pytest.raises(BitplanError):
        calibrate("zoo:transformer_lm", "digits", batches=1, batch_size=8, device="cpu")


def test_the_recommended_plan_is_no_worse_on_calibration_than_any_start(trained) -> None:
    """The local search keeps the best of its starts and only moves downhill: on the calibration batches
    the plan's error (ties: loss) is no worse than either knapsack plan's or any random start's."""
    calibration, _ = trained
    budget = Budget(kind="avg_bits", value=2)  # room for many plans on a 5-layer model
    request = PlanRequest.of(levels=LEVELS, budget=budget, weight_only=True)
    table = measure_levels(calibration, list(LEVELS))
    plan = recommend_plan(MODEL, "digits", budget=budget, levels=LEVELS, calibration=calibration, table=table,
                          weight_only=True, restarts=4)
    starts = search_starts(calibration, request, table, "kl", restarts=4)
    assert len(starts) == 6 and len({tuple(sorted(s.items())) for s in starts}) > 2  # two knapsacks, 4 random
    comparer, weights = OutputComparer(calibration), QuantizedWeights(calibration)
    key = objective_key("error")
    try:
        scores = []
        for bits in (*starts, plan.bits_by_weight()):
            weights.set(bits)
            scores.append(key(comparer.measure()))
    finally:
        weights.restore()
    assert scores[-1] <= min(scores[:-1])
    assert scores[-1][0] == pytest.approx(plan.source.measured["error_refined"])
    assert plan.budget_reached <= 2


@pytest.mark.parametrize("granularity", ["channel", "tensor"])
def test_what_the_search_scores_is_what_eval_applies(granularity: str) -> None:
    """A plan's weights set by the measuring code give the very logits of the plan applied by
    ``bitplan.apply`` (what ``bitplan eval --plan`` runs), batch norm included, at either granularity."""
    calibration = with_granularity(calibrate("zoo:resnet20", "digits", batches=1, batch_size=16, device="cpu"), granularity)
    rng = random.Random(granularity)
    bits = {target.weight: rng.choice(LEVELS) for target in calibration.targets}
    plan = plan_from_bits(calibration.profile, bits, levels=LEVELS, weight_only=True, weight_granularity=granularity)
    (inputs,), _ = calibration.batches[0]
    weights = QuantizedWeights(calibration)
    with torch.no_grad():
        try:
            weights.set(bits)
            measured = calibration.net(inputs)
        finally:
            weights.restore()
        applied = apply(copy.deepcopy(calibration.net), plan, (inputs[:1],)).eval()(inputs)
    assert torch.equal(measured, applied)
    assert len(set(bits.values())) > 2


def test_the_random_baseline_is_the_plan_command_s_r_plan(trained, tmp_path) -> None:
    """``methods_at_budget(...).plan("random", seed=s)`` (what pareto and the benchmark compare against) is
    ``bitplan plan --strategy R --budget-avg-bits B --plan-seed s --weight-only`` (with any --factor or none)."""
    calibration, _ = trained
    planner = MethodPlanner(profile=calibration.profile, levels=LEVELS, calibration=calibration,
                            plan_options={"weight_only": True})
    for seed, factor in ((0, ["--factor", "A"]), (3, ["--factor", "D"]), (5, [])):  # R at a budget ranks by no factor
        out = tmp_path / f"r{seed}.json"
        result = runner.invoke(app, ["plan", calibration.spec, *factor, "--strategy", "R", "--budget-avg-bits", "1.5",
                                     "--plan-seed", str(seed), "--levels", "1,2,3,4,8", "--weight-only", "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert load_plan(out).bits_by_weight() == planner.plan("random", BUDGET, seed=seed).bits_by_weight()
