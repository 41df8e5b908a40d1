"""The model zoo: parameter counts computed by hand, GEMM shapes, meta builds, options and their errors."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from torch import nn
from typer.testing import CliRunner

from bitplan import zoo
from bitplan.errors import SpecError
from bitplan.zoo.blocks import BasicBlock
from bitplan.zoo.mobilenet_v2 import make_divisible

# Small options per model so real forward passes stay fast; every zoo name must appear here.
TINY: dict[str, tuple[dict[str, str], tuple[int, ...]]] = {
    "resnet20": ({"input_size": "8", "num_classes": "7"}, (2, 7)),
    "resnet_d": ({"input_size": "8", "blocks": "1,2,1"}, (2, 10)),
    "resnet_f": ({"input_size": "8", "width": "8"}, (2, 10)),
    "resnet_a": ({"input_size": "8", "width": "4", "blocks": "1,1,1"}, (2, 10)),
    "alexnet_cifar": ({"input_size": "16", "hidden": "32", "num_classes": "7"}, (2, 7)),
    "mobilenet_v2": ({"width": "0.25", "input_size": "32", "num_classes": "7"}, (2, 7)),
    "resnet50": ({"input_size": "32", "num_classes": "7", "blocks": "1,1,1,1"}, (2, 7)),
    "transformer_lm": ({"seq_len": "8", "vocab": "50", "d_model": "16", "d_ff": "32"}, (2, 8, 50)),
    "lstm2": ({"vocab": "50", "seq_len": "6", "embed": "8", "hidden": "8"}, (2, 6, 50)),
    "digits_cnn": ({}, (2, 10)),
}

# Output shapes with default options (checked on the meta device).
DEFAULT_OUTPUTS = {
    "resnet20": (1, 10),
    "resnet_d": (1, 10),
    "resnet_f": (1, 10),
    "resnet_a": (1, 10),
    "alexnet_cifar": (1, 10),
    "mobilenet_v2": (1, 1000),
    "resnet50": (1, 1000),
    "transformer_lm": (1, 64, 1000),
    "lstm2": (1, 35, 10000),
    "digits_cnn": (1, 10),
}


def weight_layers(model: nn.Module) -> list[nn.Module]:
    return [module for module in model.modules() if isinstance(module, (nn.Conv2d, nn.Linear))]


def gemm_shapes(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, tuple[int, int]]:
    """Module name -> (K, M) of each conv/linear for ``inputs``, from forward hooks (no profiler)."""
    shapes: dict[str, tuple[int, int]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            handles.append(module.register_forward_hook(
                lambda _m, _i, out, name=name, k=k: shapes.__setitem__(name, (k, out.shape[0] * out.shape[2] * out.shape[3]))
            ))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(
                lambda m, inp, _o, name=name: shapes.__setitem__(name, (m.in_features, inp[0].numel() // m.in_features))
            ))
    model(*inputs)
    for handle in handles:
        handle.remove()
    return shapes


def test_tiny_table_covers_every_model() -> None:
    assert sorted(TINY) == zoo.names() == sorted(DEFAULT_OUTPUTS)


@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_output_shape(name: str) -> None:
    options, expected = TINY[name]
    model, inputs = zoo.build(name, options, batch=2)
    model.eval()
    with torch.no_grad():
        out = model(*inputs)
    assert tuple(out.shape) == expected
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(DEFAULT_OUTPUTS))
def test_meta_build_allocates_nothing(name: str) -> None:
    with torch.device("meta"):
        model, inputs = zoo.build(name)
        out = model(*inputs)
    assert all(parameter.is_meta for parameter in model.parameters())
    assert all(tensor.is_meta for tensor in inputs)
    assert tuple(out.shape) == DEFAULT_OUTPUTS[name]
    assert list(inputs[0].shape) == zoo.info(name).input_shape


def test_default_inputs() -> None:
    _, (image,) = zoo.build("resnet20")
    _, (tokens,) = zoo.build("lstm2")
    assert image.shape == (1, 3, 32, 32) and image.dtype == torch.float32 and image.device.type == "cpu"
    assert tokens.shape == (1, 35) and tokens.dtype == torch.int64
    assert 0 <= int(tokens.min()) and int(tokens.max()) < 10000


def test_resnet20_parameter_count_by_hand() -> None:
    conv = lambda c_in, c_out: 9 * c_in * c_out  # noqa: E731  3×3, no bias
    bn = lambda c: 2 * c  # noqa: E731  weight and bias
    stem = conv(3, 16) + bn(16)
    stage1 = 6 * (conv(16, 16) + bn(16))
    stage2 = conv(16, 32) + 5 * conv(32, 32) + 6 * bn(32)
    stage3 = conv(32, 64) + 5 * conv(64, 64) + 6 * bn(64)
    fc = 64 * 10 + 10
    expected = stem + stage1 + stage2 + stage3 + fc
    model, _ = zoo.build("resnet20")
    assert sum(p.numel() for p in model.parameters()) == expected == zoo.info("resnet20").params
    assert round(expected / 1e6, 2) == 0.27


@pytest.mark.parametrize(
    ("name", "options", "params"),
    [
        ("resnet50", None, 25_557_032),  # torchvision resnet50
        ("mobilenet_v2", {"width": "1.0"}, 3_504_872),  # torchvision mobilenet_v2
        ("transformer_lm", {"preset": "llama2-7b"}, 6_738_415_616),  # Llama-2-7B
        # GPT-2 small (124,439,808 with 1024 positions) with 128 positions: 896 fewer rows of 768.
        ("transformer_lm", {"preset": "gpt2"}, 124_439_808 - 896 * 768),
    ],
)
def test_reference_parameter_counts(name: str, options: dict | None, params: int) -> None:
    assert zoo.info(name, options).params == params


@pytest.mark.parametrize(("name", "count"), [("resnet20", 20), ("resnet_d", 44), ("resnet_f", 20), ("resnet_a", 32)])
def test_weight_layer_counts(name: str, count: int) -> None:
    with torch.device("meta"):
        model, _ = zoo.build(name)
    assert len(weight_layers(model)) == count


def test_resnet20_accumulation_and_frequency() -> None:
    model, inputs = zoo.build("resnet20")
    shapes = gemm_shapes(model, inputs)
    expected = {"conv1": (27, 1024)}
    for stage, (first_k, k, m) in enumerate([(144, 144, 1024), (144, 288, 256), (288, 576, 64)], start=1):
        for block in range(3):
            expected[f"layer{stage}.{block}.conv1"] = (first_k if block == 0 else k, m)
            expected[f"layer{stage}.{block}.conv2"] = (k, m)
    expected["fc"] = (64, 1)
    assert shapes == expected
    assert list(shapes) == list(expected)  # forward order = naming order
    assert model.fc.out_features == 10


def test_resnet_d_stretches_stage_two_only() -> None:
    model, inputs = zoo.build("resnet_d")
    shapes = gemm_shapes(model, inputs)
    stage2 = [shape for name, shape in shapes.items() if name.startswith("layer2.")]
    assert len(stage2) == 30 and stage2[1:] == [(288, 256)] * 29
    assert [len(model.layer1), len(model.layer2), len(model.layer3)] == [3, 15, 3]


def test_resnet_f_fixes_accumulation_and_varies_frequency() -> None:
    model, inputs = zoo.build("resnet_f")
    shapes = gemm_shapes(model, inputs)
    convs = {name: shape for name, shape in shapes.items() if name.startswith("layer")}
    assert {k for k, _ in convs.values()} == {9 * 32}
    assert {(name[:6], m) for name, (_, m) in convs.items()} == {("layer1", 1024), ("layer2", 256), ("layer3", 64)}


def test_resnet_a_equal_frequency_within_stage_and_mixed_accumulation() -> None:
    model, inputs = zoo.build("resnet_a")
    shapes = gemm_shapes(model, inputs)
    for stage, m in [("layer1", 1024), ("layer2", 256), ("layer3", 64)]:
        inside = {name: shape for name, shape in shapes.items() if name.startswith(stage)}
        assert {frequency for _, frequency in inside.values()} == {m}  # shortcut projection included
        assert len({k for k, _ in inside.values()}) > 1
    assert shapes["layer2.0.conv2"] == (9 * 32, 256) and shapes["layer2.1.conv1"] == (128, 256)


def test_resnet50_and_mobilenet_names_follow_torchvision() -> None:
    with torch.device("meta"):
        resnet, _ = zoo.build("resnet50")
        mobilenet, _ = zoo.build("mobilenet_v2")
    names = dict(resnet.named_parameters())
    for key in ["conv1.weight", "layer1.0.conv1.weight", "layer1.0.downsample.0.weight", "layer4.2.conv3.weight"]:
        assert key in names
    assert names["fc.weight"].shape == (1000, 2048)
    assert resnet.layer2[0].conv2.stride == (2, 2) and resnet.layer2[0].conv1.stride == (1, 1)  # v1.5
    depthwise = mobilenet.features[2].conv[1][0]
    assert depthwise.groups == depthwise.in_channels == 96 and depthwise.kernel_size == (3, 3)


def test_mobilenet_width_rounds_channels_to_eight() -> None:
    with torch.device("meta"):
        model, _ = zoo.build("mobilenet_v2", {"width": "0.5"})
    assert model.features[0][0].out_channels == 16  # 32·0.5
    assert model.features[1].conv[1].out_channels == 8  # 16·0.5
    assert model.features[2].conv[2].out_channels == 16  # 24·0.5 = 12 -> 16
    assert model.classifier[1].in_features == 1280  # last conv is never narrowed


@given(st.floats(min_value=0.5, max_value=5000))
def test_make_divisible_properties(value: float) -> None:
    rounded = make_divisible(value)
    assert rounded % 8 == 0 and rounded >= 8
    assert rounded >= 0.9 * value
    # nearest multiple of 8 (at least 8), moved up by 8 only when rounding down lost more than 10%
    assert rounded <= max(8, value + 4) or rounded - 8 < 0.9 * value


def test_basic_block_shortcut_is_subsampled_and_zero_padded() -> None:
    block = BasicBlock(2, 4, stride=2).eval()
    for conv in (block.conv1, block.conv2):
        nn.init.zeros_(conv.weight)  # the residual branch now adds BN's bias (0): output = relu(shortcut)
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4) - 10
    expected = torch.zeros(1, 4, 2, 2)
    expected[:, 1:3] = x[:, :, ::2, ::2]  # one zero channel on each side
    assert torch.equal(block(x), expected.relu())
    assert sum(p.numel() for p in block.parameters()) == 9 * 2 * 4 + 9 * 4 * 4 + 2 * 4 + 2 * 4


def test_transformer_styles() -> None:
    gpt, _ = zoo.build("transformer_lm", TINY["transformer_lm"][0])
    llama, _ = zoo.build("transformer_lm", {**TINY["transformer_lm"][0], "style": "llama"})
    assert gpt.lm_head.weight is gpt.tok_emb.weight
    assert isinstance(gpt.blocks[0].attn_norm, nn.LayerNorm) and gpt.pos_emb is not None
    assert llama.lm_head.weight is not llama.tok_emb.weight
    assert isinstance(llama.blocks[0].attn_norm, nn.RMSNorm) and llama.pos_emb is None
    assert all(module.bias is None for module in weight_layers(llama))
    assert {"gate_proj", "up_proj", "down_proj"} <= {name for name, _ in llama.blocks[0].mlp.named_children()}


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_transformer_is_causal_and_uses_sdpa(style: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model, (tokens,) = zoo.build("transformer_lm", {**TINY["transformer_lm"][0], "style": style})
    model.eval()
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs.get("is_causal"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    changed = tokens.clone()
    changed[0, 5:] = (changed[0, 5:] + 1) % 50
    with torch.no_grad():
        before, after = model(tokens), model(changed)
    assert calls == [True] * 4  # 2 layers × 2 forward passes
    assert torch.allclose(before[:, :5], after[:, :5], atol=1e-6)  # earlier positions ignore later tokens
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_lstm_uses_one_two_layer_lstm_named_rnn() -> None:
    model, _ = zoo.build("lstm2", {"tie_weights": "true"})
    assert isinstance(model.rnn, nn.LSTM) and model.rnn.num_layers == 2
    assert {"rnn.weight_ih_l0", "rnn.weight_hh_l1"} <= {name for name, _ in model.named_parameters()}
    assert model.decoder.weight is model.encoder.weight


@pytest.mark.parametrize("name", ["resnet_a", "transformer_lm", "lstm2"])
def test_torch_export_traces(name: str) -> None:
    options, _ = TINY[name]
    model, inputs = zoo.build(name, {**options, "style": "llama"} if name == "transformer_lm" else options)
    exported = torch.export.export(model.eval(), inputs)
    assert exported.module()(*inputs).shape == model(*inputs).shape


def test_digits_shapes_fit_resnet20() -> None:
    model, (x,) = zoo.build("resnet20", {"in_channels": "1", "input_size": "8"}, batch=3)
    assert x.shape == (3, 1, 8, 8) and model(x).shape == (3, 10)


def test_options_are_parsed_from_strings() -> None:
    config = zoo.parse_options("resnet_d", {"blocks": "3, 5 ,3", "num_classes": "100"})
    assert config.blocks == (3, 5, 3) and config.num_classes == 100
    assert zoo.parse_options("transformer_lm", {"preset": "gpt2", "n_layers": "2"}).model_dump(
        include={"d_model", "n_layers", "vocab", "tie_weights"}
    ) == {"d_model": 768, "n_layers": 2, "vocab": 50257, "tie_weights": True}
    assert zoo.parse_options("transformer_lm", {"preset": "llama2-7b"}).tie_weights is False
    with pytest.raises(ValidationError, match="frozen"):
        config.num_classes = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("resnet_dd", None, r"unknown zoo model `resnet_dd`\. Did you mean `resnet_d`"),
        ("mobilenet_v2", {"widht": "0.5"}, r"has no option `widht` \(did you mean `width`\?\)\. Valid options: .*width"),
        ("resnet20", {"blocks": "3,3,3"}, r"no option `blocks`\. Valid options: num_classes, in_channels, input_size\."),
        ("resnet20", {"num_classes": "ten"}, r"option `num_classes`='ten': Input should be a valid integer"),
        ("resnet_d", {"blocks": "3,0,3"}, r"option `blocks`='3,0,3'"),
        ("transformer_lm", {"d_model": "100", "n_heads": "3"}, r"`d_model` \(100\) must be divisible by `n_heads` \(3\)"),
        ("transformer_lm", {"preset": "gpt3"}, r"`preset` must be one of tiny, gpt2, llama2-7b, got 'gpt3'"),
        ("lstm2", {"tie_weights": "true", "embed": "100"}, r"`tie_weights` needs `embed` \(100\) equal to `hidden` \(200\)"),
        ("alexnet_cifar", {"input_size": "8"}, r"option `input_size`='8': Input should be greater than or equal to 15"),
    ],
)
def test_bad_specs_raise_spec_error(name: str, options: dict | None, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        zoo.build(name, options)


def test_same_seed_same_weights() -> None:
    torch.manual_seed(3)
    first, _ = zoo.build("digits_cnn")
    torch.manual_seed(3)
    second, _ = zoo.build("digits_cnn")
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_info_lists_options_with_defaults_and_round_trips() -> None:
    info = zoo.info("transformer_lm")
    assert info.task is zoo.Task.language_model and info.input_dtype == "int64" and info.input_shape == [1, 64]
    assert info.defaults()["preset"] == "tiny" and info.defaults()["d_model"] == 128
    assert next(o for o in info.options if o.name == "style").choices == ["gpt2", "llama"]
    assert zoo.ZooInfo.model_validate_json(info.model_dump_json()) == info
    assert zoo.info("resnet_d").defaults()["blocks"] == [3, 15, 3]


def test_cli_lists_the_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    from bitplan.cli.app import app

    fake = [zoo.info("digits_cnn")]
    monkeypatch.setattr(zoo, "catalog", lambda: fake)
    runner = CliRunner()
    as_json = runner.invoke(app, ["zoo", "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert [zoo.ZooInfo.model_validate(item) for item in json.loads(as_json.stdout)] == fake
    table = runner.invoke(app, ["zoo"], env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    assert "digits_cnn" in table.stdout and "40,506" in table.stdout and "1×1×8×8 float32" in table.stdout
