"""Quantized GEMM operands kept for backward as codes: identical gradients, fewer bytes kept."""

from __future__ import annotations

import gc
import weakref
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from bitplan.qat import apply, load_quant_state_dict, quant_runtime, quant_state_dict
from bitplan.qat.memory import heap_in_use, kept_for_backward
from bitplan.quant import kernels
from bitplan.quant.kept import KeepCodes, per_byte
from bitplan.quant.uniform import fake_quant_kept, fake_quant_ste
from test_qat import ConvNet, Recurrent, plan_for
from test_qat_scoped import SelfAttention


@contextmanager
def reference_counting_only():
    """Python's cyclic collector off: what is freed inside was freed by reference counting."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def gradients(model: nn.Module, x: torch.Tensor, *, codes: bool, wrap=None) -> dict[str, torch.Tensor]:
    """Parameter gradients of one step (seeded SR), codes kept or (hooks disabled) float copies kept,
    the pre-codes behaviour."""
    torch.manual_seed(0)
    for parameter in model.parameters():
        parameter.grad = None
    forward = (lambda: wrap(model, x)) if wrap else (lambda: model(x))
    if codes:
        out = forward()
    else:
        with torch.autograd.graph.disable_saved_tensors_hooks("reference: float copies kept"):
            out = forward()
    out.float().square().mean().backward()
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters()}


def assert_identical(model: nn.Module, x: torch.Tensor, wrap=None) -> None:
    """Gradients with codes kept (through ``wrap``, e.g. checkpointing) equal those of float copies."""
    quant_runtime(model).generator(x.device)  # created on first use: create it before saving its state
    state = quant_state_dict(model)  # both runs draw the same stochastic-rounding noise
    kept = gradients(model, x, codes=True, wrap=wrap)
    load_quant_state_dict(model, state)
    floats = gradients(model, x, codes=False)
    assert kept.keys() == floats.keys()
    for name in kept:
        assert torch.equal(kept[name], floats[name]), name


@pytest.mark.parametrize(
    "settings",
    [
        dict(default=4, activation_bits=4, zero_point="float"),
        dict(default=3, activation_bits=2, zero_point="integer"),
        dict(default=8, activation_bits=8, weight_granularity="tensor"),
        dict(default=1, activation_bits=1),
        dict(default=6, activation_bits=12),
    ],
    ids=["w4a4", "w3a2-integer", "w8a8-tensor", "w1a1", "w6a12"],
)
def test_gradients_bit_identical_to_float_copies(settings):
    torch.manual_seed(1)
    model, x = ConvNet(), torch.randn(6, 3, 5, 5)
    apply(model, plan_for(model, (x,), gradient_bits=8, gradient_quant="sr", **settings), (x,), seed=3)
    assert_identical(model, x)


def test_scoped_attention_and_sawb_gradients_bit_identical():
    torch.manual_seed(2)
    model, x = SelfAttention(dim=16, heads=2), torch.randn(3, 6, 16)
    plan = plan_for(model, (x,), default=4, include_activation_gemms=True, activation_bits=4, gradient_quant="luq")
    apply(model, plan, (x,), forward_quant="sawb")
    assert_identical(model, x)


def test_checkpointed_forward_composes_with_codes():
    torch.manual_seed(4)
    model, x = ConvNet(), torch.randn(6, 3, 5, 5)
    apply(model, plan_for(model, (x,), activation_bits=4, gradient_quant="sr"), (x,))
    assert_identical(model, x, wrap=lambda m, t: checkpoint(m, t, use_reentrant=False))


def test_linear_keeps_packed_codes_and_no_float_copy():
    # 4-bit codes of a [64, 32] input: two per byte, 1024 bytes, plus the scale and the minimum (4 bytes
    # each); the weight (a parameter) is quantized again in backward, so nothing else is kept.
    layer, x = nn.Linear(32, 16), torch.randn(64, 32, requires_grad=True)
    _, plain = kept_for_backward(layer, lambda: layer(x).sum())
    assert plain.total == 64 * 32 * 4
    apply(layer, plan_for(layer, (x,), default=4, activation_bits=4, gradient_quant="none"), (x,))
    _, kept = kept_for_backward(layer, lambda: layer(x).sum())
    assert kept.total == 64 * 32 // 2 + 4 + 4
    assert kept.by_dtype == {"uint8": 1024, "float32": 8}


@pytest.mark.parametrize("scoped", [False, True], ids=["layers", "scoped-attention"])
def test_a_training_step_leaves_no_reference_cycles(scoped):
    # A cycle through the hooks kept every quantized operand (X̂, its codes) alive until Python's cyclic
    # collector ran: resnet20's resident memory grew from 0.8 to 2.7 GB in 15 steps. Reference counting
    # alone must free a step's tensors.
    torch.manual_seed(5)
    if scoped:
        model, x = SelfAttention(dim=16, heads=2), torch.randn(3, 6, 16)
        plan = plan_for(model, (x,), default=4, include_activation_gemms=True, activation_bits=4, gradient_quant="sr")
    else:
        model, x = ConvNet(), torch.randn(6, 3, 5, 5)
        plan = plan_for(model, (x,), activation_bits=8, gradient_bits=8, gradient_quant="sr")
    apply(model, plan, (x,), seed=0)
    model(x).square().mean().backward()  # first step: creates generators and observer state
    gc.collect()
    with reference_counting_only():
        gc.set_debug(gc.DEBUG_SAVEALL)  # the collector run below keeps what it finds in gc.garbage
        try:
            model(x).square().mean().backward()
            gc.collect()
            # tensors, or bitplan's own objects (torch's pytree leaves a small cycle of its own per call)
            left = [
                type(thing).__name__
                for thing in gc.garbage
                if isinstance(thing, torch.Tensor) or type(thing).__module__.startswith("bitplan")
            ]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert left == []


def test_float_copies_die_with_the_forward_and_a_graph_without_backward_is_freed(monkeypatch):
    # The saved-tensor records hold their pack hook until backward: a hook holding the registry kept
    # every X̂ (the float copy the codes replace) alive until then. And a forward in grad mode never
    # followed by backward (a validation loss without no_grad) must free its graph on its own.
    torch.manual_seed(6)
    model, x = ConvNet(), torch.randn(6, 3, 5, 5, requires_grad=True)
    apply(model, plan_for(model, (x,), activation_bits=4, gradient_quant="none"), (x,))
    registered: list[weakref.ref] = []
    add = KeepCodes.add
    monkeypatch.setattr(KeepCodes, "add", lambda self, out, codes: (registered.append(weakref.ref(out)), add(self, out, codes)))
    with reference_counting_only():
        loss = model(x).square().mean()
        assert registered and all(ref() is None for ref in registered)  # codes kept, no float copy
        saved = [weakref.ref(tensor) for tensor in _saved_by_graph(loss)]
        assert saved
        del loss
        assert all(ref() is None for ref in saved)


def test_an_output_saved_inside_the_hooks_is_freed_without_backward():
    # exp saves its own output: held with its grad_fn by the pack hook, it would hold itself
    x = torch.randn(1000, requires_grad=True)
    with reference_counting_only():
        with KeepCodes():
            y = x.exp()
        dead = weakref.ref(y)
        del y
        assert dead() is None


def test_measuring_a_forward_without_backward_frees_it():
    x = torch.randn(1000, requires_grad=True)
    with reference_counting_only():
        y, kept = kept_for_backward(nn.Identity(), lambda: x.exp())
        assert kept.total == 4000  # exp keeps its output
        dead = weakref.ref(y)
        del y
        assert dead() is None


def conv_net_case() -> tuple[nn.Module, torch.Tensor, dict]:
    return ConvNet(width=16), torch.randn(2048, 3, 5, 5), {}


def attention_case() -> tuple[nn.Module, torch.Tensor, dict]:
    return SelfAttention(dim=32, heads=4), torch.randn(64, 64, 32), {"include_activation_gemms": True}


def recurrent_case() -> tuple[nn.Module, torch.Tensor, dict]:
    return Recurrent(nn.LSTM, width=64), torch.randn(64, 40, 4), {}


@pytest.mark.skipif(heap_in_use() is None, reason="needs glibc 2.33+ (mallinfo2) to read the heap")
@pytest.mark.parametrize("case", [conv_net_case, attention_case, recurrent_case], ids=["conv", "attention", "lstm"])
@pytest.mark.parametrize("bits", [None, 8, 4], ids=["fp32", "w8a8", "w4a4"])
def test_the_heap_grows_by_what_kept_for_backward_counts(case, bits):
    # What the forward really holds (malloc'd bytes while its result is alive) against the saved-tensor
    # count: the float copies that codes replace, kept alive by anything, would show as the difference.
    torch.manual_seed(7)
    model, x, options = case()
    if bits is not None:
        plan = plan_for(model, (x[:2],), default=bits, activation_bits=bits, gradient_quant="sr", **options)
        apply(model, plan, (x[:2],))

    def forward() -> torch.Tensor:
        # an input made inside the forward (allocated and kept there), and a scalar out of it: the
        # model's output is then held only if an op saved it, as the count sees it
        return model(x * 1.0).sum()

    forward().backward()  # first step: generators, observer state, kernels
    forward().backward()  # and a second: anything one call leaves for the next is there now
    _, kept = kept_for_backward(model, forward)
    del _
    before = heap_in_use()
    out = forward()
    grown = heap_in_use() - before
    assert kept.total > 1_000_000
    assert abs(grown - kept.total) <= 0.02 * kept.total + 65536, (grown, kept.total)


def _saved_by_graph(output: torch.Tensor) -> list[torch.Tensor]:
    """Tensors the autograd graph behind ``output`` hands to its nodes' backward (unpacked now)."""
    tensors, stack, seen = [], [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for name in dir(node):
            if name.startswith("_saved_"):
                value = getattr(node, name)
                if isinstance(value, torch.Tensor) and value.numel() > 1:
                    tensors.append(value)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return tensors


def test_weight_changed_before_backward_is_refused():
    layer, x = nn.Linear(8, 4), torch.randn(5, 8, requires_grad=True)  # dX needs the quantized weight
    apply(layer, plan_for(layer, (x,), default=4, activation_bits=8, gradient_quant="none"), (x,))
    loss = layer(x).sum()
    with torch.no_grad():
        layer.weight.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 8, 11, 15])
@pytest.mark.parametrize("channel_dim", [None, 0])
def test_codes_decode_to_the_fake_quantized_tensor(bits, channel_dim):
    generator = torch.Generator().manual_seed(bits)
    for shape in [(7, 24), (5, 3, 11), (16,)]:
        x = torch.randn(shape, generator=generator) * 3
        keep = KeepCodes()
        out = fake_quant_kept(x, bits, keep, channel_dim=channel_dim)
        assert torch.equal(out, fake_quant_ste(x, bits, channel_dim=channel_dim))
        codes, = keep.records()
        assert torch.equal(codes.decode(), out)
        assert codes.codes.numel() * codes.per_byte == x.numel()
        if channel_dim is None and x.numel() % 8 == 0:  # a flat view: codes below 5 bits share bytes
            assert codes.per_byte == {1: 8, 2: 4, 3: 2, 4: 2}.get(bits, 1) == per_byte(bits, x.reshape(-1))


def test_non_contiguous_input_decodes_to_its_layout():
    x = torch.randn(2, 4, 3, 3).to(memory_format=torch.channels_last)
    keep = KeepCodes()
    out = fake_quant_kept(x, 4, keep)
    codes, = keep.records()
    decoded = codes.decode()
    assert decoded.stride() == out.stride() and torch.equal(decoded, out)


def test_packing_recipes_round_trip_every_width():
    codes = torch.randint(0, 256, (3, 48), dtype=torch.uint8)
    for count in (2, 4, 8):
        width = 8 // count
        values = codes & ((1 << width) - 1)
        packed = kernels.pack_per_byte(values.float(), count, torch.uint8)
        assert packed.shape == (3, 48 // count)
        assert torch.equal(kernels.unpack_per_byte(packed, count), values)
    # the layout: code j of a byte sits at bits [j·w, (j+1)·w)
    assert kernels.pack_per_byte(torch.tensor([1.0, 2.0, 3.0, 0.0]), 4, torch.uint8).item() == 1 | 2 << 2 | 3 << 4


def test_resnet_and_transformer_keep_less_than_float_copies():
    from bitplan.spec import load_model

    for spec in ("zoo:resnet20", "zoo:transformer_lm?d_model=64&n_layers=1&n_heads=2&vocab=100&seq_len=16"):
        loaded = load_model(spec, batch=4)
        (x,) = loaded.example_inputs
        plain = load_model(spec).model
        model = load_model(spec).model
        model.load_state_dict(plain.state_dict())
        apply(model, plan_for(model, (x,), default=4, activation_bits=4, gradient_quant="sr"), (x,))
        _, fp32 = kept_for_backward(plain, lambda: plain(x).float().sum())
        _, codes = kept_for_backward(model, lambda: model(x).float().sum())
        assert codes.total < 1.1 * fp32.total, spec
        assert codes.by_dtype["uint8"] > 0


def test_plan_estimate_equals_the_codes_kept():
    """The plan's activation_bytes_training is the codes ``apply`` keeps: 64×32 and 64×16 inputs at 4 bits."""
    torch.manual_seed(5)
    model, x = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8)), torch.randn(64, 32)
    plan = plan_for(model, (x,), default=4, activation_bits=4, gradient_quant="none")
    assert plan.estimates.activation_bytes_by_layer == {"0": 64 * 32 // 2, "2": 64 * 16 // 2}
    assert plan.estimates.activation_bytes_training_fp32 == (64 * 32 + 64 * 16) * 4
    apply(model, plan, (x,))
    _, kept = kept_for_backward(model, lambda: model(x).sum())
    assert kept.by_dtype["uint8"] == plan.estimates.activation_bytes_training
