"""Structures that used to be dropped silently, hand-written so they run without torchvision: GEMMs on
constant inputs (swin_v2's ``cpb_mlp``), every iteration of a Python loop (RAFT's refinement), each
checked against ``FlopCounterMode`` on real tensors (docs/concepts.md, "Constant inputs and loops")."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations
from torch.utils.flop_counter import FlopCounterMode

from bitplan.frontends.torch import trace
from bitplan.profile.schema import ModelProfile

TRACERS = ["record", "export"]


def real_macs(model: nn.Module, inputs: tuple) -> int:
    """MACs of one real forward as torch's FLOP counter sees them (2 FLOPs per MAC)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() // 2


def assert_exact(model: nn.Module, inputs: tuple, tracer: str) -> ModelProfile:
    profile = trace(model.eval(), inputs, tracer=tracer)
    assert profile.total_macs == real_macs(model, inputs)
    assert profile.gemm_params <= profile.total_params
    return profile


class BiasTableAttention(nn.Module):
    """Window attention whose bias comes from an MLP on a constant coordinate table (swin_v2's cpb_mlp)."""

    def __init__(self, dim: int = 16, heads: int = 2, window: int = 3) -> None:
        super().__init__()
        self.heads, self.tokens = heads, window * window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 32), nn.ReLU(inplace=True), nn.Linear(32, heads, bias=False))
        offsets = torch.arange(-(window - 1), window, dtype=torch.float32)
        table = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), -1).reshape(-1, 2)  # [(2w-1)², 2]
        self.register_buffer("table", table / (window - 1))
        grid = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)  # [2, N]
        relative = (grid[:, :, None] - grid[:, None, :] + window - 1).permute(1, 2, 0)  # [N, N, 2]
        self.register_buffer("index", relative[..., 0] * (2 * window - 1) + relative[..., 1])  # [N, N]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, N, C]
        batch, tokens, channels = x.shape
        bias = self.cpb_mlp(self.table)[self.index.reshape(-1)]  # [N·N, heads]: no model input involved
        bias = bias.reshape(tokens, tokens, self.heads).permute(2, 0, 1)  # [heads, N, N]
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # each [B, h, N, d]
        attn = (q @ k.transpose(-2, -1)) + 16 * torch.sigmoid(bias)  # [B, h, N, N]
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(batch, tokens, channels))


class FlowRefinement(nn.Module):
    """RAFT's shape: two images, then a loop whose first iteration convolves a flow made of constants."""

    def __init__(self, iterations: int = 12) -> None:
        super().__init__()
        self.iterations = iterations
        self.features = nn.Conv2d(3, 8, 3, padding=1)
        self.convflow1 = nn.Conv2d(2, 8, 3, padding=1)
        self.convflow2 = nn.Conv2d(8, 4, 1)
        self.update = nn.Conv2d(12, 2, 3, padding=1)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:  # each [B, 3, H, W]
        context = self.features(image1) - self.features(image2)  # [B, 8, H, W]
        batch, _, height, width = image1.shape
        ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
        coords0 = torch.stack([xs, ys]).float()[None].repeat(batch, 1, 1, 1)  # [B, 2, H, W]
        coords1 = coords0.clone()
        for _ in range(self.iterations):
            coords1 = coords1.detach()
            flow = coords1 - coords0  # zero at the first iteration, independent of the images
            motion = self.convflow2(F.relu(self.convflow1(flow)))  # [B, 4, H, W]
            coords1 = coords1 + self.update(torch.cat([context, motion], 1))
        return coords1 - coords0


@pytest.mark.parametrize("tracer", TRACERS)
def test_a_gemm_on_a_constant_table_runs_once_per_forward(tracer: str) -> None:
    model = BiasTableAttention()
    profile = assert_exact(model, (torch.randn(2, 9, 16),), tracer)
    rows = {layer.name: (layer.m, layer.k, layer.n) for layer in profile.layers}
    assert rows["cpb_mlp.0"] == (25, 2, 32) and rows["cpb_mlp.2"] == (25, 32, 2)  # (2·3-1)² table rows
    assert profile.uncovered == []


@pytest.mark.parametrize("tracer", TRACERS)
def test_every_loop_iteration_is_counted(tracer: str) -> None:
    model = FlowRefinement()
    images = (torch.randn(1, 3, 6, 5), torch.randn(1, 3, 6, 5))
    profile = assert_exact(model, images, tracer)
    names = [layer.name for layer in profile.layers]
    assert sum(name.split("#")[0] == "convflow1" for name in names) == 12
    assert sum(name.split("#")[0] == "update" for name in names) == 12


class NormalizedWeights(nn.Module):
    """Spectral norm computes σ with ``mv(W, v)`` on a buffer: part of the weight, not a GEMM of the model."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = parametrizations.spectral_norm(nn.Linear(6, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@pytest.mark.parametrize("tracer", TRACERS)
def test_a_product_inside_a_weight_computation_is_no_gemm(tracer: str) -> None:
    profile = trace(NormalizedWeights().eval(), (torch.randn(3, 6),), tracer=tracer)
    assert [(layer.name, layer.m, layer.k, layer.n) for layer in profile.layers] == [("fc", 3, 6, 5)]


class RelativePositions(nn.Module):
    """MViT-v2's decomposed relative positions: a table gathered per (query, key) pair, then an einsum."""

    def __init__(self, size: int = 4, dim: int = 6) -> None:
        super().__init__()
        self.rel_pos = nn.Parameter(torch.randn(2 * size - 1, dim))  # [R, C]
        self.register_buffer("distance", torch.arange(size)[:, None] - torch.arange(size)[None, :] + size - 1)  # [q, k]
        self.shared = nn.Parameter(torch.randn(1, dim, 3))

    def forward(self, q: torch.Tensor) -> torch.Tensor:  # q: [B, h, q, C]
        table = self.rel_pos[self.distance]  # [q, k, C]: rows repeated, still R·C stored elements
        scores = torch.einsum("bhqc,qkc->bhqk", q, table)  # [B, h, q, k]
        flat = scores.flatten(0, 1)  # [B·h, q, k]
        mixed = torch.bmm(flat[..., :1].expand(-1, -1, 6), self.shared.expand(flat.shape[0], -1, -1))  # [B·h, q, 3]
        return mixed


@pytest.mark.parametrize("tracer", TRACERS)
def test_a_gathered_or_expanded_weight_counts_its_stored_elements_once(tracer: str) -> None:
    model = RelativePositions()
    profile = assert_exact(model, (torch.randn(2, 3, 4, 6),), tracer)
    params = {layer.weight: (layer.params, layer.weight_shape) for layer in profile.weight_layers}
    assert params == {"rel_pos": (7 * 6, [7, 6]), "shared": (6 * 3, [1, 6, 3])}
    assert profile.gemm_params == profile.total_params == 7 * 6 + 18


class PooledHead(nn.Module):
    """Faster R-CNN v2's box head: pooled features written in place into a zeros buffer (per level, found
    with ``where``), then conv + batch norm blocks and a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                                  nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 5))
        self.register_buffer("levels", torch.tensor([0, 1, 0, 1, 1]))

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # image: [1, 3, 4, 4]
        features = self.backbone(image)  # [1, 4, 4, 4]
        pooled = torch.zeros(5, 4, 2, 2)  # the buffer MultiScaleRoIAlign fills
        for level in range(2):
            rows = torch.where(self.levels == level)[0]  # data-dependent count
            pooled[rows] = F.adaptive_avg_pool2d(features, 2).expand(len(rows), -1, -1, -1) * (level + 1)
        return self.head(pooled)


def test_an_in_place_write_of_activations_into_a_buffer_makes_it_an_activation() -> None:
    model = PooledHead().eval()
    profile = assert_exact(model, (torch.randn(1, 3, 4, 4),), "auto")
    assert [layer.name for layer in profile.layers] == ["backbone", "head.0", "head.3", "head.7"]
    assert "real tensors" in profile.notes[0]


class NormalizedTable(nn.Module):
    """A constant table through conv + batch norm + conv before it meets the input: every GEMM runs once."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Conv1d(2, 8, 1), nn.BatchNorm1d(8), nn.Conv1d(8, 4, 1))
        self.register_buffer("table", torch.randn(1, 2, 6))
        self.proj = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 4, 6]
        return self.proj(x + self.embed(self.table))


@pytest.mark.parametrize("tracer", TRACERS)
def test_parameters_applied_to_a_constant_do_not_make_it_a_weight(tracer: str) -> None:
    profile = assert_exact(NormalizedTable(), (torch.randn(2, 4, 6),), tracer)
    assert [layer.name for layer in profile.layers] == ["embed.0", "embed.2", "proj"]
