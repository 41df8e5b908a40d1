"""Export gates: non-finite weights, plans that do not cover the model or the checkpoint, damaged files, file modes, ModelOpt."""

from __future__ import annotations

import copy
import json
import os
import stat
import struct
import warnings

import pytest
import torch
from torch import nn

from bitplan.errors import ExportError, NonFiniteWeightsError
from bitplan.export import ExportWarning, export_model, load_packed, save_packed, to_compressed_tensors, to_modelopt
from bitplan.export.modelopt import symmetric_dequantize
from bitplan.export.weights import planned_weights, weight_codes
from bitplan.plan import make_plan, save_plan
from bitplan.qat import apply
from bitplan.spec import load_model, profile_spec
from bitplan import profile_model


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("gates")
    plan = make_plan(profile_spec("zoo:digits_cnn"), factor="A", strategy="C-", bits=(3, 8), zero_point="integer")
    state = load_model("zoo:digits_cnn").model.state_dict()
    return root, save_plan(plan, root / "plan.json"), plan, state


def test_allow_nonfinite_exports_and_keeps_the_broken_weight_in_float32(digits, tmp_path):
    root, plan_file, plan, state = digits
    broken = {key: value.clone() for key, value in state.items()}
    broken["conv1.weight"].view(-1)[5] = float("nan")
    torch.save(broken, tmp_path / "nan.pt")
    report = export_model("zoo:digits_cnn", plan_file, "packed", tmp_path / "x.safetensors", checkpoint=tmp_path / "nan.pt",
                          allow_nonfinite=True)
    assert any("`conv1.weight` (1 NaN, 0 Inf)" in warning for warning in report.warnings)
    assert report.layers_quantized == len(plan.bits_by_weight()) - 1  # conv1 stored in float32, not counted
    loaded = load_packed(tmp_path / "x.safetensors")
    assert torch.isnan(loaded["conv1.weight"].view(-1)[5]) and torch.equal(
        torch.nan_to_num(loaded["conv1.weight"]), torch.nan_to_num(broken["conv1.weight"]))


def test_apply_strict_refuses_non_finite_weights():
    model = nn.Sequential(nn.Linear(4, 3))
    with torch.no_grad():
        model[0].weight[0, 0] = float("inf")
        model[0].bias[1] = float("nan")
    plan = make_plan(profile_model(model, (torch.zeros(1, 4),)), factor="A", strategy="U", bits=(4, 4))
    with pytest.raises(NonFiniteWeightsError, match=r"`0.weight` \(0 NaN, 1 Inf\), `0.bias` \(1 NaN, 0 Inf\)"):
        apply(copy.deepcopy(model), plan, (torch.zeros(1, 4),), strict=True)
    apply(model, plan, (torch.zeros(1, 4),))  # without strict it trains on them as they are


def test_a_plan_with_a_deleted_layer_is_named_and_exported_without_it(digits, tmp_path):
    _, _, plan, _ = digits
    partial = plan.model_copy(update={"layers": plan.layers[1:]})
    report = export_model("zoo:digits_cnn", partial, "packed", tmp_path / "x.safetensors")
    assert any("no entry for 1 weight GEMM" in warning and "`conv1`" in warning for warning in report.warnings)
    assert report.layers_quantized == len(plan.layers) - 1
    with pytest.raises(ExportError, match="--strict refuses a plan that does not cover"):
        export_model("zoo:digits_cnn", partial, "packed", tmp_path / "y.safetensors", strict=True)
    assert not (tmp_path / "y.safetensors").exists()


def test_a_checkpoint_trained_with_another_plan_names_the_layers(digits, tmp_path):
    _, plan_file, plan, state = digits
    other = make_plan(profile_spec("zoo:digits_cnn"), factor="A", strategy="U", levels=[6], zero_point="integer")
    torch.save({"format": 1, "model": state, "config": {"plan": other.model_dump(mode="json")}}, tmp_path / "c.pt")
    report = export_model("zoo:digits_cnn", plan_file, "packed", tmp_path / "x.safetensors", checkpoint=tmp_path / "c.pt")
    differing = [entry.name for entry in plan.layers if entry.bits != 6]
    warning = next(warning for warning in report.warnings if "trained with another plan" in warning)
    assert differing and all(f"`{name}` (trained 6, plan" in warning for name in differing)
    torch.save({"format": 1, "model": state, "config": {"plan": plan.model_dump(mode="json")}}, tmp_path / "same.pt")
    same = export_model("zoo:digits_cnn", plan_file, "packed", tmp_path / "y.safetensors", checkpoint=tmp_path / "same.pt")
    assert not any("another plan" in warning for warning in same.warnings)


def test_a_damaged_packed_header_names_the_file(digits, tmp_path):
    _, _, plan, _ = digits
    path = tmp_path / "x.safetensors"
    save_packed(load_model("zoo:digits_cnn").model, plan, path)
    data = bytearray(path.read_bytes())
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + length])
    packed = json.loads(header["__metadata__"]["bitplan"])
    packed["layers"][0]["bits"] = 40
    header["__metadata__"]["bitplan"] = json.dumps(packed)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(data[8 + length :]))
    with pytest.raises(ExportError, match=rf"`{path}` has a damaged `bitplan` header"):
        load_packed(path)


def test_compressed_tensors_directory_follows_the_umask(tmp_path):
    pytest.importorskip("compressed_tensors")
    model = nn.Sequential(nn.Linear(8, 4))
    plan = make_plan(profile_model(model, (torch.zeros(1, 8),)), factor="A", strategy="U", bits=(4, 4), zero_point="integer",
                     activation_bits=None)
    previous = os.umask(0o022)
    try:
        to_compressed_tensors(model, plan, tmp_path / "ct")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "ct").stat().st_mode) == 0o755
    assert {stat.S_IMODE(file.stat().st_mode) for file in (tmp_path / "ct").iterdir()} == {0o644}


def test_modelopt_widths_and_the_symmetric_grid_warning():
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    plan = make_plan(profile_model(model, (torch.zeros(1, 16),)), factor="A", strategy="C-", levels=[1, 31], activation_bits=None)
    with pytest.raises(ExportError, match="--strict"):
        to_modelopt(plan, strict=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExportWarning)
        config = to_modelopt(plan, model)
    entries = {entry["quantizer_name"]: entry["cfg"]["num_bits"] for entry in config["quant_cfg"][1:]}
    assert set(entries.values()) <= set(range(2, 9)) and 1 not in entries.values()  # 1 bit widened, 31 left in float
    assert any("largest weight change" in str(item.message) for item in caught)


@pytest.mark.slow
def test_modelopt_quantizes_as_the_exported_config_says():
    """ModelOpt (when installed) quantizes each planned weight at its bits on the symmetric grid the warning measures."""
    pytest.importorskip("modelopt.torch.quantization", reason="nvidia-modelopt is not installed")
    import modelopt.torch.quantization as mtq

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    x = torch.randn(64, 16)
    plan = make_plan(profile_model(model, (x,)), factor="A", strategy="C-", bits=(3, 6), activation_bits=None,
                     gradient_bits=None, zero_point="integer")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExportWarning)
        config = to_modelopt(plan, model)
    quantized = mtq.quantize(copy.deepcopy(model), config, lambda m: m(x))
    worst = 0.0
    for weight in planned_weights(model, plan):
        module = quantized.get_submodule(weight.fqn.removesuffix(".weight"))
        assert module.weight_quantizer.num_bits == weight.bits
        got = module.weight_quantizer(module.weight).detach()
        assert torch.allclose(got, symmetric_dequantize(weight.tensor, weight.bits, 0), atol=1e-6)
        worst = max(worst, float((got - weight_codes(weight, plan.zero_point).dequantize(weight)).abs().max()))
    message = next(str(item.message) for item in caught if "largest weight change" in str(item.message))
    assert f"largest weight change {worst:.3g}" in message


def test_torchao_warns_about_a_float_grid_plan():
    pytest.importorskip("torchao")
    from bitplan.export import to_torchao

    model = nn.Sequential(nn.Linear(8, 4))
    plan = make_plan(profile_model(model, (torch.zeros(1, 8),)), factor="A", strategy="U", bits=(4, 4), zero_point="float")
    with pytest.warns(ExportWarning, match=r"float-zero-point grid.*largest weight change"):
        to_torchao(plan, model)
    with pytest.warns(ExportWarning, match="float-zero-point grid"):
        to_torchao(plan)  # without the model: the warning without the number


def test_quantized_weights_count_only_what_the_format_stores(digits, tmp_path):
    pytest.importorskip("compressed_tensors")
    _, plan_file, plan, _ = digits
    report = export_model("zoo:digits_cnn", plan_file, "compressed-tensors", tmp_path / "ct")
    assert report.layers_quantized == 2  # fc1, fc2; the three convolutions stay float32 in this format
    assert len(plan.bits_by_weight()) == 5
