"""Bytes one training forward keeps for backward, fp32 against plans, by the layer type that keeps them.

Models: every zoo model (``MODELS``): the ``train_bench`` workloads ``resnet20`` (batch 128),
``mobilenet_v2`` (32×32, batch 64) and ``transformer_lm`` (4 blocks, d_model 256, 128 tokens,
batch 8), ``lstm2`` (2 layers, 35 tokens, vocabulary 2000, batch 20), ``alexnet_cifar``,
``resnet_a``, ``resnet_d`` and ``resnet_f`` (CIFAR, batch 128), ``digits_cnn`` (8×8, batch 256) and
``resnet50`` (224×224, batch 8).
Plans, uniform over every planned GEMM, SR 8-bit gradients: ``W8A8`` and ``W4A4``; ``W4A4 floats``
is the W4A4 plan with its operands kept as float copies (``bitplan.quant.kept.float_copies``: what
quantized training kept before codes). Measured with ``bitplan.qat.memory.kept_for_backward``: every
storage once, parameters excluded, charged to the innermost module that first saved it. The model's
forward is measured; the loss (cross entropy keeps its log-softmax, B·classes or B·T·vocab floats,
the same in every column) is reported in its own row. Below it, measured from the other side: how much
glibc's heap grew over the model's forward while its output was held (``heap_in_use``, the output
left out), which is what the forward really keeps whatever keeps it (a batch that a layer saves as
it came, e.g. the image under fp32, is counted above but was allocated before the forward).

    python benchmarks/memory_bench.py [--models resnet20,transformer_lm] [--out benchmarks/results/memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
from contextlib import nullcontext
from pathlib import Path

import torch

from bitplan.atomic import atomic_write_text
from bitplan.plan import make_plan
from bitplan.qat import apply
from bitplan.qat.memory import KeptBytes, heap_in_use, kept_for_backward
from bitplan.quant.kept import float_copies
from bitplan.spec import load_model, profile_spec
from train_bench import WORKLOADS, Workload, batch_of, loss_of

MODELS = {
    **WORKLOADS,
    "lstm2": Workload("zoo:lstm2?vocab=2000&seq_len=35", 20, True),
    "alexnet_cifar": Workload("zoo:alexnet_cifar", 128),
    "digits_cnn": Workload("zoo:digits_cnn", 256),
    "resnet50": Workload("zoo:resnet50", 2),
    "resnet_a": Workload("zoo:resnet_a", 128),
    "resnet_d": Workload("zoo:resnet_d", 128),
    "resnet_f": Workload("zoo:resnet_f", 128),
}
"""Every zoo model: the ``train_bench`` workloads, then the others at their default input size (CIFAR
models at batch 128, digits at 256, resnet50 at 224×224 and batch 2)."""
PLANS = {"W8A8": 8, "W4A4": 4}
LOSS_ROW = "(loss)"
HEAP_ROW = "(heap)"
"""Not a layer: how much glibc's heap grew over the forward while its output was held (``heap_in_use``),
the output itself left out: an independent measure of what the forward keeps."""


def measure_model(workload: Workload) -> dict[str, KeptBytes]:
    """Kept bytes of fp32, each plan, and W4A4 with float copies, for one workload."""
    device = torch.device("cpu")
    x, y = batch_of(workload, device)
    profile = profile_spec(workload.spec)
    torch.manual_seed(0)
    initial = load_model(workload.spec).model.state_dict()
    example = load_model(workload.spec, batch=workload.batch, device="meta").example_inputs
    results: dict[str, KeptBytes] = {}
    for name, bits in {"fp32": None, **PLANS, "W4A4 floats": 4}.items():
        model = load_model(workload.spec).model
        model.load_state_dict(initial)
        if bits is not None:
            plan = make_plan(profile, factor="A", strategy="U", bits=(bits, bits), uniform_bits=bits,
                             activation_bits=bits, gradient_bits=8, gradient_quant="sr")
            apply(model, plan, tuple(torch.zeros(t.shape, dtype=t.dtype) for t in example), verify=False)
        floats = float_copies() if name.endswith("floats") else nullcontext()
        with floats:
            _, kept = kept_for_backward(model, lambda: model(x))
            del _
            before = heap_in_use()
            out = model(x)
            if before is not None:
                kept.by_module_type[HEAP_ROW] = heap_in_use() - before - out.untyped_storage().nbytes()
            del out
            _, with_loss = kept_for_backward(model, lambda: loss_of(model(x), y))
        kept.by_module_type[LOSS_ROW] = with_loss.total - kept.total
        results[name] = kept
    return results


def render(model_name: str, results: dict[str, KeptBytes]) -> None:
    """One table: MB kept by layer type (rows) and plan (columns), totals and ratios to fp32."""
    columns = list(results)
    rows = sorted({key for kept in results.values() for key in kept.by_module_type} - {LOSS_ROW, HEAP_ROW},
                  key=lambda key: -results["fp32"].by_module_type[key])
    print(f"\n{model_name} ({MODELS[model_name].spec}, batch {MODELS[model_name].batch}): MB kept for backward")
    print(f"| layer type | {' | '.join(columns)} |")
    print(f"|---|{'---|' * len(columns)}")
    for row in rows:
        print(f"| {row} | " + " | ".join(f"{results[c].by_module_type[row] / 1e6:.2f}" for c in columns) + " |")
    print("| **model total** | " + " | ".join(f"**{results[c].total / 1e6:.2f}**" for c in columns) + " |")
    print("| × fp32 | " + " | ".join(f"{results[c].total / results['fp32'].total:.3f}" for c in columns) + " |")
    loss = [results[c].by_module_type[LOSS_ROW] for c in columns]
    print(f"| {LOSS_ROW} | " + " | ".join(f"{value / 1e6:.2f}" for value in loss) + " |")
    with_loss = [results[c].total + value for c, value in zip(columns, loss)]
    print("| with loss × fp32 | " + " | ".join(f"{value / with_loss[0]:.3f}" for value in with_loss) + " |")
    if all(HEAP_ROW in results[c].by_module_type for c in columns):
        heap = [results[c].by_module_type[HEAP_ROW] for c in columns]
        print("| heap growth over the forward (glibc) | " + " | ".join(f"{value / 1e6:.2f}" for value in heap) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "memory.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    record = {"load_average": os.getloadavg(), "models": {}}
    for model_name in args.models.split(","):
        results = measure_model(MODELS[model_name])
        render(model_name, results)
        record["models"][model_name] = {
            name: {"total_bytes": kept.total, "by_module_type": dict(kept.by_module_type), "by_dtype": dict(kept.by_dtype)}
            for name, kept in results.items()
        }
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
