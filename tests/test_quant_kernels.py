"""Kernel plumbing: the counter-based noise, the compile policy, compiled == eager, and the fallback."""

from __future__ import annotations

import math

import pytest
import torch

from bitplan import quant
from bitplan.quant import kernels, pages


def test_noise_is_uniform_on_a_24_bit_grid() -> None:
    n = 1 << 16
    r = kernels.counter_uniform(torch.empty(n), torch.tensor(12345, dtype=torch.int32)).double()
    assert r.dtype == torch.float64 and float(r.min()) >= 0.0 and float(r.max()) < 1.0
    assert torch.equal(r * 2**24, torch.round(r * 2**24))
    # chi-square over 64 equal bins: 63 degrees of freedom, 99.99th percentile ≈ 113
    counts = torch.bincount((r * 64).long(), minlength=64).double()
    chi2 = float(((counts - n / 64) ** 2 / (n / 64)).sum())
    assert chi2 < 113
    assert float(r.mean()) == pytest.approx(0.5, abs=5 * math.sqrt(1 / 12 / n))


def test_noise_streams_are_uncorrelated() -> None:
    like = torch.empty(1 << 16)
    a = kernels.counter_uniform(like, torch.tensor(1, dtype=torch.int32))
    b = kernels.counter_uniform(like, torch.tensor(2, dtype=torch.int32))
    neighbours = torch.corrcoef(torch.stack([a[:-1], a[1:]]))[0, 1]
    across = torch.corrcoef(torch.stack([a, b]))[0, 1]
    assert abs(float(neighbours)) < 5 / math.sqrt(len(a)) and abs(float(across)) < 5 / math.sqrt(len(a))


@pytest.mark.parametrize("width", kernels.ROW_WIDTHS)
def test_lane_seeds_give_the_noise_of_the_plain_index(width: int) -> None:
    """A [R, W] view hashes W·row XOR (lane XOR seed): the same bits as index XOR seed."""
    seeds = torch.tensor([12345, -7, 2**31 - 1], dtype=torch.int32)
    flat = torch.empty(256 * 100)
    rows = flat.view(-1, width)
    lanes = kernels.lane_seeds(seeds, rows)
    assert lanes.shape == (3, width) and kernels.lane_seeds(seeds, flat) is seeds
    for sample in range(3):
        plain = kernels.counter_uniform(flat, seeds[sample])
        assert torch.equal(kernels.counter_uniform(rows, lanes[sample]).view(-1), plain)


def test_flat_view_takes_the_widest_row_that_divides() -> None:
    assert kernels.flat_view(torch.empty(256 * 3)).shape == (3, 256)
    assert kernels.flat_view(torch.empty(16 * 5)).shape == (5, 16)
    assert kernels.flat_view(torch.empty(7, 3)).shape == (21,)
    strided = torch.empty(8, 32).t()
    assert kernels.flat_view(strided) is strided


def test_seeds_follow_the_generator() -> None:
    first = kernels.draw_seeds(3, torch.Generator().manual_seed(4), torch.device("cpu"))
    assert first.dtype == torch.int32 and first.shape == (3,)
    assert torch.equal(first, kernels.draw_seeds(3, torch.Generator().manual_seed(4), torch.device("cpu")))


def test_policy_context_restores_and_validates() -> None:
    before = quant.get_kernel_policy()
    with quant.kernel_policy(compile=False, min_numel=5) as inside:
        assert inside == quant.KernelPolicy(compile=False, min_numel=5) == quant.get_kernel_policy()
    assert quant.get_kernel_policy() == before
    with pytest.raises(ValueError, match="`min_numel` must be >= 0"):
        quant.KernelPolicy(min_numel=-1)


def test_failed_compile_warns_once_and_falls_back_to_the_same_result(
    monkeypatch: pytest.MonkeyPatch, compiled_calls: list[torch.Tensor]
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        def compiled(*call_args: object) -> object:
            raise RuntimeError("no C++ compiler")

        return compiled

    monkeypatch.setattr(torch, "compile", broken)
    x = torch.randn(64, dtype=torch.float64)
    with quant.kernel_policy(compile=True, min_numel=0):
        with pytest.warns(RuntimeWarning, match="compiling the `affine_nearest` kernel for torch.float64 on cpu failed"):
            out = quant.uniform_quantize(x, 4)
        with quant.kernel_policy(compile=False):
            assert torch.equal(out, quant.uniform_quantize(x, 4))
        assert torch.equal(quant.uniform_quantize(x, 4), out)  # no second warning: eager from now on


def test_a_compiled_kernel_serves_mid_size_tensors_once_it_exists(compiled_calls: list[torch.Tensor]) -> None:
    with quant.kernel_policy(compile=True, min_numel=1000, warm_min_numel=100):
        quant.uniform_quantize(torch.randn(500), 4)  # no kernel yet and below min_numel: eager
        quant.uniform_quantize(torch.randn(1000), 4)  # compiles the kernel
        quant.uniform_quantize(torch.randn(500), 4)  # the kernel exists: mid-size tensors use it
        quant.uniform_quantize(torch.randn(50), 4)  # below warm_min_numel: eager
        quant.uniform_quantize(torch.randn(500, dtype=torch.float64), 4)  # no float64 kernel yet: eager
        quant.uniform_quantize(torch.randn(5, 100), 4, channel_dim=0)  # no rank-3 (per-channel) kernel yet: eager
    assert [x.numel() for x in compiled_calls] == [1000, 500]


def test_a_weight_that_requires_grad_reaches_the_kernel_as_plain_values(compiled_calls: list[torch.Tensor]) -> None:
    """Weights require grad, activations do not: both must meet one compiled graph (no recompile per flag)."""
    weight = torch.randn(64, 32, requires_grad=True)
    with quant.kernel_policy(compile=True, min_numel=0):
        out = quant.fake_quant_ste(weight, 4)
        quant.uniform_quantize(torch.randn(64, 32), 4)
    assert [x.requires_grad for x in compiled_calls] == [False, False] and out.requires_grad  # the STE still passes the gradient


@pytest.mark.slow
def test_compiled_kernels_equal_eager_bit_for_bit() -> None:
    # Two compiled graphs: stochastic rounding (noise hash, compare, clamp, affine) and LUQ. The
    # first compile in a process costs ~5 s with a warm inductor cache (~20 s cold); the benchmark
    # checks every kernel at full size.
    x = torch.randn(2048, generator=torch.Generator().manual_seed(0))
    calls = {
        "stochastic": lambda: quant.uniform_quantize(x, 4, stochastic=True, generator=torch.Generator().manual_seed(1)),
        "luq": lambda: quant.luq_quantize(x, generator=torch.Generator().manual_seed(1), samples=2),
    }
    for name, call in calls.items():
        with quant.kernel_policy(compile=False):
            eager = call()
        # LUQ's output goes to a huge-page buffer (as from 32 MiB), the other's is the kernel's own
        with quant.kernel_policy(compile=True, min_numel=0, huge_page_min_bytes=0 if name == "luq" else None):
            compiled = call()
        assert torch.equal(compiled, eager), name
    assert kernels.luq in kernels._compiled_into and kernels.affine_stochastic not in kernels._compiled_into


def test_huge_page_advice_covers_the_whole_2mib_pages_inside_the_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    advised: list[tuple[int, int, int]] = []
    monkeypatch.setattr(pages, "_madvise", lambda: lambda start, length, advice: advised.append((start, length, advice)))
    like = torch.empty(3, 5 << 20 >> 2, dtype=torch.bfloat16)  # 7.5 MiB
    out = pages.empty_on_huge_pages(like)
    assert out.shape == like.shape and out.dtype == like.dtype and out.is_contiguous()
    begin, end = out.data_ptr(), out.data_ptr() + out.numel() * out.element_size()
    [(start, length, advice)] = advised
    assert advice == pages.MADV_HUGEPAGE and start % pages.HUGE_PAGE_BYTES == 0 and length % pages.HUGE_PAGE_BYTES == 0
    assert begin <= start < begin + pages.HUGE_PAGE_BYTES and end - pages.HUGE_PAGE_BYTES < start + length <= end
    advised.clear()
    pages.empty_on_huge_pages(torch.empty(1000))  # 4 KB: no whole huge page inside
    assert advised == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_quantizers_never_modify_their_input(dtype: torch.dtype) -> None:
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)).to(dtype)
    original = x.clone()
    with quant.kernel_policy(compile=False):
        quant.uniform_quantize(x, 3)
        quant.uniform_quantize(x, 3, channel_dim=1, stochastic=True, samples=2)
        quant.uniform_codes(x, 3, channel_dim=0)
        quant.luq_quantize(x, samples=2)
        quant.sawb_quantize(x)
    assert torch.equal(x, original)


def test_inside_an_outer_compile_quantizers_keep_the_tensor_shape() -> None:
    """Under an outer torch.compile a flat view would make inductor transpose channels-last tensors."""
    graphs: list[torch.fx.GraphModule] = []

    def capturing_backend(graph: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(graph)
        return graph.forward

    def quantize(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return quant.uniform_quantize(t, 4), quant.luq_quantize(t)

    x = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    torch.compiler.reset()  # a fresh trace, whatever ran before
    nearest, _ = torch.compile(quantize, backend=capturing_backend, fullgraph=True)(x)
    flattened = [  # x.reshape(-1) / x.view(-1)
        node for graph in graphs for node in graph.graph.nodes
        if node.target in ("reshape", "view", torch.reshape) and tuple(node.args[1:]) in ((-1,), ((-1,),), ([-1],))
    ]
    assert graphs and not flattened
    with quant.kernel_policy(compile=False):
        assert torch.equal(nearest, quant.uniform_quantize(x, 4))
