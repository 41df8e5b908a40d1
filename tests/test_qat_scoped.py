"""Quantization scoped to a module's forward: attention products, activation matmuls, raw parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bitplan.qat import apply, strip
from bitplan.errors import PlanError
from test_qat import plan_for, reference_quant


class SelfAttention(nn.Module):
    def __init__(self, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x):  # x: [B, L, D]
        batch, length, dim = x.shape
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in self.qkv(x).split(dim, -1))
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, L, D/H]


def test_attention_products_quantized_when_planned():
    torch.manual_seed(3)
    model, x = SelfAttention(), torch.randn(2, 5, 8)
    plan = plan_for(model, (x,), default=8, include_activation_gemms=True, gradient_quant="none")
    names = {layer.name for layer in plan.layers}
    assert {"attention_qk", "attention_av"} <= names
    plan = plan.model_copy(update={"layers": [
        layer.model_copy(update={"bits": {"attention_qk": 4, "attention_av": 3}.get(layer.name, layer.bits)})
        for layer in plan.layers
    ]})
    reference = SelfAttention()
    reference.load_state_dict(model.state_dict())
    apply(model, plan, (x,))
    qkv = F.linear(reference_quant(x, 8), reference_quant(reference.qkv.weight, 8, dim=0), reference.qkv.bias)
    q, k, v = (t.view(2, 5, 2, 4).transpose(1, 2) for t in qkv.split(8, -1))
    scores = reference_quant(q, 4) @ reference_quant(k, 4).transpose(-2, -1) / 2.0  # sqrt(head dim 4)
    scores = scores.masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf"))
    expected = reference_quant(scores.softmax(-1), 3) @ reference_quant(v, 3)
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    strip(model)
    torch.testing.assert_close(model(x), reference(x))


def test_transformer_lm_trains_with_attention_planned():
    from bitplan.spec import load_model

    loaded = load_model("zoo:transformer_lm?d_model=32&n_layers=1&n_heads=2&vocab=50&seq_len=8")
    model, inputs = loaded.model, loaded.example_inputs
    plan = plan_for(model, inputs, include_activation_gemms=True)
    apply(model, plan, inputs)
    assert any(type(module).__name__.startswith("Scoped") for module in model.modules())
    logits = model(*inputs)
    F.cross_entropy(logits.flatten(0, 1), inputs[0].flatten()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_multihead_attention_is_refused():
    model = nn.MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(2, 5, 8)

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = model

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    wrapper = Wrapper()
    with pytest.raises(PlanError, match="MultiheadAttention"):
        apply(wrapper, plan_for(wrapper, (x,)), (x,))


class ManualAttention(nn.Module):
    """Attention written with matmuls and a raw projection Parameter used through a view."""

    def __init__(self, dim: int = 6) -> None:
        super().__init__()
        self.proj = nn.Parameter(torch.randn(3 * dim, dim) / dim**0.5)

    def forward(self, x):  # x: [B, L, D]
        q, k, v = (x @ self.proj.t()).chunk(3, dim=-1)  # [B, L, D] each
        return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v  # [B, L, D]


def test_activation_matmuls_and_raw_parameters_quantized_when_planned():
    torch.manual_seed(5)
    model, x = ManualAttention(), torch.randn(2, 4, 6)
    plan = plan_for(model, (x,), default=8, include_activation_gemms=True, gradient_quant="none")
    widths = {layer.name: layer.bits for layer in plan.layers}
    assert set(widths) == {"proj", "matmul", "matmul#2"}, widths
    plan = plan.model_copy(update={"layers": [
        layer.model_copy(update={"bits": {"proj": 5, "matmul": 4, "matmul#2": 3}[layer.name]}) for layer in plan.layers
    ]})
    proj = model.proj.detach().clone()
    apply(model, plan, (x,))
    q, k, v = (reference_quant(x, 8) @ reference_quant(proj, 5, dim=0).t()).chunk(3, dim=-1)
    probs = torch.softmax(reference_quant(q, 4) @ reference_quant(k.transpose(-2, -1), 4), dim=-1)
    expected = reference_quant(probs, 3) @ reference_quant(v, 3)
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    model(x).sum().backward()
    assert model.proj.grad is not None and torch.isfinite(model.proj.grad).all()
    strip(model)
    assert type(model) is ManualAttention


def test_quantizer_kernels_compile_inside_the_scope_mode(monkeypatch):
    # The scope's torch-function mode was traced into the packing kernel of 4-bit codes, which then
    # failed to compile and fell back to eager for the rest of the process.
    from bitplan.quant import kernels

    monkeypatch.setattr(kernels, "_failed", set())
    torch.manual_seed(8)
    model, x = SelfAttention(dim=16, heads=2), torch.randn(4, 16, 16)
    apply(model, plan_for(model, (x,), default=4, include_activation_gemms=True, activation_bits=4), (x,))
    with kernels.kernel_policy(min_numel=0, warm_min_numel=0):
        model(x).sum().backward()
    assert kernels._failed == set()
