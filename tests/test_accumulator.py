"""Integer accumulator widths: brute-force oracles, the committed resnet20 plan, check and the table."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from itertools import product
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import bitplan.spec
from bitplan.cli.app import app
from bitplan.plan import check_plan, make_plan, parse_plan, save_plan
from bitplan.plan.accumulator import LUQ_MAX_MAGNITUDE, accumulator_width, layer_accumulator_bits, uniform_max_code
from bitplan.plan.estimates import Precision
from bitplan.plan.render import layers_table
from bitplan.plan.synthetic import resnet20_profile

RESNET20 = resnet20_profile()
PLANS_DIR = Path(__file__).resolve().parents[1] / "plans"
runner = CliRunner()


def smallest_register(largest_sum: int) -> int:
    """Oracle: the fewest two's-complement bits whose range [−2^(w−1), 2^(w−1) − 1] holds ±largest_sum."""
    width = 1
    while not (-(2 ** (width - 1)) <= -largest_sum and largest_sum <= 2 ** (width - 1) - 1):
        width += 1
    return width


def worst_sum(length: int, bits_a: int, bits_b: int) -> int:
    """Oracle: literally add up ``length`` products of the largest codes 0..2^b − 1."""
    codes_a, codes_b = range(2**bits_a), range(2**bits_b)
    largest_product = max(a * b for a, b in product(codes_a, codes_b))
    return sum(largest_product for _ in range(length))


def oracle_width(length: int, bits_a: int | None, bits_b: int | None) -> int | None:
    if bits_a is None or bits_b is None:
        return None
    return smallest_register(worst_sum(length, bits_a, bits_b))


@pytest.mark.parametrize("length", [1, 2, 3, 7, 8, 9, 27, 64, 144])
@pytest.mark.parametrize("bits", [(1, 1), (1, 4), (2, 3), (4, 4), (4, 8), (8, 8)])
def test_width_matches_the_brute_force_sum(length: int, bits: tuple[int, int]) -> None:
    bits_a, bits_b = bits
    expected = oracle_width(length, bits_a, bits_b)
    assert accumulator_width(length, uniform_max_code(bits_a), uniform_max_code(bits_b)) == expected


def test_hand_computed_widths() -> None:
    # K = 27 (3×3×3 conv), 8×8 bits: 27·255·255 = 1,755,675 < 2^21 = 2,097,152, so 21 magnitude bits + sign
    assert accumulator_width(27, 255, 255) == 22
    # K = 1, 1×1 bits: the sum is ±1, which needs 2 signed bits (the issue's 1 + ceil(log2 1) = 1 is short)
    assert accumulator_width(1, 1, 1) == 2
    # LUQ gradient (magnitude 128) against 8-bit codes over K = 16: 16·128·255 = 522,240 < 2^19
    assert accumulator_width(16, LUQ_MAX_MAGNITUDE, 255) == 20


def test_fp32_operands_have_no_integer_accumulator() -> None:
    assert uniform_max_code(32) is None and uniform_max_code(None) is None
    assert accumulator_width(10, None, 255) is None and accumulator_width(10, 255, None) is None
    layer = RESNET20.layers[1]
    assert layer_accumulator_bits(layer, 32, Precision(8, 8, "sr")).widest() is None
    fp32_activations = layer_accumulator_bits(layer, 4, Precision(None, 8, "sr"))
    assert fp32_activations.forward is None and fp32_activations.grad_weight is None
    assert fp32_activations.grad_input == oracle_width(layer.grad_input_accumulation, 8, 4)
    no_gradient = layer_accumulator_bits(layer, 4, Precision(8, 8, "none"))
    assert no_gradient.forward == oracle_width(layer.accumulation, 4, 8)
    assert no_gradient.grad_input is None and no_gradient.grad_weight is None


def test_luq_gradients_count_as_magnitude_128() -> None:
    layer = RESNET20.layers[5]
    widths = layer_accumulator_bits(layer, 5, Precision(8, 8, "luq"))
    # a LUQ code is ±2^k, k ≤ 7: the largest product with a 5-bit code is 128·31
    assert widths.grad_input == smallest_register(layer.grad_input_accumulation * 128 * 31)
    assert widths.grad_weight == smallest_register(layer.grad_weight_accumulation * 255 * 128)


def test_committed_resnet20_a_cminus_plan_matches_the_formula() -> None:
    plan = parse_plan((PLANS_DIR / "resnet20_A_Cminus_4-8.json").read_text())
    assert plan.fingerprint == RESNET20.fingerprint() and plan.activation_bits == 8 and plan.gradient_bits == 8
    gemms = {layer.name: layer for layer in RESNET20.layers}
    assert len(plan.layers) == 20
    for entry in plan.layers:
        gemm = gemms[entry.name]
        widths = entry.accumulator_bits
        assert widths is not None, entry.name
        assert widths.forward == oracle_width(gemm.k, entry.bits, 8), entry.name
        assert widths.grad_input == oracle_width(gemm.n, 8, entry.bits), entry.name
        assert widths.grad_weight == oracle_width(gemm.m, 8, 8), entry.name
    first, last = plan.layers[0], plan.layers[-1]
    # conv1: K = 27 at 8 bits; N = 16 at 8×8; M = 32·32 at 8×8 (hand-computed)
    assert (first.bits, first.accumulator_bits.label()) == (8, "22/21/27")
    # fc at 7 bits: K = 64: 64·127·255 = 2,072,640 < 2^21; N = 10: 323,850 in [2^18, 2^19); M = 1: 65,025 < 2^16
    assert (last.name, last.bits, last.accumulator_bits.label()) == ("fc", 7, "22/20/17")


@given(
    length=st.integers(1, 10**9),
    bits_a=st.integers(1, 31),
    bits_b=st.integers(1, 31),
)
def test_width_is_the_exact_register_size(length: int, bits_a: int, bits_b: int) -> None:
    largest = length * (2**bits_a - 1) * (2**bits_b - 1)
    width = accumulator_width(length, uniform_max_code(bits_a), uniform_max_code(bits_b))
    assert 2 ** (width - 1) - 1 >= largest  # fits
    assert 2 ** (width - 2) - 1 < largest  # one bit fewer does not
    issue_formula = 1 + math.ceil(math.log2(largest)) if largest < 2**50 else None  # float log2 exact here
    power_of_two = largest & (largest - 1) == 0
    if issue_formula is not None:
        assert width == issue_formula + (1 if power_of_two else 0)
    assert power_of_two == (bits_a == bits_b == 1 and length & (length - 1) == 0)


@given(length=st.integers(1, 10**6), bits=st.integers(1, 16), more=st.integers(1, 8))
def test_width_grows_with_length_and_bits(length: int, bits: int, more: int) -> None:
    base = accumulator_width(length, uniform_max_code(bits), 255)
    assert accumulator_width(length + more, uniform_max_code(bits), 255) >= base
    assert accumulator_width(length, uniform_max_code(bits + more), 255) >= base
    # doubling K adds exactly one bit
    assert accumulator_width(2 * length, uniform_max_code(bits), 255) == base + 1


def test_old_plans_without_the_field_still_load() -> None:
    data = json.loads(make_plan(RESNET20, factor="A", strategy="C-").model_dump_json())
    for layer in data["layers"]:
        del layer["accumulator_bits"]
    plan = parse_plan(json.dumps(data))
    assert all(layer.accumulator_bits is None for layer in plan.layers)
    assert "acc bits" in [column.header for column in layers_table(plan).columns]


# --- bitplan check --max-accumulator-bits ---------------------------------------------------------


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    return save_plan(make_plan(RESNET20, factor="A", strategy="C-", bits=(4, 8)), tmp_path / "plan.json")


def test_check_lists_each_layer_over_the_limit(plan_file: Path) -> None:
    plan = parse_plan(plan_file.read_text())
    widest = {layer.name: layer.accumulator_bits.widest() for layer in plan.layers}
    limit = sorted(set(widest.values()))[-2]
    report = check_plan(plan_file, profile=RESNET20, max_accumulator_bits=limit)
    over = [v.layer for v in report.violations if v.code == "max_accumulator_bits"]
    assert over == [name for name, bits in widest.items() if bits > limit] and over
    assert check_plan(plan_file, profile=RESNET20, max_accumulator_bits=max(widest.values())).ok


def test_check_recomputes_widths_for_plans_without_them(plan_file: Path, tmp_path: Path) -> None:
    data = json.loads(plan_file.read_text())
    for layer in data["layers"]:
        del layer["accumulator_bits"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    report = check_plan(old, profile=RESNET20, max_accumulator_bits=20)
    assert not report.ok and {v.code for v in report.violations} == {"max_accumulator_bits"}


def test_check_catches_edited_widths(plan_file: Path) -> None:
    data = json.loads(plan_file.read_text())
    data["layers"][3]["accumulator_bits"]["forward"] = 16
    plan_file.write_text(json.dumps(data))
    report = check_plan(plan_file, profile=RESNET20)
    assert [(v.code, v.layer) for v in report.violations] == [("accumulator_bits", data["layers"][3]["name"])]


def test_cli_exit_codes(plan_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bitplan.spec, "profile_spec", lambda spec, **kwargs: RESNET20)
    result = runner.invoke(app, ["check", str(plan_file), "--max-accumulator-bits", "26", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert {v["code"] for v in report["violations"]} == {"max_accumulator_bits"}
    assert all("above --max-accumulator-bits 26" in v["message"] for v in report["violations"])
    assert runner.invoke(app, ["check", str(plan_file), "--max-accumulator-bits", "40"]).exit_code == 0
    # no signed accumulator is narrower than 2 bits (K = 1, two 1-bit codes): a usage error
    assert runner.invoke(app, ["check", str(plan_file), "--max-accumulator-bits", "1"]).exit_code == 2


def test_real_cli_run_on_the_committed_plan() -> None:
    command = [sys.executable, "-m", "bitplan", "check", str(PLANS_DIR / "resnet20_A_Cminus_4-8.json")]
    over = subprocess.run([*command, "--max-accumulator-bits", "26", "--json"], capture_output=True, text=True)
    assert over.returncode == 1, over.stderr
    layers = [v["layer"] for v in json.loads(over.stdout)["violations"]]
    # the first stage (conv1 and layer1's six convs) sums M = 32·32 = 1024 dW products at 8×8 bits: 27 bits
    assert layers == ["conv1"] + [f"layer1.{block}.conv{i}" for block in range(3) for i in (1, 2)]
