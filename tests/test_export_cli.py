"""`bitplan export` on bad input: exit 2, one paragraph, no traceback, nothing written; ModelOpt's JSON."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from typer.testing import CliRunner, Result

from bitplan.cli.app import app
from bitplan.export import to_modelopt
from bitplan.plan import make_plan, save_plan
from bitplan.spec import profile_spec


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    digits = make_plan(profile_spec("zoo:digits_cnn"), factor="A", strategy="C-", bits=(3, 8), zero_point="integer")
    wide = make_plan(profile_spec("zoo:digits_cnn"), factor="A", strategy="U", bits=(20, 20), activation_bits=None,
                     zero_point="integer")
    return root, save_plan(digits, root / "digits.json"), save_plan(wide, root / "wide.json"), digits


def _bitplan(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _refused(result: Result, *phrases: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in " ".join(result.stderr.split()), result.stderr


def test_plan_for_another_model(plans, tmp_path):
    _, digits, _, _ = plans
    _refused(_bitplan("export", "zoo:resnet20", "--plan", str(digits), "--format", "packed", "-o", str(tmp_path / "x")),
             "fingerprint")
    assert not list(tmp_path.iterdir())


def test_checkpoint_that_does_not_fit(plans, tmp_path):
    _, digits, _, _ = plans
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pt")
    _refused(_bitplan("export", "zoo:digits_cnn", "--plan", str(digits), "--format", "packed",
                      "--checkpoint", str(tmp_path / "other.pt"), "-o", str(tmp_path / "x.safetensors")),
             "does not fit model", 'Missing key(s) in state_dict: "bn1.weight"')  # the keys, not only a headline
    _refused(_bitplan("export", "zoo:digits_cnn", "--plan", str(digits), "--format", "packed",
                      "--checkpoint", str(tmp_path / "missing"), "-o", str(tmp_path / "x.safetensors")), "does not exist")
    assert not (tmp_path / "x.safetensors").exists()


def test_unknown_format(plans, tmp_path):
    _, digits, _, _ = plans
    _refused(_bitplan("export", "zoo:digits_cnn", "--plan", str(digits), "--format", "tflite", "-o", str(tmp_path / "x")),
             "tflite")


def test_width_the_format_cannot_hold_is_named_or_refused(plans, tmp_path):
    _, _, wide, _ = plans
    result = _bitplan("export", "zoo:digits_cnn", "--plan", str(wide), "--format", "onnx", "--strict", "-o", str(tmp_path / "m.onnx"))
    _refused(result, "wider than 16 bits", "`fc2.weight`", "--strict")
    assert not list(tmp_path.iterdir())
    result = _bitplan("export", "zoo:digits_cnn", "--plan", str(wide), "--format", "onnx", "-o", str(tmp_path / "m.onnx"))
    assert result.exit_code == 0 and "left in float32" in " ".join(result.stderr.split()), result.stderr
    assert (tmp_path / "m.onnx").is_file()


def test_missing_extra_names_the_pip_command(plans, tmp_path, monkeypatch):
    _, digits, _, _ = plans
    monkeypatch.setitem(sys.modules, "torchao", None)  # `import torchao` now raises ImportError
    _refused(_bitplan("export", "zoo:digits_cnn", "--plan", str(digits), "--format", "torchao", "-o", str(tmp_path / "t.json")),
             "pip install 'bitplan[torchao]'")
    assert not (tmp_path / "t.json").exists()


def test_modelopt_config_names_every_planned_layer(plans, tmp_path):
    _, digits_path, _, digits = plans
    out = tmp_path / "modelopt.json"
    result = _bitplan("export", "zoo:digits_cnn", "--plan", str(digits_path), "--format", "modelopt", "-o", str(out))
    assert result.exit_code == 0, result.output
    config = json.loads(out.read_text())
    assert config == to_modelopt(digits)
    assert config["quant_cfg"][0] == {"quantizer_name": "*", "enable": False}  # every other quantizer off, first
    quant_cfg = {entry["quantizer_name"]: entry["cfg"] for entry in config["quant_cfg"][1:]}
    for fqn, bits in digits.bits_by_weight().items():
        module = fqn.removesuffix(".weight")
        assert quant_cfg[f"{module}.weight_quantizer"] == {"num_bits": bits, "axis": 0}
        assert quant_cfg[f"{module}.input_quantizer"] == {"num_bits": 8, "axis": None}
    assert len(quant_cfg) == 2 * len(digits.bits_by_weight())
    assert "largest weight change" in " ".join(result.stderr.split())  # ModelOpt's grid is symmetric


def test_export_does_not_depend_on_training():
    """The export package reads checkpoints itself; it never imports bitplan.train (no import cycle)."""
    import ast
    from pathlib import Path

    import bitplan.export

    imported = set()
    for path in Path(bitplan.export.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    assert "bitplan.qat" in imported and not [name for name in imported if name.startswith("bitplan.train")]
