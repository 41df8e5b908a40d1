"""Hand-checked GEMM statistics from the torch front end (both tracers)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bitplan.errors import TraceError
from bitplan.profile.schema import GemmOp, ModelProfile, Tracer
from bitplan.frontends.torch import trace as profile_model

TRACERS = ["record", "export"]


def shape_of(profile: ModelProfile) -> list[tuple]:
    return [(l.name, l.weight, l.op, l.m, l.k, l.n, l.groups, l.depth, l.shared) for l in profile.layers]


@pytest.mark.parametrize("tracer", TRACERS)
def test_grouped_strided_dilated_conv(tracer: str) -> None:
    # 6→12 channels in 3 groups, 3×3 kernel, stride 2, dilation 2, padding 2 on a 2×6×9×9 input:
    # output (9 + 4 − 5) // 2 + 1 = 5 per side → M = 2·25 = 50, K = 2·9 = 18, N = 12/3 = 4.
    conv = nn.Conv2d(6, 12, 3, stride=2, padding=2, dilation=2, groups=3)
    (layer,) = profile_model(conv, torch.zeros(2, 6, 9, 9), tracer=tracer).layers
    assert (layer.m, layer.k, layer.n, layer.groups) == (50, 18, 4, 3)
    assert layer.params == conv.weight.numel() == 18 * 4 * 3
    assert layer.macs == 50 * 18 * 4 * 3
    assert (layer.grad_input_accumulation, layer.grad_weight_accumulation) == (4, 50)


@pytest.mark.parametrize("tracer", TRACERS)
def test_depthwise_conv1d_and_conv3d(tracer: str) -> None:
    depthwise = nn.Conv1d(8, 8, 5, groups=8)
    (layer,) = profile_model(depthwise, torch.zeros(1, 8, 20), tracer=tracer).layers
    assert (layer.m, layer.k, layer.n, layer.groups) == (16, 5, 1, 8)
    volumetric = nn.Conv3d(2, 3, (1, 2, 3))
    (layer,) = profile_model(volumetric, torch.zeros(1, 2, 4, 4, 4), tracer=tracer).layers
    assert (layer.m, layer.k, layer.n) == (4 * 3 * 2, 2 * 6, 3)


@pytest.mark.parametrize("tracer", TRACERS)
def test_transposed_conv_macs_match_flop_counter(tracer: str) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    deconv = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    x = torch.zeros(2, 4, 5, 5)
    (layer,) = profile_model(deconv, x, tracer=tracer).layers
    assert layer.op is GemmOp.conv_transpose
    assert (layer.m, layer.k, layer.n, layer.groups) == (2 * 25, 2, 3 * 9, 2)
    with FlopCounterMode(display=False) as counter:
        deconv(x)
    assert 2 * layer.macs == counter.get_total_flops()


@pytest.mark.parametrize("tracer", TRACERS)
def test_linear_batch_and_sequence_rows(tracer: str) -> None:
    (layer,) = profile_model(nn.Linear(7, 3), torch.zeros(4, 5, 7), tracer=tracer).layers
    assert (layer.m, layer.k, layer.n, layer.weight) == (20, 7, 3, "weight")


@pytest.mark.parametrize("tracer", TRACERS)
def test_attention_gives_two_activation_gemms(tracer: str, attention) -> None:
    model, inputs = attention
    profile = profile_model(model, inputs, tracer=tracer)
    assert shape_of(profile) == [
        ("qkv", "qkv.weight", GemmOp.linear, 10, 8, 24, 1, 1, False),
        # QKᵀ per (batch, head): [5×4]·[4×5]; A·V: [5×5]·[5×4]
        ("attention_qk", None, GemmOp.attention_qk, 5, 4, 5, 4, 2, False),
        ("attention_av", None, GemmOp.attention_av, 5, 5, 4, 4, 3, False),
        ("out", "out.weight", GemmOp.linear, 10, 8, 8, 1, 4, False),
    ]
    assert profile.layers[1].params == 0


@pytest.mark.parametrize("tracer", TRACERS)
def test_lstm_gemms_per_layer_and_direction(tracer: str) -> None:
    lstm = nn.LSTM(5, 6, num_layers=2, bidirectional=True)
    profile = profile_model(lstm, torch.zeros(7, 3, 5), tracer=tracer)  # [T=7, B=3, in=5]
    rows = [(l.name, l.op, l.m, l.k, l.n, l.depth) for l in profile.layers]
    assert rows == [
        ("weight_ih_l0", GemmOp.rnn_ih, 21, 5, 24, 1),
        ("weight_hh_l0", GemmOp.rnn_hh, 21, 6, 24, 1),
        ("weight_ih_l0_reverse", GemmOp.rnn_ih, 21, 5, 24, 1),
        ("weight_hh_l0_reverse", GemmOp.rnn_hh, 21, 6, 24, 1),
        ("weight_ih_l1", GemmOp.rnn_ih, 21, 12, 24, 2),
        ("weight_hh_l1", GemmOp.rnn_hh, 21, 6, 24, 2),
        ("weight_ih_l1_reverse", GemmOp.rnn_ih, 21, 12, 24, 2),
        ("weight_hh_l1_reverse", GemmOp.rnn_hh, 21, 6, 24, 2),
    ]
    assert sum(l.params for l in profile.layers) == sum(
        p.numel() for n, p in lstm.named_parameters() if n.startswith("weight")
    )


@pytest.mark.parametrize("tracer", TRACERS)
def test_gru_batch_first(tracer: str) -> None:
    gru = nn.GRU(4, 3, batch_first=True)
    profile = profile_model(gru, torch.zeros(2, 9, 4), tracer=tracer)
    assert [(l.m, l.k, l.n) for l in profile.layers] == [(18, 4, 9), (18, 3, 9)]


@pytest.mark.parametrize("tracer", TRACERS)
def test_tied_embedding_is_shared(tracer: str, tied_lm) -> None:
    model, inputs = tied_lm
    profile = profile_model(model, inputs, tracer=tracer)
    # the lookup: 15 ids read rows of the 11×6 table (no MACs, no depth added after it)
    assert shape_of(profile) == [
        ("embed", "embed.weight", GemmOp.embedding, 15, 11, 6, 1, 1, True),
        ("mix", "mix.weight", GemmOp.linear, 15, 6, 6, 1, 1, False),
        ("lm_head", "embed.weight", GemmOp.linear, 15, 6, 11, 1, 2, True),
    ]
    (lookup,) = profile.lookups
    assert (lookup.params, lookup.macs, lookup.accumulation, lookup.weight_frequency) == (66, 0, 0, 0)
    assert profile.total_params == 11 * 6 + 6 * 6 + 6  # the tied weight counted once
    assert profile.gemm_params == 11 * 6 + 6 * 6 and not profile.uncovered


@pytest.mark.parametrize("tracer", TRACERS)
def test_parallel_branches_do_not_add_depth(tracer: str, branchy) -> None:
    model, inputs = branchy
    profile = profile_model(model, inputs, tracer=tracer)
    assert [(l.name, l.m, l.k, l.depth) for l in profile.layers] == [
        ("left", 128, 27, 1),
        ("right", 128, 3, 1),
        ("head", 2, 256, 2),
    ]
    assert profile.batch == 2 and profile.input_shapes == [[2, 3, 8, 8]]


class Functional(nn.Module):
    """GEMMs that hook-based counters miss: a parameter used through ``@`` with a transpose,
    an einsum over a parameter on the left, and a batched activation product."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Parameter(torch.zeros(3, 4))
        self.mixer = nn.Parameter(torch.zeros(6, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [2, 5, 4]
        h = x @ self.proj.t()  # [2, 5, 3]
        g = torch.einsum("ts,bsc->btc", self.mixer, h)  # [2, 6, 3], mixer on the left
        return torch.bmm(g, g.transpose(1, 2))  # [2, 6, 6]


@pytest.mark.parametrize("tracer", TRACERS)
def test_functional_matmuls(tracer: str) -> None:
    profile = profile_model(Functional(), torch.zeros(2, 5, 4), tracer=tracer)
    assert [(l.name, l.weight, l.m, l.k, l.n, l.groups, l.depth) for l in profile.layers] == [
        ("proj", "proj", 10, 4, 3, 1, 1),
        # each mixer element is used once per (batch, channel): m = 2·3, k = s = 5, n = t = 6
        ("mixer", "mixer", 6, 5, 6, 1, 2),
        ("matmul", None, 6, 3, 6, 2, 3),
    ]


def test_multihead_attention_falls_back_to_export() -> None:
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    profile = profile_model(layer, torch.zeros(2, 5, 16))
    assert profile.tracer is Tracer.export
    assert [(l.name, l.m, l.k, l.n, l.groups, l.depth) for l in profile.layers] == [
        ("self_attn.in_proj_weight", 10, 16, 48, 1, 1),
        ("self_attn.attention_qk", 5, 8, 5, 4, 2),
        ("self_attn.attention_av", 5, 5, 8, 4, 3),
        ("self_attn.out_proj", 10, 16, 16, 1, 4),
        ("linear1", 10, 16, 32, 1, 5),
        ("linear2", 10, 32, 16, 1, 6),
    ]


def test_record_and_export_agree_on_zoo_models() -> None:
    from bitplan.spec import load_model

    for spec in ["zoo:resnet20", "zoo:lstm2", "zoo:transformer_lm"]:
        loaded = load_model(spec, device="meta")
        fast = profile_model(loaded.model, loaded.example_inputs, tracer="record")
        reference = profile_model(loaded.model, loaded.example_inputs, tracer="export")
        assert fast.tracer is Tracer.record and reference.tracer is Tracer.export
        assert shape_of(fast) == shape_of(reference), spec
        assert fast.total_params == reference.total_params


def test_resnet20_matches_the_paper_layer_table() -> None:
    from bitplan.spec import profile_spec

    profile = profile_spec("zoo:resnet20")
    layers = profile.layers
    assert len(layers) == 20
    assert (layers[0].k, layers[0].m) == (27, 1024)
    assert all((l.k, l.m) == (144, 1024) for l in layers[1:7])
    assert (layers[7].k, layers[7].m) == (144, 256)
    assert all((l.k, l.m) == (288, 256) for l in layers[8:13])
    assert (layers[13].k, layers[13].m) == (288, 64)
    assert all((l.k, l.m) == (576, 64) for l in layers[14:19])
    assert (layers[19].k, layers[19].m, layers[19].n) == (64, 1, 10)
    assert [l.depth for l in layers] == list(range(1, 21))
    from bitplan.zoo import build

    model, _ = build("resnet20")
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert profile.gemm_params == weights


def test_meta_profiling_allocates_no_weights() -> None:
    from bitplan.spec import load_model

    loaded = load_model("zoo:transformer_lm?preset=gpt2", device="meta")
    assert all(p.device.type == "meta" for p in loaded.model.parameters())
    profile = profile_model(loaded.model, loaded.example_inputs)
    # GPT-2 small: the token lookup, 12 blocks × (q, k, v, o, up, down) + the tied output projection
    assert len(profile.weight_layers) == 1 + 12 * 6 + 1
    assert len(profile.layers) == 1 + 12 * 8 + 1  # plus QKᵀ and A·V per block
    assert [(layer.name, layer.k, layer.n, layer.params) for layer in profile.lookups] == [("tok_emb", 50257, 768, 50257 * 768)]
    assert profile.layers[-1].shared and profile.layers[-1].n == 50257
    assert profile.total_params == sum(p.numel() for p in loaded.model.parameters())


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum().item() > 0:  # needs real values: cannot run on meta or fake tensors
            return self.fc(x)
        return x


def test_untraceable_model_names_the_problem() -> None:
    with pytest.raises(TraceError, match=r"could not trace `DataDependent`.*record at op `item`.*--input-shape"):
        profile_model(DataDependent().to("meta"), torch.ones(1, 4, device="meta"))
    profile = profile_model(DataDependent(), torch.ones(1, 4))  # real weights: traced on real tensors
    assert [layer.name for layer in profile.layers] == ["fc"] and "real tensors" in profile.notes[0]


def test_profile_json_round_trip() -> None:
    from bitplan.spec import profile_spec

    profile = profile_spec("zoo:resnet20", batch=3)
    again = ModelProfile.model_validate_json(profile.model_dump_json())
    assert again == profile and again.batch == 3 and again.layers[0].m == 3 * 1024
    data = profile.model_dump()
    data["layers"][0]["macs"] += 1
    with pytest.raises(ValueError, match="`macs`"):
        ModelProfile.model_validate(data)
