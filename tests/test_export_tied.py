"""Tied weights: every format computes what ``bitplan.apply`` trains with on a character LM whose head is its embedding.

The table is one planning unit read by the lookup and the head at one width: each export stores it
once, quantized (docs/export.md, "Lookups and tied weights").
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from bitplan.errors import ExportError
from bitplan.export import load_packed, save_packed, to_compressed_tensors, to_onnx, to_torchao
from bitplan.plan import make_plan
from bitplan.qat import apply
from bitplan.spec import load_model, profile_spec

SPEC = "zoo:transformer_lm?d_model=32&n_layers=1&n_heads=2&vocab=61&seq_len=16"
LEVELS = {"2-bit": [2], "4-8-bit": [4, 8]}


@pytest.fixture(scope="module", params=list(LEVELS), ids=list(LEVELS))
def tied(request):
    """(model, inputs, plan, the logits ``apply`` gives): a tied LM with trained-looking, non-zero weights."""
    torch.manual_seed(0)
    loaded = load_model(SPEC)
    model = loaded.model.eval()
    assert model.lm_head.weight is model.tok_emb.weight
    inputs = (torch.randint(0, 61, (3, 16)),)
    levels = LEVELS[request.param]
    plan = make_plan(profile_spec(SPEC), factor="A", strategy="U" if len(levels) == 1 else "C-", levels=levels,
                     zero_point="integer", activation_bits=None, gradient_bits=None)
    with torch.no_grad():
        expected = apply(copy.deepcopy(model), plan, inputs).eval()(*inputs)
    return model, inputs, plan, expected


def _relative(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max())


def test_packed_round_trip_stores_the_tied_table_once_as_codes(tied, tmp_path):
    model, inputs, plan, expected = tied
    assert plan.bits_by_name()["tok_emb"] == plan.bits_by_name()["lm_head"] < 32  # one unit, one width
    header = save_packed(model, plan, tmp_path / "lm.safetensors")
    assert [layer.weight for layer in header.layers if layer.weight.startswith(("lm_head", "tok_emb"))] == ["tok_emb.weight"]
    assert header.aliases["lm_head.weight"] == "tok_emb.weight"
    fresh = load_model(SPEC).model.eval()
    state = load_packed(tmp_path / "lm.safetensors", fresh)
    assert not torch.equal(state["tok_emb.weight"], model.tok_emb.weight.detach())  # the lookup reads codes too
    with torch.no_grad():
        assert _relative(fresh(*inputs), expected) <= 1e-5


@pytest.mark.parametrize("level", ["ORT_DISABLE_ALL", "ORT_ENABLE_ALL"])
def test_onnx_runtime_at_default_and_disabled_optimisations(tied, tmp_path, level):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model, inputs, plan, expected = tied
    to_onnx(model, plan, tmp_path / "lm.onnx", inputs)
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)  # ENABLE_ALL is ORT's default
    session = ort.InferenceSession(str(tmp_path / "lm.onnx"), options, providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"input_0": inputs[0].numpy()})[0])
    assert _relative(got, expected) <= 1e-3


def test_compressed_tensors_refuses_the_quantized_table_and_stores_it_kept_in_float(tied, tmp_path):
    pytest.importorskip("compressed_tensors")
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationConfig
    from safetensors.torch import load_file

    model, inputs, plan, _ = tied
    with pytest.raises(ExportError, match=r"lookup `tok_emb`.*--keep tok_emb"):  # transformers cannot load it
        to_compressed_tensors(model, plan, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    kept = make_plan(profile_spec(SPEC), factor="A", strategy="C-", levels=[4, 8], zero_point="integer", keep=["tok_emb"],
                     keep_bits=32, activation_bits=None, gradient_bits=None)
    with torch.no_grad():
        expected = apply(copy.deepcopy(model), kept, inputs).eval()(*inputs)
    to_compressed_tensors(model, kept, tmp_path / "ct")
    config = QuantizationConfig.model_validate(json.loads((tmp_path / "ct" / "config.json").read_text())["quantization_config"])
    stored = load_file(str(tmp_path / "ct" / "model.safetensors"))
    state = {key: value for key, value in stored.items() if not key.endswith(("_packed", "_scale", "_zero_point", "_shape"))}
    for scheme in config.config_groups.values():
        for module in scheme.targets:
            local = {key.removeprefix(module + "."): value for key, value in stored.items() if key.startswith(module + ".")}
            state[f"{module}.weight"] = PackedQuantizationCompressor.decompress(local, scheme)["weight"]
    targets = {module for scheme in config.config_groups.values() for module in scheme.targets}
    assert "tok_emb" not in targets and "lm_head" not in targets  # the kept unit: table and head in float
    fresh = load_model(SPEC).model.eval()
    fresh.load_state_dict({**state, "lm_head.weight": state["tok_emb.weight"]})
    with torch.no_grad():
        assert _relative(fresh(*inputs), expected) <= 1e-5


def test_torchao_fake_quantizes_the_head_and_the_lookup(tied):
    pytest.importorskip("torchao")
    from torchao.quantization import quantize_

    model, inputs, plan, expected = tied
    fresh = copy.deepcopy(model)
    quantize_(fresh, to_torchao(plan, fresh), filter_fn=None)
    assert (type(fresh.tok_emb).__name__, type(fresh.lm_head).__name__) == ("FakeQuantizedEmbedding", "FakeQuantizedLinear")
    with torch.no_grad():
        assert _relative(fresh(*inputs), expected) <= 1e-5
    assert np.array_equal(fresh.tok_emb.weight.detach().numpy(), model.tok_emb.weight.detach().numpy())  # fake, not stored


def test_profile_strict_accepts_the_exported_lm(tied, tmp_path):
    """The positional embedding is read by `Slice` then `Add`: elementwise, as the torch profile says, not a missing GEMM."""
    pytest.importorskip("onnx")
    from typer.testing import CliRunner

    from bitplan.cli.app import app

    model, inputs, plan, _ = tied
    to_onnx(model, plan, tmp_path / "lm.onnx", inputs)
    result = CliRunner().invoke(app, ["profile", str(tmp_path / "lm.onnx"), "--strict", "--batch", "1", "--json"])
    assert result.exit_code == 0, result.output
    uncovered = {entry["parameter"]: entry["kind"] for entry in json.loads(result.stdout)["uncovered"]}
    assert uncovered.get("pos_emb.weight") == "elementwise"
