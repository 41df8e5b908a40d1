"""Activation ranges (batch in training, running averages in eval) and CPT's cyclic bit schedule."""

from __future__ import annotations

import math

import pytest
import torch

from bitplan.quant import ActivationObserver, ActivationQuantizer, cyclic_bits, kernel_policy


@pytest.fixture(autouse=True)
def eager_kernels():
    """These tests check the quantizers' math on the eager kernels (test_quant_kernels compares compiled ones)."""
    with kernel_policy(compile=False):
        yield


def test_training_uses_batch_range_and_updates_running_average() -> None:
    observer = ActivationObserver()
    assert observer(torch.tensor([-1.0, 3.0])) == (torch.tensor(-1.0), torch.tensor(3.0))
    assert observer.running_min.item() == -1.0 and observer.running_max.item() == 3.0  # first batch initialises
    low, high = observer(torch.tensor([1.0, 5.0]))
    assert (low.item(), high.item()) == (1.0, 5.0)
    assert observer.running_min.item() == pytest.approx(0.9 * -1.0 + 0.1 * 1.0)
    assert observer.running_max.item() == pytest.approx(0.9 * 3.0 + 0.1 * 5.0)
    assert observer.num_batches.item() == 2


def test_eval_uses_running_average_without_updating() -> None:
    observer = ActivationObserver()
    observer(torch.tensor([0.0, 2.0]))
    observer.eval()
    low, high = observer(torch.tensor([-10.0, 10.0]))
    assert (low.item(), high.item()) == (0.0, 2.0)
    assert observer.num_batches.item() == 1 and observer.running_max.item() == 2.0


def test_eval_before_any_training_batch_uses_the_batch() -> None:
    observer = ActivationObserver().eval()
    low, high = observer(torch.tensor([-2.0, 7.0]))
    assert (low.item(), high.item()) == (-2.0, 7.0) and observer.num_batches.item() == 0


def test_buffers_can_stay_out_of_the_state_dict() -> None:
    assert set(ActivationObserver().state_dict()) == {"running_min", "running_max", "num_batches"}
    assert ActivationObserver(persistent=False).state_dict() == {}
    with pytest.raises(ValueError, match="`momentum` must be in"):
        ActivationObserver(momentum=1.0)


def test_activation_quantizer_training_and_eval() -> None:
    quantizer = ActivationQuantizer(bits=2)
    x = torch.tensor([0.0, 0.2, 0.5, 3.0], requires_grad=True)
    out = quantizer(x)  # range [0, 3], scale 1
    assert out.tolist() == [0.0, 0.0, 0.0, 3.0]
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones(4))  # STE
    quantizer.eval()
    clipped = quantizer(torch.tensor([-5.0, 1.4, 9.0]))  # running range [0, 3]
    assert clipped.tolist() == [0.0, 1.0, 3.0]
    quantizer.bits = 32
    y = torch.randn(3)
    assert quantizer(y) is y


def test_cyclic_bits_hand_checked() -> None:
    # T = 4, 2..8 bits: 2 + 3·(1 + cos(π·t/4 + π)) = 2, 2.88, 5 (−ε), 7.12, then the cycle restarts
    assert [cyclic_bits(t, 4, 2, 8) for t in range(9)] == [2, 3, 5, 7, 2, 3, 5, 7, 2]
    # T = 8, 4..8: 4 + 2·(1 + cos(π·t/8 + π))
    expected = [round(4 + 2 * (1 + math.cos(math.pi * t / 8 + math.pi))) for t in range(8)]
    assert [cyclic_bits(t, 8, 4, 8) for t in range(8)] == expected == [4, 4, 5, 5, 6, 7, 7, 8]
    assert {cyclic_bits(t, 5, 6, 6) for t in range(10)} == {6}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 4, 2, 8), "`step` must be a non-negative integer"),
        ((0, 0, 2, 8), "`period` must be a positive integer"),
        ((0, 4, 8, 2), "`bmin` \\(8\\) must not exceed `bmax` \\(2\\)"),
        ((0, 4, 0, 8), "`bmin` must be an integer from 1 to 32"),
    ],
)
def test_cyclic_bits_validation(args: tuple[int, int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cyclic_bits(*args)
