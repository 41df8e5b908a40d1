"""Mixture of experts under uniform routing (docs/concepts.md, "Mixture of experts")."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bitplan.qat import apply, strip
from bitplan.frontends.moe import uniform_rows
from bitplan.frontends.torch import trace
from bitplan.plan import make_plan
from bitplan.profile.schema import ModelProfile, Routing
from bitplan.spec import load_model, profile_spec

HIDDEN, INTER, EXPERTS, TOP_K = 8, 12, 4, 2


class LoopMoE(nn.Module):
    """A hand-written top-k MoE: a router, a ModuleList of SwiGLU-free MLP experts, a loop with ``where``."""

    def __init__(self) -> None:
        super().__init__()
        self.top_k = TOP_K
        self.gate = nn.Linear(HIDDEN, EXPERTS, bias=False)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(HIDDEN, INTER), nn.ReLU(), nn.Linear(INTER, HIDDEN)) for _ in range(EXPERTS)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, S, H]
        flat = x.reshape(-1, HIDDEN)  # [T, H]
        weights, chosen = torch.topk(self.gate(flat).softmax(-1), self.top_k)  # [T, k]
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == e)  # data-dependent: no meta result
            out.index_add_(0, token, expert(flat[token]) * weights[token, slot, None])
        return out.reshape(x.shape)


class FusedExperts(nn.Module):
    """Experts stored as [E, out, in] tensors, called as experts(hidden, top_k_index, top_k_weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.num_experts = EXPERTS
        self.gate_up_proj = nn.Parameter(torch.randn(EXPERTS, 2 * INTER, HIDDEN))
        self.down_proj = nn.Parameter(torch.randn(EXPERTS, HIDDEN, INTER))

    def forward(self, hidden: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(hidden)
        for e in torch.unique(top_k_index).tolist():  # only the experts some token chose
            token, slot = torch.where(top_k_index == e)
            gate, up = F.linear(hidden[token], self.gate_up_proj[e]).chunk(2, dim=-1)
            y = F.linear(F.silu(gate) * up, self.down_proj[e]) * top_k_weights[token, slot, None]
            out.index_add_(0, token, y)
        return out


class FusedMoE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(HIDDEN, EXPERTS, bias=False)
        self.experts = FusedExperts()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [T, H]
        weights, chosen = torch.topk(self.router(x).softmax(-1), TOP_K)
        return self.experts(x, chosen, weights)


def expert_layers(profile: ModelProfile) -> list:
    return [layer for layer in profile.layers if layer.routing is Routing.uniform]


def test_uniform_rows_sum_to_tokens_times_top_k() -> None:
    assert uniform_rows(16, 2, 4) == [8, 8, 8, 8]
    assert uniform_rows(5, 2, 4) == [3, 3, 2, 2]
    assert sum(uniform_rows(7, 3, 5)) == 21


@pytest.mark.parametrize("tracer", ["record", "export"])
def test_loop_moe_experts_get_tokens_times_top_k_over_e(tracer: str) -> None:
    tokens = 2 * 8
    profile = trace(LoopMoE(), (torch.randn(2, 8, HIDDEN),), tracer=tracer)
    router = profile.layers[0]
    assert (router.name, router.m, router.k, router.n, router.routing) == ("gate", tokens, HIDDEN, EXPERTS, None)
    experts = expert_layers(profile)
    assert [layer.name for layer in experts] == [f"experts.{e}.{i}" for e in range(EXPERTS) for i in (0, 2)]
    assert {layer.m for layer in experts} == {tokens * TOP_K // EXPERTS}
    per_token = HIDDEN * INTER + INTER * HIDDEN  # one expert's MACs per token
    assert sum(layer.macs for layer in experts) == tokens * TOP_K * per_token
    assert profile.uncovered == []
    assert profile.coverage.gemm_params == profile.coverage.matrix_params


@pytest.mark.parametrize("tracer", ["record", "export"])
def test_fused_experts_become_virtual_layers(tracer: str) -> None:
    tokens = 6  # 6 · 2 / 4 = 3 rows per expert
    model = FusedMoE()
    profile = trace(model, (torch.randn(tokens, HIDDEN),), tracer=tracer)
    experts = expert_layers(profile)
    assert [layer.weight for layer in experts] == [
        f"experts.{name}[{e}]" for e in range(EXPERTS) for name in ("gate_up_proj", "down_proj")
    ]
    assert [(layer.m, layer.k, layer.n) for layer in experts[:2]] == [(3, HIDDEN, 2 * INTER), (3, INTER, HIDDEN)]
    per_token = HIDDEN * 2 * INTER + INTER * HIDDEN
    assert sum(layer.macs for layer in experts) == tokens * TOP_K * per_token
    # params counted once: the virtual layers add up to the fused parameters, nothing twice
    assert sum(layer.params for layer in profile.weight_layers) == sum(p.numel() for p in model.parameters())
    assert profile.total_params == sum(p.numel() for p in model.parameters())
    assert profile.uncovered == []
    depths = {layer.weight: layer.depth for layer in profile.layers}
    assert depths["router.weight"] == 1 and depths["experts.gate_up_proj[0]"] == 1 and depths["experts.down_proj[0]"] == 2


def test_a_plan_gives_each_expert_its_own_bits() -> None:
    profile = trace(FusedMoE(), (torch.randn(6, HIDDEN),))
    plan = make_plan(profile, factor="A", strategy="U", bits=(4, 4), uniform_bits=4)
    assert [entry.weight for entry in plan.layers].count("experts.down_proj[3]") == 1
    assert len(plan.layers) == 1 + 2 * EXPERTS


MIXTRAL = (
    "hf:mixtral?hidden_size=32&intermediate_size=48&num_hidden_layers=2&num_attention_heads=4&num_key_value_heads=2"
    "&num_local_experts=4&num_experts_per_tok=2&vocab_size=100&seq_len=10&use_cache=false"
)
QWEN_MOE = (
    "hf:qwen2_moe?hidden_size=32&intermediate_size=48&moe_intermediate_size=24&shared_expert_intermediate_size=40"
    "&num_hidden_layers=1&num_attention_heads=4&num_key_value_heads=2&num_experts=4&num_experts_per_tok=2"
    "&vocab_size=100&seq_len=10&use_cache=false"
)


@pytest.mark.parametrize(("spec", "moe_layers", "inter"), [(MIXTRAL, 2, 48), (QWEN_MOE, 1, 24)])
def test_hf_moe_configs_count_every_expert(spec: str, moe_layers: int, inter: int) -> None:
    pytest.importorskip("transformers")
    tokens, hidden, experts, top_k = 10, 32, 4, 2
    profile = profile_spec(spec)  # built on meta: routing is data-dependent there
    routed = expert_layers(profile)
    assert len(routed) == moe_layers * experts * 2
    assert {layer.m for layer in routed} == {tokens * top_k // experts}
    per_token = hidden * 2 * inter + inter * hidden  # gate_up [2I, H] and down [H, I]
    assert sum(layer.macs for layer in routed) == moe_layers * tokens * top_k * per_token
    weights = {layer.weight for layer in routed}
    assert weights == {
        f"model.layers.{i}.mlp.experts.{name}[{e}]"
        for i in range(moe_layers) for e in range(experts) for name in ("gate_up_proj", "down_proj")
    }
    assert profile.uncovered == [] and [layer.weight for layer in profile.lookups] == ["model.embed_tokens.weight"]
    model = load_model(spec, device="meta").model
    assert profile.total_params == sum(p.numel() for p in model.parameters())
    assert profile.coverage.gemm_params + profile.coverage.uncovered_params == profile.coverage.matrix_params


def test_apply_quantizes_one_expert_of_a_fused_parameter() -> None:
    torch.manual_seed(0)
    model, x = FusedMoE(), torch.randn(6, HIDDEN)
    plan = make_plan(trace(model, (x,)), factor="A", strategy="U", bits=(4, 4), uniform_bits=4, activation_bits=None)
    layers = [entry.model_copy(update={"bits": 2 if entry.weight == "experts.down_proj[1]" else 32}) for entry in plan.layers]
    plan = plan.model_copy(update={"layers": layers})
    plain = model(x)
    down = model.experts.down_proj.detach().clone()
    low, high = down[1].amin(1, keepdim=True), down[1].amax(1, keepdim=True)
    scale = (high - low) / 3
    quantized = down.clone()
    quantized[1] = torch.clamp(torch.round((down[1] - low) / scale), 0, 3) * scale + low  # 2 bits, per row
    apply(model, plan, example_inputs=(x,))
    got = model(x)
    with torch.no_grad():
        model.experts.down_proj.copy_(quantized)  # the reference: expert 1's matrix quantized, the rest exact
    strip(model)
    torch.testing.assert_close(got, model(x))
    assert (got - plain).abs().max() > 1e-3


class GatherMoE(nn.Module):
    """Experts applied as ``bmm(W[expert_ids], x)``: a fused [E, out, in] parameter gathered per token."""

    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(HIDDEN, EXPERTS, bias=False)
        self.w_in = nn.Parameter(torch.randn(EXPERTS, INTER, HIDDEN))
        self.w_out = nn.Parameter(torch.randn(EXPERTS, HIDDEN, INTER))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [T, H]
        weights, chosen = torch.topk(self.router(x).softmax(-1), TOP_K)  # [T, k]
        ids = chosen.reshape(-1)  # [T·k]
        rows = x.repeat_interleave(TOP_K, dim=0).unsqueeze(-1)  # [T·k, H, 1]
        h = torch.relu(torch.bmm(self.w_in[ids], rows))  # [T·k, I, 1]
        y = torch.bmm(self.w_out.index_select(0, ids), h).squeeze(-1)  # [T·k, H]
        return (y.reshape(-1, TOP_K, HIDDEN) * weights.unsqueeze(-1)).sum(1)


@pytest.mark.parametrize("tracer", ["record", "export"])
def test_gathered_expert_weights_are_their_parameter_counted_once(tracer: str) -> None:
    tokens = 6  # 6 · 2 / 4 = 3 rows per expert
    model, x = GatherMoE(), torch.randn(tokens, HIDDEN)
    profile = trace(model, (x,), tracer=tracer)
    experts = expert_layers(profile)
    assert [layer.weight for layer in experts] == [f"w_in[{e}]" for e in range(EXPERTS)] + [
        f"w_out[{e}]" for e in range(EXPERTS)
    ]
    assert [(layer.m, layer.k, layer.n, layer.groups) for layer in experts[:1]] == [(3, HIDDEN, INTER, 1)]
    per_token = HIDDEN * INTER + INTER * HIDDEN
    assert sum(layer.macs for layer in experts) == tokens * TOP_K * per_token
    with FlopCounterMode(display=False) as counter:  # the real run: every expert GEMM's MACs agree
        model(x)
    assert 2 * profile.total_macs == counter.get_total_flops()
    total = sum(p.numel() for p in model.parameters())
    assert profile.gemm_params == total == profile.total_params  # 16,677-style: never T·top_k copies
    assert profile.uncovered == []


class UnnamedLoopMoE(nn.Module):
    """A loop over a ModuleList of experts with no ``top_k`` attribute and no conventional names."""

    def __init__(self) -> None:
        super().__init__()
        self.scorer = nn.Linear(HIDDEN, EXPERTS, bias=False)
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(HIDDEN, INTER), nn.GELU(), nn.Linear(INTER, HIDDEN)) for _ in range(EXPERTS)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, S, H]
        flat = x.reshape(-1, HIDDEN)  # [T, H]
        weights, chosen = self.scorer(flat).softmax(-1).topk(3, dim=-1)  # top-3 of 4, written only here
        out = torch.zeros_like(flat)
        for e in range(len(self.mlps)):
            token, slot = torch.where(chosen == e)  # data-dependent: no meta result
            out.index_add_(0, token, self.mlps[e](flat[token]) * weights[token, slot, None])
        return out.reshape(x.shape)


@pytest.mark.parametrize("tracer", ["record", "export"])
def test_unannotated_loop_moe_takes_top_k_from_its_topk_call(tracer: str) -> None:
    tokens, top_k = 2 * 6, 3
    model = UnnamedLoopMoE()
    profile = trace(model, (torch.randn(2, 6, HIDDEN),), tracer=tracer)
    assert (profile.layers[0].name, profile.layers[0].m, profile.layers[0].routing) == ("scorer", tokens, None)
    experts = expert_layers(profile)
    assert [layer.name for layer in experts] == [f"mlps.{e}.{i}" for e in range(EXPERTS) for i in (0, 2)]
    assert {layer.m for layer in experts} == {tokens * top_k // EXPERTS}
    per_token = HIDDEN * INTER + INTER * HIDDEN
    assert sum(layer.macs for layer in experts) == tokens * top_k * per_token
    assert profile.coverage.gemm_params == profile.coverage.matrix_params == profile.gemm_params


def routed_rows(model: nn.Module, router: nn.Linear, flat: torch.Tensor, top_k: int) -> list[int]:
    """Tokens the real router sends to each expert (the oracle for measured routing)."""
    chosen = torch.topk(router(flat).softmax(-1), top_k).indices
    return torch.bincount(chosen.flatten(), minlength=EXPERTS).tolist()


@pytest.mark.parametrize("seed", [1, 5])
def test_measured_routing_counts_the_tokens_the_router_sent(seed: int) -> None:
    torch.manual_seed(seed)
    model, x = UnnamedLoopMoE(), torch.randn(2, 6, HIDDEN)
    with torch.no_grad():
        model.scorer.weight[0] = -100.0  # expert 0 never chosen: an empty GEMM is no GEMM
        x = x.abs()
    profile = trace(model, (x,), routing="measured")
    rows = routed_rows(model, model.scorer, x.reshape(-1, HIDDEN), 3)
    experts = [layer for layer in profile.layers if layer.routing is Routing.measured]
    got = {layer.name.split("#")[0]: layer.m for layer in experts if layer.name.endswith(".0")}
    assert rows[0] == 0 and got == {f"mlps.{e}.0": rows[e] for e in range(EXPERTS) if rows[e]}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    assert profile.total_macs == counter.get_total_flops() // 2  # measured: exactly what ran
    assert "routing measured" in profile.notes[0]


def test_measured_routing_of_gathered_experts_counts_the_ids() -> None:
    torch.manual_seed(2)
    model, x = GatherMoE(), torch.randn(7, HIDDEN)
    profile = trace(model, (x,), routing="measured")
    rows = routed_rows(model, model.router, x, TOP_K)
    w_in = [layer for layer in profile.layers if (layer.weight or "").startswith("w_in[")]
    assert [(layer.weight, layer.m) for layer in w_in] == [(f"w_in[{e}]", rows[e]) for e in range(EXPERTS) if rows[e]]
    assert {layer.routing for layer in w_in} == {Routing.measured}


MOE_FILE = """
import torch
from torch import nn

class ImageMoE(nn.Module):
    def __init__(self):
        super().__init__()
        self.top_k = 2
        self.gate = nn.Linear(3, 4, bias=False)
        self.experts = nn.ModuleList(nn.Linear(3, 3) for _ in range(4))

    def forward(self, image):  # [B, 3, 4, 4] -> tokens [B·16, 3]
        flat = image.flatten(2).transpose(1, 2).reshape(-1, 3)
        weights, chosen = torch.topk(self.gate(flat).softmax(-1), self.top_k)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == e)
            out.index_add_(0, token, expert(flat[token]) * weights[token, slot, None])
        return out

def build():
    torch.manual_seed(0)
    return ImageMoE(), (torch.zeros(1, 3, 4, 4),)
"""


def test_cli_measured_routing_on_data(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from bitplan.cli.app import app

    path = tmp_path / "moe.py"
    path.write_text(MOE_FILE)
    result = CliRunner().invoke(
        app, ["profile", f"{path}:build", "--routing", "measured", "--data", "synthetic?n=8", "--batch", "2", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    profile = json.loads(result.stdout)
    routed = [layer for layer in profile["layers"] if layer["routing"] == "measured"]
    assert sum(layer["m"] for layer in routed) == 2 * 16 * 2  # every token's top-2, as the router chose
    assert profile["input_shapes"] == [[2, 3, 4, 4]] and any("synthetic" in note for note in profile["notes"])
