"""Table lookups as plannable layers: profiled, planned (every strategy, budgets, --keep), applied, exported.

Definitions: docs/concepts.md ("Lookups"), docs/planning.md ("Lookups").
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bitplan.errors import ExportError
from bitplan.export import load_packed, save_packed, to_torchao
from bitplan.frontends.torch import trace
from bitplan.plan import Budget, check_plan, make_plan, save_plan
from bitplan.plan.estimates import FP32, plan_estimates
from bitplan.plan.request import MeasuredScores
from bitplan.profile.schema import GemmOp
from bitplan.qat import apply
from bitplan.quant import uniform_quantize
from bitplan.spec import load_model, profile_spec

UNTIED = "zoo:transformer_lm?d_model=32&n_layers=1&n_heads=2&vocab=61&seq_len=16&tie_weights=false"
TIED = "zoo:transformer_lm?d_model=32&n_layers=1&n_heads=2&vocab=61&seq_len=16"
TABLE = 61 * 32
LARGE = "zoo:transformer_lm?d_model=32&n_layers=2&n_heads=2&vocab=1000&seq_len=16&tie_weights=false"
"""A table as large as all its GEMMs together (32,000 of 69,824 planned params), as in real LMs."""


@pytest.fixture(scope="module")
def untied():
    return profile_spec(UNTIED)


@pytest.fixture(scope="module")
def tied():
    return profile_spec(TIED)


def test_a_lookup_is_a_layer_with_params_and_no_macs(untied):
    (lookup,) = untied.lookups
    assert (lookup.name, lookup.weight, lookup.op) == ("tok_emb", "tok_emb.weight", GemmOp.embedding)
    assert (lookup.m, lookup.k, lookup.n, lookup.params, lookup.macs) == (16, 61, 32, TABLE, 0)
    assert lookup.accumulation == lookup.weight_frequency == lookup.grad_input_accumulation == 0
    # lookups add no depth: the first projections sit at depth 1, as before lookups were layers
    assert untied.layers[1].depth == 1
    assert untied.fingerprint() == untied.model_copy(update={"layers": untied.layers[1:]}).fingerprint()


def test_a_factor_that_cannot_rank_a_table_gives_it_the_uniform_width(untied):
    plan = make_plan(untied, factor="A", strategy="C-", bits=(4, 8))
    entry = plan.layers[0]
    assert (entry.name, entry.bits, entry.factor_value, entry.macs, entry.accumulator_bits) == ("tok_emb", 6, None, 0, None)
    # the table counts in size and mean bits, not in BitOPs
    by_weight = {layer.weight: layer for layer in plan.layers if layer.weight}
    size = sum(layer.params * layer.bits for layer in by_weight.values())
    assert plan.estimates.size_bits == size + (plan.total_params - sum(l.params for l in by_weight.values())) * FP32
    gemms = [layer for layer in plan.layers if not layer.op.lookup]
    assert plan.estimates.bitops_forward == sum(l.macs * l.bits * 8 for l in gemms) + plan.unplanned_macs * FP32 * FP32


@pytest.fixture(scope="module")
def large():
    return profile_spec(LARGE)


@pytest.mark.parametrize("rule", ["fill", "order-preserving"])
@pytest.mark.parametrize(("budget", "uniform"), [(5.5, 5), (6.5, 6), (7.5, 7)])
def test_at_a_budget_the_table_takes_the_uniform_level_paid_from_the_budget(large, rule, budget, uniform):
    plan = make_plan(large, factor="A", strategy="C-", bits=(4, 8), budget=Budget(kind="avg_bits", value=budget), budget_rule=rule)
    assert plan.bits_by_name()["tok_emb"] == uniform  # U's level at the budget
    assert budget - 1 < plan.estimates.avg_bits <= budget
    assert plan.estimates.avg_bits == pytest.approx(
        sum(l.params * l.bits for l in plan.layers if l.weight) / sum(l.params for l in plan.layers if l.weight)
    )


def test_what_the_ranked_layers_cannot_spend_raises_the_table(untied):
    # a small table (1,952 params): the GEMMs at A = 32 reach 8 bits, down_proj (16,384 params) cannot
    # rise, so the budget left raises the table from U's 6 to 8
    plan = make_plan(untied, factor="A", strategy="C-", bits=(4, 8), budget=Budget(kind="avg_bits", value=6.5))
    bits = plan.bits_by_name()
    assert bits["tok_emb"] == 8 and bits["blocks.0.mlp.down_proj"] == 4
    assert 6.5 - 16384 * 4 / plan.estimates.planned_params < plan.estimates.avg_bits <= 6.5


def test_tied_table_is_one_unit_ranked_by_its_head(tied):
    plan = make_plan(tied, factor="A", strategy="C-", bits=(4, 8))
    entries = {layer.name: layer for layer in plan.layers}
    assert entries["tok_emb"].bits == entries["lm_head"].bits
    assert entries["tok_emb"].factor_value == entries["lm_head"].factor_value == 32  # the head's K
    assert plan.estimates.planned_params == sum({l.weight: l.params for l in plan.layers if l.weight}.values())


def test_random_plans_draw_the_table_like_any_layer(large):
    plans = [
        make_plan(large, factor="A", strategy="R", levels=[2, 4, 8], budget=Budget(kind="avg_bits", value=4), seed=seed)
        for seed in range(6)
    ]
    assert {plan.bits_by_name()["tok_emb"] for plan in plans} == {2, 4, 8}
    assert all(3 <= plan.estimates.avg_bits <= 4 for plan in plans)


def test_keep_pins_the_table_outside_the_mean(untied):
    plan = make_plan(untied, strategy="U", bits=(4, 8), keep=["tok_emb"], keep_bits=32, budget=Budget(kind="avg_bits", value=5))
    entry = plan.layers[0]
    assert entry.kept and entry.bits == 32
    assert plan.estimates.avg_bits == 5


def test_the_knapsack_gives_a_sensitive_table_the_top_width(untied):
    names = [layer.name for layer in untied.weight_layers]
    scores = MeasuredScores(by_name={name: (1.0 if name == "tok_emb" else 1e-6) for name in names}, bits=4)
    plan = make_plan(untied, levels=[2, 4, 8], budget=Budget(kind="avg_bits", value=4), scores=scores, objective="min-sensitivity")
    assert plan.bits_by_name()["tok_emb"] == 8 and plan.estimates.avg_bits <= 4


def test_a_plan_made_before_lookups_were_layers_still_checks_clean(untied, tmp_path):
    fresh = make_plan(untied, factor="A", strategy="C-", bits=(4, 8))
    layers = [layer for layer in fresh.layers if not layer.op.lookup]
    old = fresh.model_copy(update={"layers": layers})
    old = old.model_copy(update={"estimates": plan_estimates(old)})
    assert old.estimates.other_params == fresh.estimates.other_params + TABLE  # the table at 32 bits
    save_plan(old, tmp_path / "old.json")
    report = check_plan(tmp_path / "old.json", model=UNTIED)
    assert report.ok, report.violations


def _quantized_copy(model: nn.Module, plan, bits: int) -> nn.Module:
    reference = copy.deepcopy(model)
    with torch.no_grad():
        for name, parameter in reference.named_parameters():
            if name in plan.bits_by_weight():
                parameter.copy_(uniform_quantize(parameter, bits, channel_dim=0))
    return reference


@pytest.mark.parametrize("spec", [UNTIED, TIED, "zoo:lstm2?vocab=50&embed=8&hidden=8&seq_len=6"])
def test_apply_reads_the_table_quantized_with_a_straight_through_gradient(spec):
    torch.manual_seed(0)
    loaded = load_model(spec)
    model, inputs = loaded.model.eval(), loaded.example_inputs
    plan = make_plan(profile_spec(spec), strategy="U", levels=[2, 8], uniform_bits=2, weight_only=True)
    assert any(layer.op.lookup for layer in plan.layers)
    reference = _quantized_copy(model, plan, 2)
    applied = apply(model, plan, inputs)
    out, expected = applied(*inputs), reference(*inputs)
    out, expected = (out[0], expected[0]) if isinstance(out, tuple) else (out, expected)
    assert torch.equal(out, expected)
    out.square().mean().backward()
    expected.square().mean().backward()
    table = next(name for name, module in model.named_modules() if isinstance(module, nn.Embedding))
    got, want = model.get_submodule(table).weight.grad, reference.get_submodule(table).weight.grad
    assert torch.allclose(got, want, atol=1e-7)  # straight through: the quantized table's gradient


class FunctionalTable(nn.Module):
    """A table read by F.embedding on a raw parameter (no nn.Embedding), then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(11, 6))
        self.head = nn.Linear(6, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # ids: [B, T]
        return self.head(F.embedding(ids, self.table))


def test_a_functional_lookup_is_planned_applied_and_refused_where_a_format_cannot_store_it(tmp_path):
    torch.manual_seed(0)
    model, ids = FunctionalTable().eval(), torch.randint(0, 11, (2, 5))
    profile = trace(model, (ids,))
    assert [(layer.name, layer.op, layer.m, layer.k, layer.n) for layer in profile.lookups] == [("table", GemmOp.embedding, 10, 11, 6)]
    plan = make_plan(profile, strategy="U", levels=[3], weight_only=True, zero_point="integer")
    expected = apply(copy.deepcopy(model), plan, (ids,))(ids)
    assert not torch.allclose(expected, model(ids), atol=1e-3)  # the 3-bit table changed the output
    save_packed(model, plan, tmp_path / "m.safetensors")
    fresh = FunctionalTable().eval()
    load_packed(tmp_path / "m.safetensors", fresh)
    assert torch.allclose(fresh(ids), expected, atol=1e-6)
    pytest.importorskip("torchao")
    with pytest.raises(ExportError, match=r"lookup `table`.*--keep table"):
        to_torchao(plan, model)
    kept = make_plan(profile, strategy="U", levels=[3], weight_only=True, zero_point="integer", keep=["table"], keep_bits=32)
    to_torchao(kept, model)  # the fix the message names


def test_onnx_dequantizes_the_table_for_its_gather(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from bitplan.export import to_onnx

    torch.manual_seed(0)
    model = load_model(UNTIED).model.eval()
    ids = torch.randint(0, 61, (2, 16))
    plan = make_plan(profile_spec(UNTIED), strategy="U", levels=[4], weight_only=True, zero_point="integer")
    with torch.no_grad():
        expected = apply(copy.deepcopy(model), plan, (ids,))(ids)
    to_onnx(model, plan, tmp_path / "lm.onnx", (ids,))
    graph = onnx.load(str(tmp_path / "lm.onnx")).graph
    (gather,) = [node for node in graph.node if node.op_type == "Gather" and "tok_emb" in node.input[0]]
    producer = {out: node for node in graph.node for out in node.output}[gather.input[0]]
    assert producer.op_type == "Squeeze" and "tok_emb.weight" not in {tensor.name for tensor in graph.initializer}
    session = ort.InferenceSession(str(tmp_path / "lm.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: ids.numpy()})[0])
    assert float((got - expected).abs().max() / expected.abs().max()) <= 1e-5


def test_torchao_prepares_and_converts_the_table_exactly():
    pytest.importorskip("torchao")
    from torchao.quantization import quantize_

    torch.manual_seed(0)
    model, ids = load_model(UNTIED).model.eval(), torch.randint(0, 61, (2, 16))
    plan = make_plan(profile_spec(UNTIED), strategy="U", levels=[4], weight_only=True, zero_point="integer")
    with torch.no_grad():
        expected = apply(copy.deepcopy(model), plan, (ids,))(ids)
        quantize_(model, to_torchao(plan, model), filter_fn=None)
        assert type(model.tok_emb).__name__ == "FakeQuantizedEmbedding" and torch.equal(model(ids), expected)
        quantize_(model, to_torchao(plan, model, stage="convert"), filter_fn=None)
        assert type(model.tok_emb) is nn.Embedding and torch.allclose(model(ids), expected, atol=1e-6)
