"""The op table (docs/concepts.md, "The op table"): one test per row, hand-computed, in both tracers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bitplan.frontends.ops import OPS, gemm_operands
from bitplan.frontends.torch import trace
from bitplan.profile.schema import GemmOp

TRACERS = ["record", "export"]


class Functional(nn.Module):
    """Parameters of the given shapes and a forward written as a function of (self, *inputs)."""

    def __init__(self, forward: Callable, **shapes: tuple[int, ...]) -> None:
        super().__init__()
        for name, shape in shapes.items():
            self.register_parameter(name, nn.Parameter(torch.randn(shape)))
        self._forward = forward

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self._forward(self, *inputs)


def shapes(model: nn.Module, inputs: tuple, tracer: str) -> list[tuple]:
    profile = trace(model, inputs, tracer=tracer)
    return [(layer.weight, layer.m, layer.k, layer.n, layer.groups) for layer in profile.layers]


@pytest.mark.parametrize("tracer", TRACERS)
def test_einsum_implicit_output(tracer: str) -> None:
    model = Functional(lambda s, x: torch.einsum("ij,jk", x, s.W), W=(4, 5))
    assert shapes(model, (torch.randn(3, 4),), tracer) == [("W", 3, 4, 5, 1)]


@pytest.mark.parametrize("tracer", TRACERS)
def test_mv_weight_on_the_left(tracer: str) -> None:
    model = Functional(lambda s, x: torch.mv(s.W, x), W=(5, 4))
    assert shapes(model, (torch.randn(4),), tracer) == [("W", 1, 4, 5, 1)]


@pytest.mark.parametrize("tracer", TRACERS)
def test_addmv(tracer: str) -> None:
    model = Functional(lambda s, x: torch.addmv(s.b, s.W, x), W=(5, 4), b=(5,))
    assert shapes(model, (torch.randn(4),), tracer) == [("W", 1, 4, 5, 1)]


@pytest.mark.parametrize("tracer", TRACERS)
def test_addbmm_reduces_over_the_batch(tracer: str) -> None:
    model = Functional(lambda s, x: torch.addbmm(s.b, x, s.W), W=(2, 4, 5), b=(3, 5))
    profile = trace(model, (torch.randn(2, 3, 4),), tracer=tracer)
    (layer,) = profile.layers
    assert (layer.weight, layer.m, layer.k, layer.n, layer.groups) == ("W", 3, 8, 5, 1)
    assert layer.params == 2 * 4 * 5  # W's elements, once


@pytest.mark.parametrize("tracer", TRACERS)
def test_inner(tracer: str) -> None:
    model = Functional(lambda s, x: torch.inner(x, s.W), W=(5, 4))
    assert shapes(model, (torch.randn(3, 4),), tracer) == [("W", 3, 4, 5, 1)]


@pytest.mark.parametrize("tracer", TRACERS)
def test_tensordot(tracer: str) -> None:
    model = Functional(lambda s, x: torch.tensordot(x, s.W, dims=2), W=(3, 4, 5))
    assert shapes(model, (torch.randn(2, 3, 4),), tracer) == [("W", 2, 12, 5, 1)]


@pytest.mark.parametrize("tracer", TRACERS)
def test_multi_dot_three_matrices_in_torch_order(tracer: str) -> None:
    # a, b, c, d = 2, 3, 10, 4: (xW1)W2 costs 2·10·(3+4) = 140 MACs, x(W1W2) 3·4·(2+10) = 144
    model = Functional(lambda s, x: torch.linalg.multi_dot([x, s.W1, s.W2]), W1=(3, 10), W2=(10, 4))
    assert shapes(model, (torch.randn(2, 3),), tracer) == [("W1", 2, 3, 10, 1), ("W2", 2, 10, 4, 1)]


def test_multi_dot_four_matrices_match_the_flop_counter() -> None:
    model = Functional(lambda s, x: torch.linalg.multi_dot([x, s.W1, s.W2, s.W3]), W1=(3, 10), W2=(10, 2), W3=(2, 6))
    x = torch.randn(7, 3)
    with FlopCounterMode(display=False) as counter:
        model(x)
    for tracer in TRACERS:
        assert trace(model, (x,), tracer=tracer).total_macs == counter.get_total_flops() // 2


@pytest.mark.parametrize("tracer", TRACERS)
def test_bilinear(tracer: str) -> None:
    model = nn.Bilinear(4, 6, 7)
    profile = trace(model, (torch.randn(3, 4), torch.randn(3, 6)), tracer=tracer)
    (layer,) = profile.layers
    assert (layer.weight, layer.m, layer.k, layer.n, layer.groups) == ("weight", 3, 24, 7, 1)
    assert layer.params == 7 * 4 * 6


@pytest.mark.parametrize("tracer", TRACERS)
@pytest.mark.parametrize(("cell", "gates"), [(nn.LSTMCell, 4), (nn.GRUCell, 3), (nn.RNNCell, 1)])
def test_rnn_cells(tracer: str, cell: type[nn.Module], gates: int) -> None:
    profile = trace(cell(4, 8), (torch.randn(3, 4),), tracer=tracer)
    got = [(layer.weight, layer.op, layer.m, layer.k, layer.n) for layer in profile.layers]
    assert got == [("weight_ih", GemmOp.rnn_ih, 3, 4, gates * 8), ("weight_hh", GemmOp.rnn_hh, 3, 8, gates * 8)]
    assert profile.uncovered == []


def test_apply_reads_gemm_operands_from_the_same_table() -> None:
    assert gemm_operands("addmv", (None, None, None), {}) == [1, 2]
    assert gemm_operands("linear", (None, None), {}) == [0, 1]
    assert gemm_operands("einsum", ("ij,jk", None, None), {}) == [1, 2]
    assert gemm_operands("lstm_cell", (), {}) == []  # several GEMMs per call: a layer twin's job
    assert OPS["linear"].kind == "linear" and OPS["bmm"].kind == "matmul"


@pytest.mark.parametrize("tracer", TRACERS)
@pytest.mark.parametrize("dot", [torch.dot, torch.vdot])
def test_dot_with_a_weight_vector(tracer: str, dot: Callable) -> None:
    model = Functional(lambda s, x: dot(x, s.w), w=(6,))
    profile = trace(model, (torch.randn(6),), tracer=tracer)
    assert [(layer.weight, layer.m, layer.k, layer.n, layer.groups, layer.params) for layer in profile.layers] == [
        ("w", 1, 6, 1, 1, 6)
    ]
    assert profile.coverage.gemm_params == 6


@pytest.mark.parametrize("tracer", TRACERS)
def test_multi_dot_product_weight_belongs_to_all_its_parameters(tracer: str) -> None:
    # a, b, c, d = 2, 4, 100, 3: (xW1)W2 costs 2·100·7 = 1400 MACs, x(W1W2) 4·3·102 = 1224: torch takes x(W1W2)
    model = Functional(lambda s, x: torch.linalg.multi_dot([x, s.W1, s.W2]), W1=(4, 100), W2=(100, 3))
    x = torch.randn(2, 4)
    profile = trace(model, (x,), tracer=tracer)
    got = [(layer.weight, layer.m, layer.k, layer.n) for layer in profile.layers]
    assert got == [("W2", 4, 100, 3), ("W1", 2, 4, 3)]  # W1·W2, then x·(W1W2) on the product weight
    assert profile.uncovered == [] and profile.coverage.gemm_params == 400 + 300
    with FlopCounterMode(display=False) as counter:
        model(x)
    assert profile.total_macs == counter.get_total_flops() // 2 == 1224
