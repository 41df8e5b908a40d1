"""``bitplan eval`` / ``evaluate_model``: a trained model's test metric and loss, a plan applied after training."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from bitplan.cli.app import app
from bitplan.plan import make_plan, save_plan
from bitplan.quant import uniform_quantize
from bitplan.train import EvalResult, Evaluator, evaluate_model
from bitplan.train.loop import read_result, split_totals

runner = CliRunner()


def test_full_precision_matches_the_training_runs_own_final_evaluation(trained_digits) -> None:
    spec, checkpoint = trained_digits
    final = read_result(checkpoint.parent)
    result = evaluate_model(spec, "digits", checkpoint=checkpoint)
    assert result.metric == final.metric  # 360 test images: the same images right
    assert result.loss == pytest.approx(final.test_loss, rel=1e-6)  # other batches, other float32 sums
    assert result.predictions == 360 and result.correct == round(final.metric * 3.6)
    assert result.plan is None and result.avg_bits is None


def test_a_plan_is_the_trained_weights_quantized_by_hand(trained_digits, tmp_path) -> None:
    spec, checkpoint = trained_digits
    evaluator = Evaluator.load(spec, "digits", checkpoint=checkpoint)
    plan = make_plan(evaluator.profile(), strategy="U", levels=[1, 2, 3, 4, 8], weight_only=True)
    bits = {layer.weight: 1 + index % 3 for index, layer in enumerate(plan.layers)}  # a mixed plan: 1, 2, 3, 1, …
    plan = plan.model_copy(update={"layers": [layer.model_copy(update={"bits": bits[layer.weight]}) for layer in plan.layers]})
    save_plan(plan, tmp_path / "plan.json")

    # the oracle: a plain copy whose planned weights are replaced by Q(w), per output channel, round to nearest
    reference = Evaluator.load(spec, "digits", checkpoint=checkpoint)
    parameters = dict(reference.model.named_parameters())
    with torch.no_grad():
        for weight, width in bits.items():
            parameters[weight].copy_(uniform_quantize(parameters[weight], width, channel_dim=0))
    loss_sum, correct, count = split_totals(reference.model, reference.loader, reference.data.task, reference.device)

    result = evaluate_model(spec, "digits", checkpoint=checkpoint, plan=tmp_path / "plan.json")
    assert result.correct == correct and result.predictions == count
    assert result.loss == pytest.approx(loss_sum / count, rel=1e-6)
    params = {layer.weight: layer.params for layer in plan.layers}
    assert result.avg_bits == pytest.approx(sum(params[w] * b for w, b in bits.items()) / sum(params.values()))
    assert result.metric < evaluate_model(spec, "digits", checkpoint=checkpoint).metric  # 1–3 bits hurt


def test_cli_json_is_the_eval_result(trained_digits) -> None:
    spec, checkpoint = trained_digits
    out = runner.invoke(app, ["eval", spec, "--data", "digits", "--checkpoint", str(checkpoint), "--json"])
    assert out.exit_code == 0, out.output
    result = EvalResult.model_validate_json(out.stdout)
    assert result.metric_name.value == "accuracy" and 0 < result.metric <= 100
    assert math.isfinite(result.loss) and json.loads(out.stdout)["checkpoint"] == str(checkpoint)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["zoo:resnet20", "--data", "digits"], "does not fit model"),  # a checkpoint of another model
        (["zoo:digits_cnn", "--data", "digits", "--plan", "missing.json"], "missing.json"),
    ],
)
def test_bad_input_is_one_paragraph_and_exit_2(trained_digits, arguments, named) -> None:
    _, checkpoint = trained_digits
    out = runner.invoke(app, ["eval", *arguments, "--checkpoint", str(checkpoint)])
    assert out.exit_code == 2, out.output
    assert named in out.output and "Traceback" not in out.output
