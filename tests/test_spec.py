"""Model specs resolve the same way everywhere, and bad specs say what to do."""

from __future__ import annotations

import textwrap

import pytest
import torch

from bitplan.errors import SpecError
from bitplan.spec import load_model, parse_input_shape, profile_spec, split_spec


def test_split_spec_reads_options() -> None:
    assert split_spec("zoo:mobilenet_v2?width=0.5&num_classes=10") == (
        "zoo:mobilenet_v2",
        {"width": "0.5", "num_classes": "10"},
    )


def test_input_shapes_and_dtypes() -> None:
    image, tokens = parse_input_shape("1x3x32x32,2x128:int64")
    assert image.shape == (1, 3, 32, 32) and image.dtype == torch.float32
    assert tokens.shape == (2, 128) and tokens.dtype == torch.int64
    with pytest.raises(SpecError, match="not dimensions joined by `x`"):
        parse_input_shape("1by3")
    with pytest.raises(SpecError, match="unknown dtype `int7`"):
        parse_input_shape("1x3:int7")


def test_file_factory_returning_module_needs_input_shape(tmp_path) -> None:
    source = tmp_path / "mine.py"
    source.write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def plain():
                return nn.Linear(4, 2)

            def with_inputs(hidden=3):
                return nn.Sequential(nn.Linear(4, hidden), nn.Linear(hidden, 2)), torch.zeros(5, 4)

            def broken():
                raise RuntimeError("no weights here")
            """
        )
    )
    with pytest.raises(SpecError, match="pass `--input-shape`"):
        load_model(f"{source}:plain")
    loaded = load_model(f"{source}:plain", input_shape="6x4")
    assert loaded.example_inputs[0].shape == (6, 4)
    profile = profile_spec(f"{source}:with_inputs?hidden=7", batch=2)
    assert [(l.m, l.k, l.n) for l in profile.layers] == [(2, 4, 7), (2, 7, 2)]
    with pytest.raises(SpecError, match="raised RuntimeError: no weights here"):
        load_model(f"{source}:broken")
    with pytest.raises(SpecError, match="has no callable `plan`. Did you mean `plain`"):
        load_model(f"{source}:plan")
    with pytest.raises(SpecError, match="does not exist"):
        load_model(f"{tmp_path}/missing.py:plain")


def test_module_factory(tmp_path, monkeypatch) -> None:
    (tmp_path / "pkg_models.py").write_text("from torch import nn\nimport torch\ndef tiny():\n    return nn.Linear(3, 3), torch.zeros(1, 3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert profile_spec("pkg_models:tiny").layers[0].k == 3
    with pytest.raises(SpecError, match="cannot import module `no_such_pkg.models`"):
        load_model("no_such_pkg.models:tiny")


def test_unknown_spec_suggests_zoo_names() -> None:
    with pytest.raises(SpecError, match="Did you mean `zoo:resnet20`"):
        load_model("resnet20")
    with pytest.raises(SpecError, match="ONNX file"):
        load_model("model.onnx")


def test_options_override_zoo_defaults() -> None:
    loaded = load_model("zoo:resnet20", options={"num_classes": "7"}, batch=4)
    assert loaded.model(torch.zeros(4, 3, 32, 32)).shape == (4, 7)


def test_input_shape_resizes_zoo_models() -> None:
    profile = profile_spec("zoo:transformer_lm", input_shape="2x256:int64")
    assert profile.layers[0].m == 2 * 256
    # alexnet_cifar's first linear layer depends on the image size: 64×64 gives K = 256·4·4
    fc1 = next(l for l in profile_spec("zoo:alexnet_cifar", input_shape="1x3x64x64").layers if l.name == "fc1")
    assert fc1.k == 4096
