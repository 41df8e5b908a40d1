"""make_plan on hand-built profiles: the paper's rules, hand-computed sizes and BitOPs, bad input."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitplan.errors import PlanError
from bitplan.plan import Budget, Factor, Mapping, Strategy, make_plan
from bitplan.plan.synthetic import GemmShape, profile_from_gemms, resnet20_profile
from bitplan.profile.schema import GemmOp

RESNET20 = resnet20_profile()
STEM, STAGE1, ENTRY2, STAGE2, ENTRY3, STAGE3, FC = (
    ["conv1"],
    [f"layer1.{b}.conv{c}" for b in range(3) for c in (1, 2)],
    ["layer2.0.conv1"],
    ["layer2.0.conv2"] + [f"layer2.{b}.conv{c}" for b in (1, 2) for c in (1, 2)],
    ["layer3.0.conv1"],
    ["layer3.0.conv2"] + [f"layer3.{b}.conv{c}" for b in (1, 2) for c in (1, 2)],
    ["fc"],
)
# (params, MACs) per GEMM, by hand: K·N and M·K·N
SHAPE = {
    **{n: (3 * 9 * 16, 1024 * 27 * 16) for n in STEM},
    **{n: (16 * 9 * 16, 1024 * 144 * 16) for n in STAGE1},
    **{n: (16 * 9 * 32, 256 * 144 * 32) for n in ENTRY2},
    **{n: (32 * 9 * 32, 256 * 288 * 32) for n in STAGE2},
    **{n: (32 * 9 * 64, 64 * 288 * 64) for n in ENTRY3},
    **{n: (64 * 9 * 64, 64 * 576 * 64) for n in STAGE3},
    **{n: (64 * 10, 1 * 64 * 10) for n in FC},
}
OTHER_PARAMS = 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64) + 10  # batch-norm scale and shift, fc bias


def expected_size_bits(bits: dict[str, int]) -> int:
    return sum(SHAPE[name][0] * b for name, b in bits.items()) + OTHER_PARAMS * 32


def expected_bitops(bits: dict[str, int], b_a: int = 8, b_g: int = 8) -> tuple[int, int]:
    forward = sum(SHAPE[name][1] * b * b_a for name, b in bits.items())
    training = sum(SHAPE[name][1] * (b * b_a + b * b_g + b_a * b_g) for name, b in bits.items())
    return forward, training


def bits_of(*groups_and_bits: tuple[list[str], int]) -> dict[str, int]:
    return {name: bits for names, bits in groups_and_bits for name in names}


A_CMINUS = bits_of((STEM, 8), (FC, 7), (STAGE1 + ENTRY2, 6), (STAGE2 + ENTRY3, 5), (STAGE3, 4))
F_CPLUS = bits_of((STEM + STAGE1, 8), (ENTRY2 + STAGE2, 7), (ENTRY3 + STAGE3, 5), (FC, 4))


def test_accumulation_c_minus_matches_the_issue() -> None:
    plan = make_plan(RESNET20, factor=Factor.A, strategy=Strategy.C_minus, bits=(4, 8))
    by_k = {layer.factor_value: layer.bits for layer in plan.layers}
    assert by_k == {27: 8, 64: 7, 144: 6, 288: 5, 576: 4}
    assert plan.bits_by_name() == A_CMINUS


def test_accumulation_c_plus_mirrors_c_minus() -> None:
    plan = make_plan(RESNET20, factor="A", strategy="C+", bits=(4, 8))
    assert plan.bits_by_name() == {name: 12 - bits for name, bits in A_CMINUS.items()}


def test_random_has_the_c_plus_histogram_and_differs_by_seed() -> None:
    c_plus = make_plan(RESNET20, factor="A", strategy="C+")
    plans = [make_plan(RESNET20, factor="A", strategy="R", seed=seed) for seed in range(3)]
    for plan in plans:
        assert Counter(plan.bits_by_weight().values()) == Counter(c_plus.bits_by_weight().values())
    assert len({tuple(plan.bits_by_name().values()) for plan in plans}) > 1
    assert make_plan(RESNET20, factor="A", strategy="R", seed=1) == make_plan(RESNET20, factor="A", strategy="R", seed=1)


@pytest.mark.parametrize(("bits", "uniform"), [((4, 8), 6), ((6, 8), 7), ((8, 16), 12)])
def test_uniform_is_the_middle_of_the_range(bits: tuple[int, int], uniform: int) -> None:
    plan = make_plan(RESNET20, factor="D", strategy="U", bits=bits)
    assert set(plan.bits_by_name().values()) == {uniform}
    assert make_plan(RESNET20, factor="D", strategy="U", bits=bits, uniform_bits=bits[1]).bits_by_name()["fc"] == bits[1]


@pytest.mark.parametrize(("levels", "uniform"), [((2, 3, 4, 8), 4), ((1, 2, 3, 4, 8), 4), ((1, 8), 8), ((2, 4, 6), 4)])
def test_uniform_is_a_level_of_the_menu(levels: tuple[int, ...], uniform: int) -> None:
    plan = make_plan(RESNET20, strategy="U", levels=levels)  # U needs no factor
    assert plan.uniform_bits == uniform and set(plan.bits_by_name().values()) == {uniform}
    with pytest.raises(PlanError, match="not a level of the menu"):
        make_plan(RESNET20, strategy="U", levels=levels, uniform_bits=5)


def test_frequency_c_plus_matches_the_issue() -> None:
    plan = make_plan(RESNET20, factor="F", strategy="C+", bits=(4, 8))
    by_m = {layer.factor_value: layer.bits for layer in plan.layers}
    assert by_m == {1: 4, 64: 5, 256: 7, 1024: 8}
    assert plan.bits_by_name() == F_CPLUS


@pytest.mark.parametrize("bits", [A_CMINUS, F_CPLUS], ids=["A-C-", "F-C+"])
def test_size_and_bitops_are_hand_computed(bits: dict[str, int]) -> None:
    factor, strategy = ("A", "C-") if bits is A_CMINUS else ("F", "C+")
    estimates = make_plan(RESNET20, factor=factor, strategy=strategy).estimates
    uniform = dict.fromkeys(bits, 6)
    fp32 = dict.fromkeys(bits, 32)
    assert estimates.size_bits == expected_size_bits(bits)
    assert estimates.mbit == expected_size_bits(bits) / 1e6
    assert estimates.mbit_uniform == expected_size_bits(uniform) / 1e6
    assert estimates.size_ratio_fp32 == pytest.approx(expected_size_bits(bits) / expected_size_bits(fp32))
    assert (estimates.bitops_forward, estimates.bitops_training) == expected_bitops(bits)
    assert (estimates.bitops_forward_uniform, estimates.bitops_training_uniform) == expected_bitops(uniform)
    assert (estimates.bitops_forward_fp32, estimates.bitops_training_fp32) == expected_bitops(fp32, 32, 32)
    total_macs = sum(macs for _, macs in SHAPE.values())
    assert estimates.bitops_forward_fp32 == total_macs * 32 * 32
    weights = sum(params for params, _ in SHAPE.values())
    assert estimates.avg_bits == pytest.approx(sum(SHAPE[n][0] * b for n, b in bits.items()) / weights)


def test_a_c_minus_numbers_written_out() -> None:
    """The A C- plan in numbers, so a reader can check the definitions by hand."""
    estimates = make_plan(RESNET20, factor="A", strategy="C-").estimates
    # 432·8 + 18432·6 + 64512·5 + 184320·4 + 640·7 + 1386·32
    assert estimates.size_bits == 1_222_720
    # 8 × (442368·8 + 15335424·6 + 12976128·5 + 11796480·4 + 640·7)
    assert estimates.bitops_forward == 1_660_980_224
    assert estimates.histogram == {4: 5, 5: 6, 6: 7, 7: 1, 8: 1}


def test_gradient_and_activation_precision_enter_bitops() -> None:
    plan = make_plan(RESNET20, factor="A", strategy="C-", activation_bits=None, gradient_quant="luq")
    assert (plan.estimates.bitops_forward, plan.estimates.bitops_training) == expected_bitops(A_CMINUS, 32, 4)
    kept = make_plan(RESNET20, factor="A", strategy="C-", keep=["first", "last"], keep_bits=32)
    # without conv1 and fc the distinct K are 144, 288, 576 -> C- levels 8, 6, 4
    expected = bits_of((STEM + FC, 32), (STAGE1 + ENTRY2, 8), (STAGE2 + ENTRY3, 6), (STAGE3, 4))
    forward = sum(SHAPE[n][1] * (b * 8 if b < 32 else 1024) for n, b in expected.items())
    assert kept.estimates.bitops_forward == forward


def test_keep_pins_first_last_and_globs_and_excludes_them_from_ranking() -> None:
    plan = make_plan(RESNET20, factor="A", strategy="C-", keep=["first", "last", "layer3.2.*"], keep_bits=32)
    bits = plan.bits_by_name()
    assert bits["conv1"] == bits["fc"] == bits["layer3.2.conv1"] == bits["layer3.2.conv2"] == 32
    # remaining distinct K: 144, 288, 576 -> ranks 0, 1, 2 -> C- levels 8, 6, 4
    assert bits["layer1.0.conv1"] == 8 and bits["layer2.1.conv1"] == 6 and bits["layer3.1.conv1"] == 4
    assert [layer.name for layer in plan.layers if layer.kept] == ["conv1", "layer3.2.conv1", "layer3.2.conv2", "fc"]


def test_keep_pattern_that_matches_nothing_is_an_error() -> None:
    with pytest.raises(PlanError, match="--keep pattern `layer9.\\*` matches no planned GEMM"):
        make_plan(RESNET20, factor="A", strategy="C-", keep=["layer9.*"])


def tied_profile() -> object:
    """Two GEMMs share `emb.weight` (tied embedding); one attention GEMM has no weight."""
    return profile_from_gemms(
        "tied",
        [
            GemmShape("proj", 8, 16, 16, 1),
            GemmShape("attn.qk", 8, 4, 8, 2, weight=None, op=GemmOp.attention_qk),
            GemmShape("head", 8, 16, 32, 3, weight="emb.weight"),
            GemmShape("head2", 4, 16, 32, 4, weight="emb.weight"),
        ],
        extra_params=10,
    )


def test_a_shared_weight_gets_one_width_and_a_combined_factor_value() -> None:
    profile = tied_profile()
    plan = make_plan(profile, factor="F", strategy="C+", bits=(4, 8))
    assert plan.bits_by_weight() == {"proj.weight": 4, "emb.weight": 8}
    head, head2 = (layer for layer in plan.layers if layer.weight == "emb.weight")
    assert head.factor_value == head2.factor_value == 8 + 4  # frequency sums over uses
    assert make_plan(profile, factor="D", strategy="C+").layers[-1].factor_value == 3  # depth: first use
    assert plan.estimates.planned_params == 16 * 16 + 16 * 32  # the shared weight counted once
    assert plan.estimates.size_bits == 256 * 4 + 512 * 8 + 10 * 32


def test_activation_gemms_only_on_request() -> None:
    profile = tied_profile()
    without = make_plan(profile, factor="A", strategy="C+")
    assert "attn.qk" not in without.bits_by_name()
    assert without.unplanned_macs == 8 * 4 * 8
    # one distinct K (16) -> every weight at the middle level 6; QKᵀ (M·K·N = 256 MACs) runs at 32×32
    assert without.estimates.bitops_forward == (8 * 16 * 16 + 8 * 16 * 32 + 4 * 16 * 32) * 6 * 8 + 256 * 32 * 32
    with_act = make_plan(profile, factor="A", strategy="C+", include_activation_gemms=True)
    assert with_act.bits_by_name()["attn.qk"] == 4  # K = 4 is the smallest accumulation
    assert "attn.qk" not in with_act.bits_by_weight()
    assert with_act.unplanned_macs == 0


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (Mapping.rank, [4, 5, 6, 7, 8]),
        (Mapping.log, [4, 4, 5, 6, 8]),  # ln(1+v) of 1, 2, 10, 100, 10000 scaled to 0..4
        (Mapping.quantile, [4, 5, 6, 7, 8]),
    ],
)
def test_mappings(mapping: Mapping, expected: list[int]) -> None:
    shapes = [GemmShape(f"l{i}", 1, k, 2, i + 1) for i, k in enumerate([1, 2, 10, 100, 10000])]
    plan = make_plan(profile_from_gemms("m", shapes), factor="A", strategy="C+", mapping=mapping)
    assert [layer.bits for layer in plan.layers] == expected


def test_levels_list_and_single_value() -> None:
    plan = make_plan(RESNET20, factor="A", strategy="C-", levels=[8, 10, 12, 14, 16])
    assert plan.bits_by_name()["conv1"] == 16 and plan.uniform_bits == 12
    flat = profile_from_gemms("flat", [GemmShape(f"l{i}", 4, 8, 8, 1) for i in range(3)])
    assert set(make_plan(flat, factor="A", strategy="C+", levels=[4, 6, 8, 10]).bits_by_name().values()) == {8}


def test_dpc_preset_is_c_minus_on_capacity() -> None:
    plan = make_plan(RESNET20, preset="dpc")
    assert (plan.factor, plan.strategy) == (Factor.capacity, Strategy.C_minus)
    by_params = {layer.factor_value: layer.bits for layer in plan.layers}
    assert by_params[36864] == 4 and by_params[432] == 8
    assert make_plan(RESNET20, preset="dpc", capacity="accumulation").bits_by_name() == A_CMINUS
    with pytest.raises(PlanError, match="--preset dpc means --factor capacity"):
        make_plan(RESNET20, preset="dpc", strategy="C+")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factor": "Q", "strategy": "U"}, "unknown factor `Q`; choose one of A, F, D, capacity, macs"),
        ({"factor": "A", "strategy": "C*"}, "unknown strategy `C\\*`"),
        ({"factor": "A"}, "give both --factor"),
        ({"factor": "A", "strategy": "U", "bits": (8, 4)}, "bit range 8-4 is reversed"),
        ({"factor": "A", "strategy": "U", "bits": (0, 4)}, "leaves 1..32"),
        ({"factor": "A", "strategy": "U", "bits": (4, 33)}, "leaves 1..32"),
        ({"factor": "A", "strategy": "U", "levels": [8, 8, 10]}, "strictly increasing"),
        ({"factor": "A", "strategy": "U", "keep_bits": 40}, "`keep_bits` is 40"),
        ({"factor": "A", "strategy": "U", "gradient_quant": "fp8"}, "unknown gradient quantizer `fp8`"),
        ({"factor": "A", "strategy": "U", "mapping": "sqrt"}, "unknown mapping `sqrt`"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        make_plan(RESNET20, **kwargs)


def test_a_model_without_weight_gemms_is_an_error() -> None:
    empty = profile_from_gemms("attention_only", [GemmShape("qk", 4, 4, 4, 1, weight=None, op=GemmOp.attention_qk)])
    with pytest.raises(PlanError, match="model `attention_only` has no GEMM with a weight operand"):
        make_plan(empty, factor="A", strategy="C+")


def test_budget_avg_bits_matches_a_uniform_width_exactly() -> None:
    plan = make_plan(RESNET20, factor="A", strategy="C-", budget=Budget(kind="avg_bits", value=6), budget_rule="order-preserving")
    assert plan.estimates.avg_bits == 6.0 == plan.budget_reached
    assert plan.budget_rule.value == "order-preserving"


def test_fill_keeps_the_strategy_at_an_integer_budget() -> None:
    # order-preserving, the uniform plan is the largest at 6 bits; fill keeps C-'s falling shape
    plan = make_plan(RESNET20, factor="A", strategy="C-", budget=Budget(kind="avg_bits", value=6))
    assert len(set(plan.bits_by_name().values())) > 1
    assert 5 < plan.estimates.avg_bits <= 6 and plan.budget_reached == plan.estimates.avg_bits
    pairs = sorted((layer.factor_value, layer.bits) for layer in plan.layers)
    assert pairs[0][1] >= pairs[-1][1]  # the smallest A keeps the most bits


def test_unreachable_budgets_state_the_reachable_sizes() -> None:
    with pytest.raises(PlanError, match=r"below every plan .* from 4 avg bits .* to 8 avg bits"):
        make_plan(RESNET20, factor="A", strategy="C-", budget=Budget(kind="avg_bits", value=3.5))
    smallest = (sum(p for p, _ in SHAPE.values()) * 4 + OTHER_PARAMS * 32) / 1e6
    with pytest.raises(PlanError, match=f"above every plan .* from {smallest:.6g} MBit"):
        make_plan(RESNET20, factor="A", strategy="C+", budget=Budget(kind="mbit", value=100))


# --- properties on small random profiles ------------------------------------------------------------

small_profiles = st.lists(
    st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 5), st.integers(1, 3)),
    min_size=1,
    max_size=7,
).map(
    lambda rows: profile_from_gemms(
        "random", [GemmShape(f"l{i}", m, k, n, d) for i, (m, k, n, d) in enumerate(rows)], extra_params=3
    )
)
factors = st.sampled_from([Factor.A, Factor.F, Factor.D, Factor.capacity, Factor.macs])
level_lists = st.lists(st.integers(1, 16), min_size=1, max_size=5, unique=True).map(sorted)


@settings(max_examples=60, deadline=None)
@given(small_profiles, factors, level_lists, st.sampled_from(list(Mapping)))
def test_c_plus_rises_c_minus_falls_and_ties_agree(profile, factor, levels, mapping) -> None:
    for strategy, sign in ((Strategy.C_plus, 1), (Strategy.C_minus, -1)):
        plan = make_plan(profile, factor=factor, strategy=strategy, levels=levels, mapping=mapping)
        pairs = sorted((layer.factor_value, layer.bits) for layer in plan.layers)
        for (v1, b1), (v2, b2) in zip(pairs, pairs[1:]):
            assert b1 == b2 if v1 == v2 else sign * (b2 - b1) >= 0
        assert {layer.bits for layer in plan.layers} <= set(levels)


@settings(max_examples=40, deadline=None)
@given(small_profiles, factors, level_lists, st.integers(0, 5))
def test_random_keeps_the_c_plus_histogram(profile, factor, levels, seed) -> None:
    c_plus = make_plan(profile, factor=factor, strategy="C+", levels=levels)
    shuffled = make_plan(profile, factor=factor, strategy="R", levels=levels, seed=seed)
    assert Counter(shuffled.bits_by_weight().values()) == Counter(c_plus.bits_by_weight().values())


def test_a_request_a_spec_string_and_keywords_plan_alike() -> None:
    from bitplan.plan import PlanRequest

    request = PlanRequest(factor="A", strategy="C-", bits=(4, 8))
    by_request = make_plan(RESNET20, request)
    assert make_plan(RESNET20, factor="A", strategy="C-", bits=(4, 8)) == by_request
    assert make_plan("zoo:resnet20", request).bits_by_name() == by_request.bits_by_name() == A_CMINUS
    assert make_plan(RESNET20, request, strategy="C+").strategy is Strategy.C_plus  # keywords override the request
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        request.factor = "F"


def test_plain_scores_rank_factor_s() -> None:
    scores = {layer.name: float(index) for index, layer in enumerate(RESNET20.layers)}  # later = more sensitive
    plan = make_plan(RESNET20, factor="S", strategy="C+", bits=(4, 8), scores=scores)
    assert plan.bits_by_name()["conv1"] == 4 and plan.bits_by_name()["fc"] == 8


def test_unknown_planning_option_names_the_options() -> None:
    with pytest.raises(PlanError, match="`colour` is not a planning option"):
        make_plan(RESNET20, factor="A", strategy="U", colour="red")
