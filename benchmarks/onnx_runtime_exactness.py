"""How exactly ONNX Runtime runs bitplan's ONNX export at its default and at disabled optimisations, beside the
rank-2 ``DequantizeLinear → MatMul`` layout ORT fuses into ``MatMulNBits`` (int8 activations at accuracy level 4).

Two models, each fake-quantized by ``bitplan.apply`` as the reference:

- ``zoo:digits_cnn`` trained one epoch on digits with a 1–2-bit integer-grid plan and 8-bit activations
  (exported from the run's checkpoint): the share of test images whose logits all agree within 1e-3,
  and the top-1 agreement;
- a tied character LM (``zoo:transformer_lm``, d_model 32, one block, vocab 61) at 2 bits, weights only:
  the largest logit difference relative to the largest logit.

For each, ``ORT_ENABLE_ALL`` (ORT's default) and ``ORT_DISABLE_ALL``, with bitplan's layout ([1, out, in]
codes + ``Squeeze``) and with the same model rewritten to the plain rank-2 layout.

    python benchmarks/onnx_runtime_exactness.py [--out benchmarks/results/onnx_runtime_exactness.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

from bitplan.atomic import atomic_write_text
from bitplan.export import export_model, to_onnx
from bitplan.plan import make_plan
from bitplan.qat import apply, load_quant_state_dict
from bitplan.spec import load_model, profile_spec
from bitplan.train import TrainConfig, train_run

LM_SPEC = "zoo:transformer_lm?d_model=32&n_layers=1&n_heads=2&vocab=61&seq_len=16"
LEVELS = ("ORT_ENABLE_ALL", "ORT_DISABLE_ALL")


def rank2_layout(path: Path) -> bytes:
    """The model with each [1, out, in] weight + Squeeze turned back into a rank-2 DequantizeLinear (the fusable layout)."""
    model = onnx.load(str(path))
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    for squeeze in [node for node in graph.node if node.op_type == "Squeeze" and node.name.endswith("_Squeeze")]:
        dequantize = next(node for node in graph.node if squeeze.input[0] in node.output)
        for name in dequantize.input[0], dequantize.input[2]:
            if name.endswith("_quantized"):
                tensor = initializers[name]
                dims = list(tensor.dims)[1:]
                tensor.ClearField("dims")
                tensor.dims.extend(dims)
        for attribute in dequantize.attribute:
            if attribute.name == "axis":
                attribute.i -= 1
        dequantize.output[0] = squeeze.output[0]
        graph.node.remove(squeeze)
    return model.SerializeToString()


def run(model: bytes | str, level: str, feeds: dict) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def digits(root: Path) -> dict:
    from bitplan.data import load_data

    plan = make_plan(profile_spec("zoo:digits_cnn"), factor="A", strategy="C-", bits=(1, 2), zero_point="integer", activation_bits=8)
    config = TrainConfig(model="zoo:digits_cnn", data="digits", plan=plan, epochs=1, batch_size=32, threads=1, out=root / "run", seed=0)
    train_run(config, progress=False)
    path = root / "digits.onnx"
    export_model("zoo:digits_cnn", plan, "onnx", path, checkpoint=root / "run")
    checkpoint = torch.load(root / "run" / "checkpoint.pt", weights_only=True)
    loaded = load_model("zoo:digits_cnn", options=checkpoint["model_options"])
    model = apply(loaded.model, plan, loaded.example_inputs)
    model.load_state_dict(checkpoint["model"])
    load_quant_state_dict(model, checkpoint["quant"][0])
    images = torch.stack([image for image, _ in load_data("digits", seed=0, example_inputs=loaded.example_inputs).test])
    with torch.no_grad():
        expected = model.eval()(images).numpy()
    results = {}
    for layout, source in (("bitplan", str(path)), ("rank-2", rank2_layout(path))):
        for level in LEVELS:
            got = run(source, level, {"input_0": images.numpy()})
            rows = np.abs(got - expected).max(axis=1)
            results[f"{layout} {level}"] = {
                "rows_within_1e-3": float((rows <= 1e-3).mean()),
                "top1_agreement": float((got.argmax(1) == expected.argmax(1)).mean()),
            }
    return results


def tied_lm(root: Path) -> dict:
    torch.manual_seed(0)
    loaded = load_model(LM_SPEC)
    model = loaded.model.eval()
    tokens = torch.randint(0, 61, (3, 16))
    plan = make_plan(profile_spec(LM_SPEC), factor="A", strategy="U", levels=[2], zero_point="integer", activation_bits=None,
                     gradient_bits=None)
    with torch.no_grad():
        expected = apply(copy.deepcopy(model), plan, (tokens,)).eval()(tokens).numpy()
    path = to_onnx(model, plan, root / "lm.onnx", (tokens,))
    results = {}
    for layout, source in (("bitplan", str(path)), ("rank-2", rank2_layout(path))):
        for level in LEVELS:
            got = run(source, level, {"input_0": tokens.numpy()})
            results[f"{layout} {level}"] = {"max_relative_error": float(np.abs(got - expected).max() / np.abs(expected).max())}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/onnx_runtime_exactness.json"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as folder:
        result = {"onnxruntime": ort.__version__, "digits_1-2_bit": digits(Path(folder)), "tied_lm_2_bit": tied_lm(Path(folder))}
    for name in ("digits_1-2_bit", "tied_lm_2_bit"):
        print(name)
        for setting, values in result[name].items():
            print(f"  {setting:28s} " + "  ".join(f"{key} {value:.4g}" for key, value in values.items()))
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
