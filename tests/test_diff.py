"""``bitplan diff``: per-layer bits side by side and size/BitOPs deltas, checked against hand arithmetic."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from bitplan.cli.app import app
from bitplan.errors import PlanError
from bitplan.plan import make_plan, save_plan
from bitplan.plan.diff import PlanDiff, diff_plans
from bitplan.plan.synthetic import GemmShape, profile_from_gemms

# Two linear GEMMs: a = X[4×8]·W[8×2] (16 params, 64 MACs), b = X[4×2]·W[2×4] (8 params, 32 MACs),
# plus 6 other parameters (biases) held at 32 bits.
TWO = profile_from_gemms("two", [GemmShape("a", 4, 8, 2, 1), GemmShape("b", 4, 2, 4, 2)], extra_params=6)


@pytest.fixture
def plans():
    """A: every layer at 8 bits. B: C- on A over {4, 8}, so a (K=8) gets 4 bits and b (K=2) keeps 8."""
    uniform = make_plan(TWO, factor="A", strategy="U", levels=[8])
    falling = make_plan(TWO, factor="A", strategy="C-", levels=[4, 8])
    assert [layer.bits for layer in uniform.layers] == [8, 8]
    assert [layer.bits for layer in falling.layers] == [4, 8]
    return uniform, falling


def test_deltas_match_hand_arithmetic(plans):
    result = diff_plans(*plans)
    # size: A = 16·8 + 8·8 + 6·32 = 384 bits; B = 16·4 + 8·8 + 6·32 = 320 bits.
    assert (result.totals_a.size_bits, result.totals_b.size_bits) == (384, 320)
    assert result.mbit_delta == pytest.approx(-64 / 1e6, abs=1e-15)
    # forward BitOPs at 8-bit activations: A = 64·8·8 + 32·8·8 = 6144; B = 64·4·8 + 32·8·8 = 4096.
    assert (result.totals_a.bitops_forward, result.totals_b.bitops_forward, result.bitops_forward_delta) == (
        6144, 4096, -2048)
    # training adds dX (b_w·b_g) and dW (b_a·b_g) at 8-bit gradients: A = 96·(64+64+64) = 18432;
    # B = 64·(32+32+64) + 32·192 = 8192 + 6144 = 14336.
    assert (result.totals_a.bitops_training, result.totals_b.bitops_training, result.bitops_training_delta) == (
        18432, 14336, -4096)
    # avg bits: A 8; B (16·4 + 8·8) / 24 = 16/3.
    assert result.avg_bits_delta == pytest.approx(16 / 3 - 8)
    assert [(row.name, row.bits_a, row.bits_b, row.changed) for row in result.layers] == [
        ("a", 8, 4, True), ("b", 8, 8, False)]
    assert result.changed == 1 and result.same_architecture and result.notes == []


def test_layers_only_in_one_plan_are_listed_and_counted(plans):
    uniform, falling = plans
    shorter = falling.model_copy(update={"layers": falling.layers[:1]})
    result = diff_plans(shorter, uniform)
    assert [(row.name, row.index_a, row.index_b, row.bits_a, row.bits_b) for row in result.layers] == [
        ("a", 0, 0, 4, 8), ("b", None, 1, None, 8)]
    assert result.changed == 2


def test_other_batch_and_architecture_are_noted(plans):
    uniform, _ = plans
    other = make_plan(profile_from_gemms("three", [GemmShape("a", 8, 8, 2, 1)], batch=2), factor="A", strategy="U",
                      levels=[8])
    with pytest.raises(PlanError, match="--across-architectures"):
        diff_plans(uniform, other)  # layers would match by name only
    result = diff_plans(uniform, other, across_architectures=True)
    assert any("different architectures" in note for note in result.notes)
    assert any("batch 1 and 2" in note for note in result.notes)
    row = next(row for row in result.layers if row.name == "a")
    assert (row.params, row.macs) == (other.layers[0].params, other.layers[0].macs)  # both from one plan (B)


def test_totals_are_recomputed_from_the_layers_not_read_from_stale_estimates(plans):
    """A layer edited to 17 bits after planning: the stored estimates are stale, the diff is not."""
    uniform, _ = plans
    layers = [uniform.layers[0].model_copy(update={"bits": 17}), *uniform.layers[1:]]
    edited = uniform.model_copy(update={"layers": layers})  # estimates untouched, as a hand edit leaves them
    result = diff_plans(uniform, edited)
    expected = (17 - uniform.layers[0].bits) * uniform.layers[0].params / 1e6
    assert result.mbit_delta == pytest.approx(expected) and expected != 0


def test_cli_prints_every_format(plans, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    save_plan(plans[0], a)
    save_plan(plans[1], b)
    runner = CliRunner()
    as_json = runner.invoke(app, ["diff", str(a), str(b), "--json"])
    assert as_json.exit_code == 0, as_json.output
    parsed = PlanDiff.model_validate_json(as_json.stdout)
    assert parsed.a == "a.json" and parsed.b == "b.json" and parsed.bitops_forward_delta == -2048
    assert json.loads(runner.invoke(app, ["diff", str(a), str(b), "--format", "json"]).stdout) == json.loads(
        as_json.stdout)
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["diff", str(a), str(b), "--format", "csv"]).stdout)))
    assert [(row["name"], row["bits_a"], row["bits_b"], row["delta"]) for row in rows] == [
        ("a", "8", "4", "-4"), ("b", "8", "8", "0")]
    markdown = runner.invoke(app, ["diff", str(a), str(b), "--format", "md"]).stdout
    assert "| 0 | 0 | a | 16 | 64 | 8 | 4 | -4 |" in markdown
    assert "| fwd G BitOPs | 6.144e-06 | 4.096e-06 | -2.048e-06 | 0.6667 |" in markdown
    table = runner.invoke(app, ["diff", str(a), str(b)])
    assert table.exit_code == 0 and "1 of 2 layers differ" in table.stdout and "0.6667" in table.stdout
    written = tmp_path / "out" / "diff.json"
    assert runner.invoke(app, ["diff", str(a), str(b), "--json", "-o", str(written)]).exit_code == 0
    assert PlanDiff.model_validate_json(written.read_text()) == parsed


def test_cli_missing_plan_is_one_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["diff", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert result.exit_code == 2
    assert "does not exist" in result.output and "bitplan plan" in result.output and "Traceback" not in result.output
