"""Where does a low-precision floating-point accumulator lose variance on a real layer?

Trains the zoo digits CNN on the embedded digits data (full precision, a few seconds), then takes
conv3's three GEMMs on the 360 test images — forward Y = X·W (K = 288), dX = dY·Wᵀ (N = 64) and
dW = Xᵀ·dY (M = 360·16 = 5760) — and sums each GEMM's real products with an accumulator rounded to m
fraction bits after every addition (``bitplan.accumulation.simulate_accumulation``), sequentially
and in chunks. Measured VRR (Σ computed² / Σ exact² over the sampled outputs) is set beside the
model's prediction for i.i.d. normal products, at the full length n and at the number of non-zero
products (ReLU zeros add nothing and are never rounded). Also records, for one dW run per m, the
VRR of the running sum after every product: where along the reduction the variance goes.

    python benchmarks/accumulation_study.py --out benchmarks/results/accumulation.json --figure docs/img/accumulation.png
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bitplan.accumulation import (
    DEFAULT_VRR_TOLERANCE,
    measured_vrr,
    predicted_vrr,
    required_mantissa_bits,
    round_mantissa,
)
from bitplan.atomic import atomic_write, atomic_write_text
from bitplan.data.registry import load_data
from bitplan.zoo.registry import build


def train_digits_cnn(epochs: int, seed: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, float]:
    """A full-precision digits CNN (Adam, batch 64) and the test split; returns its test accuracy too."""
    torch.manual_seed(seed)
    bundle = load_data("digits")
    model, _ = build("digits_cnn")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    inputs, labels = bundle.train.inputs, bundle.train.labels
    for _ in range(epochs):
        order = torch.randperm(labels.shape[0])
        for start in range(0, labels.shape[0], 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            F.cross_entropy(model(inputs[batch]), labels[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(bundle.test.inputs).argmax(1) == bundle.test.labels).float().mean().item()
    return model, bundle.test.inputs, bundle.test.labels, accuracy


def conv3_operands(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """conv3's GEMM operands on real data: X_col [M, K], W [N, K], dY [M, N] (float64)."""
    captured: dict[str, torch.Tensor] = {}
    conv = model.conv3
    handle = conv.register_forward_hook(lambda module, args, output: captured.update(x=args[0], y=output))
    output = model(images)
    handle.remove()
    captured["y"].retain_grad()
    F.cross_entropy(output, labels).backward()
    x, dy = captured["x"].detach(), captured["y"].grad  # [B, 32, 4, 4], [B, 64, 4, 4]
    x_col = F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 32 * 9)  # [B·16, 288]
    dy_rows = dy.permute(0, 2, 3, 1).reshape(-1, 64)  # [B·16, 64]
    weight = conv.weight.detach().reshape(64, -1)  # [64, 288]
    return {name: t.double().numpy() for name, t in (("x_col", x_col), ("w", weight), ("dy", dy_rows))}


def gemm_products(operands: dict[str, np.ndarray], samples: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """[samples, length] products of randomly chosen output elements of the three GEMMs."""
    x_col, w, dy = operands["x_col"], operands["w"], operands["dy"]
    rows, k = x_col.shape
    n = w.shape[0]
    i, j = rng.integers(0, rows, samples), rng.integers(0, n, samples)
    kk = rng.integers(0, k, samples)
    weight_samples = max(samples // 5, 100)  # dW sums M = 5760 products per output: fewer outputs
    jw, kw = rng.integers(0, n, weight_samples), rng.integers(0, k, weight_samples)
    return {
        "forward": x_col[i] * w[j],  # Y[i, j] = Σ_k X[i, k]·W[j, k]: [samples, K]
        "grad_input": dy[i] * w[:, kk].T,  # dX[i, k] = Σ_j dY[i, j]·W[j, k]: [samples, N]
        "grad_weight": (dy[:, jw] * x_col[:, kw]).T,  # dW[j, k] = Σ_i dY[i, j]·X[i, k]: [samples, M]
    }


def running_vrr(terms: np.ndarray, mantissa_bits: int, points: np.ndarray) -> list[float]:
    """VRR of the running sum after each of ``points`` products (1-based counts)."""
    total, exact = np.zeros(terms.shape[0]), np.zeros(terms.shape[0])
    found, wanted = [], set(int(p) for p in points)
    for column in range(terms.shape[1]):
        total = round_mantissa(total + terms[:, column], mantissa_bits)
        exact = exact + terms[:, column]
        if column + 1 in wanted:
            found.append(float(np.sum(total**2) / np.sum(exact**2)))
    return found


def smallest_enough(bits: list[int], vrrs: list[float], tolerance: float) -> int | None:
    """The first m from which every wider m keeps |1 − VRR| within tolerance."""
    for index, m in enumerate(bits):
        if all(abs(1 - v) <= tolerance for v in vrrs[index:]):
            return m
    return None


def study(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    torch.set_num_threads(1)
    model, images, labels, accuracy = train_digits_cnn(args.epochs, args.seed)
    products = gemm_products(conv3_operands(model, images, labels), args.samples, np.random.default_rng(args.seed))
    bits = list(range(args.min_bits, args.max_bits + 1))
    gemms = {}
    for name, terms in products.items():
        length = terms.shape[1]
        nonzero = float(np.count_nonzero(terms) / terms.size)
        effective = max(1, round(nonzero * length))
        rows = []
        for m in bits:
            rows.append(
                {
                    "mantissa_bits": m,
                    "measured": measured_vrr(terms, m),
                    "measured_chunked": measured_vrr(terms, m, args.chunk),
                    "predicted": predicted_vrr(length, m),
                    "predicted_nonzero": predicted_vrr(effective, m),
                    "predicted_chunked": predicted_vrr(effective, m, chunk=max(1, round(nonzero * args.chunk))),
                }
            )
        gemms[name] = {
            "length": length,
            "outputs_sampled": terms.shape[0],
            "nonzero_fraction": nonzero,
            "nonzero_length": effective,
            "rows": rows,
            "required_measured": smallest_enough(bits, [r["measured"] for r in rows], args.tolerance),
            "required_measured_chunked": smallest_enough(bits, [r["measured_chunked"] for r in rows], args.tolerance),
            "required_predicted": required_mantissa_bits(length, tolerance=args.tolerance),
            "required_predicted_nonzero": required_mantissa_bits(effective, tolerance=args.tolerance),
            "required_predicted_chunked": required_mantissa_bits(
                effective, tolerance=args.tolerance, chunk=max(1, round(nonzero * args.chunk))
            ),
        }
    terms = products["grad_weight"]
    points = np.unique(np.geomspace(1, terms.shape[1], 40).astype(int))
    trajectory = {
        "points": points.tolist(),
        "measured": {m: running_vrr(terms, m, points) for m in args.trajectory_bits},
        "predicted_nonzero": {
            m: [predicted_vrr(max(1, round(gemms["grad_weight"]["nonzero_fraction"] * p)), m) for p in points]
            for m in args.trajectory_bits
        },
    }
    return {
        "layer": "zoo:digits_cnn conv3 (trained, 360 digits test images)",
        "test_accuracy": accuracy,
        "chunk": args.chunk,
        "tolerance": args.tolerance,
        "gemms": gemms,
        "grad_weight_trajectory": trajectory,
        "seconds": time.perf_counter() - started,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "command": "python benchmarks/accumulation_study.py " + " ".join(args.argv),
    }


def print_table(result: dict) -> None:
    print(f"{result['layer']}: test accuracy {result['test_accuracy']:.3f}, chunk {result['chunk']}")
    for name, gemm in result["gemms"].items():
        print(
            f"\n{name}: n = {gemm['length']}, non-zero {gemm['nonzero_fraction']:.2f} (n_nz = {gemm['nonzero_length']}), "
            f"{gemm['outputs_sampled']} outputs; m needed (|1−VRR| ≤ {result['tolerance']}): measured "
            f"{gemm['required_measured']}, chunked {gemm['required_measured_chunked']}; predicted "
            f"{gemm['required_predicted']} (n), {gemm['required_predicted_nonzero']} (n_nz), "
            f"chunked {gemm['required_predicted_chunked']}"
        )
        print("   m  measured  pred(n)  pred(n_nz)  meas/pred(n_nz)  measured chunked  pred chunked")
        for row in gemm["rows"]:
            print(
                f"  {row['mantissa_bits']:2d}  {row['measured']:8.4f}  {row['predicted']:7.4f}  {row['predicted_nonzero']:10.4f}"
                f"  {row['measured'] / row['predicted_nonzero']:15.3f}  {row['measured_chunked']:16.4f}  "
                f"{row['predicted_chunked']:12.4f}"
            )


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    titles = {"forward": "forward Y = X·W", "grad_input": "dX = dY·Wᵀ", "grad_weight": "dW = Xᵀ·dY"}
    for axis, (name, gemm) in zip(axes, result["gemms"].items()):
        m = [row["mantissa_bits"] for row in gemm["rows"]]
        axis.plot(m, [r["measured"] for r in gemm["rows"]], "o", color="C0", label="measured")
        axis.plot(m, [r["predicted_nonzero"] for r in gemm["rows"]], "-", color="C0", label="model, n = non-zero")
        axis.plot(m, [r["predicted"] for r in gemm["rows"]], ":", color="C0", label="model, n = K")
        axis.plot(m, [r["measured_chunked"] for r in gemm["rows"]], "s", color="C1", label=f"measured, chunk {result['chunk']}")
        axis.plot(m, [r["predicted_chunked"] for r in gemm["rows"]], "-", color="C1", label="model, chunked")
        axis.set_title(f"{titles[name]}: n = {gemm['length']} ({gemm['nonzero_fraction']:.0%} non-zero)")
        axis.set_xlabel("accumulator fraction bits m")
        axis.set_ylim(0, 1.1)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("VRR")
    axes[0].legend(fontsize=7)
    trajectory, axis = result["grad_weight_trajectory"], axes[3]
    for index, (m, values) in enumerate(trajectory["measured"].items()):
        axis.semilogx(trajectory["points"], values, "o", ms=3, color=f"C{index + 2}", label=f"m = {m} measured")
        axis.semilogx(trajectory["points"], trajectory["predicted_nonzero"][m], "-", color=f"C{index + 2}")
    axis.set_title("dW: VRR of the running sum (lines: model)")
    axis.set_xlabel("products summed so far")
    axis.set_ylim(0, 1.1)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=110))
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/accumulation.json"))
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=2000, help="Output elements sampled per GEMM (dW: a fifth).")
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--tolerance", type=float, default=DEFAULT_VRR_TOLERANCE)
    parser.add_argument("--min-bits", type=int, default=2)
    parser.add_argument("--max-bits", type=int, default=14)
    parser.add_argument("--trajectory-bits", type=int, nargs="+", default=[2, 3, 4])
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else __import__("sys").argv[1:]
    result = study(args)
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    if args.figure is not None:
        plot(result, args.figure)
    print(f"\nwrote {args.out} in {result['seconds']:.1f} s")


if __name__ == "__main__":
    main()
