"""Do A, F and D rank layers like measured sensitivity? The study behind docs/validation.md.

For each zoo model on the embedded digits data: train a full-precision checkpoint (seed 0), then
measure every method (fisher, loss-delta, sqnr, hessian) at ``--bits`` on the trained weights and on
the random initialisation the training started from, and rank-correlate each structural factor (A,
F, D, capacity, MACs) with the measure (Spearman ρ, Kendall τ, 95% paired bootstrap CIs over layers),
over all weight GEMMs and over the interior ones (first and last left out).

    python benchmarks/validation_study.py --out runs/validation --img-dir docs/img

Writes into ``--out``: one training run per model (``<model>/seed-0/``, reused when finished),
one sensitivity report per model × weights × method (``<model>/<weights>-<method>.json``, with its
validation), ``validation.json`` (everything) and ``validation.md`` (the tables of
docs/validation.md); one scatter grid per model × weights (methods × factors) into ``--img-dir``.
``--reuse`` reads reports an earlier run left in ``--out`` instead of measuring again (to re-render).
Runs with one torch thread by default: on a shared two-core machine, two threads contend and small
convolutions get an order of magnitude slower.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from bitplan.atomic import atomic_write, atomic_write_text
from bitplan.sensitivity_analysis import FACTORS, SensitivityReport, SensitivityMethod, correlate, measure_sensitivity, validate
from bitplan.train import TrainConfig, train_seeds

DEFAULT_MODELS = (
    "zoo:digits_cnn",
    "zoo:resnet20?in_channels=1&input_size=8",
    "zoo:resnet_a?in_channels=1&input_size=8",
    "zoo:resnet_f?in_channels=1&input_size=8",
)
METHODS = tuple(method.value for method in SensitivityMethod)
WEIGHTS = ("trained", "random")
# The paper's rules as signs of the rank correlation between a factor and sensitivity:
# C− on A (more accumulation, fewer bits) means a large A is LESS sensitive; C+ on F means a
# frequently used weight is MORE sensitive; depth has no clear effect.
RULES = {"A": "C−: ρ < 0", "F": "C+: ρ > 0", "D": "none: ρ ≈ 0"}
# Below this many layers a percentile bootstrap over layers is too coarse to mean much (with 3
# layers every resample of a monotone triple gives ρ = ±1): such sets are shown but not tallied.
MIN_LAYERS = 10


def slug(spec: str) -> str:
    """``zoo:resnet20?in_channels=1&input_size=8`` → ``resnet20``: a folder and file name."""
    return spec.partition(":")[2].partition("?")[0] or spec


def train_checkpoint(spec: str, data: str, out: Path, epochs: int, threads: int) -> dict:
    """Full-precision training, seed 0; a finished run in ``out`` is reused as it is."""
    config = TrainConfig(model=spec, data=data, epochs=epochs, seed=0, threads=threads, device="cpu", out=out)
    summary = train_seeds(config, [0], resume=True, progress=False)
    final = json.loads((out / "seed-0" / "final.json").read_text())
    if final["status"] != "ok":
        raise SystemExit(f"training {spec} failed: {final['message']}")
    return {"checkpoint": str(out / "seed-0" / "checkpoint.pt"), "accuracy": summary.mean,
            "epochs": final["epochs_done"], "train_seconds": final["seconds"]}


def side(ci: tuple[float, float] | None) -> str:
    """Where a 95% CI lies: ``negative`` or ``positive`` when it excludes zero, else ``spans 0``."""
    if ci is None or ci[0] <= 0 <= ci[1]:
        return "spans 0"
    return "positive" if ci[0] > 0 else "negative"


def interior(report: SensitivityReport, resamples: int) -> list[dict]:
    """Spearman ρ of A, F, D over the layers between the first and the last weight GEMM (profile order).

    The stem and the classifier are often kept at high precision and differ from every other
    layer in A and F at once; without them the interior layers show whether a factor ranks the
    layers a plan really has to choose among.
    """
    layers = report.layers[1:-1]
    sensitivity = np.array([layer.sensitivity for layer in layers])
    records = []
    for factor in RULES:
        if len(layers) < MIN_LAYERS:
            records.append({"factor": factor, "spearman": None, "spearman_ci": None, "layers": len(layers),
                            "note": f"only {len(layers)} interior layers"})
            continue
        values = np.array([getattr(layer, FACTORS[factor]) for layer in layers], dtype=float)
        rho, rho_ci, _, _, note = correlate(values, sensitivity, resamples=resamples, seed=0)
        records.append({"factor": factor, "spearman": rho, "spearman_ci": rho_ci, "layers": len(layers), "note": note})
    return records


def method_agreement(reports: dict[str, SensitivityReport]) -> dict[str, dict[str, float | None]]:
    """Spearman ρ between every two methods' per-layer scores (same model, same weights)."""
    from scipy import stats

    table: dict[str, dict[str, float | None]] = {}
    for first in reports:
        table[first] = {}
        for second in reports:
            a = [layer.sensitivity for layer in reports[first].layers]
            b = [layer.sensitivity for layer in reports[second].layers]
            rho = stats.spearmanr(a, b).statistic if np.ptp(a) > 0 and np.ptp(b) > 0 else math.nan
            table[first][second] = None if not math.isfinite(rho) else float(rho)
    return table


def scatter_grid(reports: dict[str, SensitivityReport], title: str, path: Path, dpi: int) -> None:
    """Methods (rows) × factors (columns): factor against sensitivity, ρ in each panel.

    Factors spanning decades are on a log axis (depth is linear); sensitivity is on a log axis when
    every layer's is positive, else linear with a dashed zero line (loss-delta and the Hutchinson
    trace can be negative). The PNG is quantized to a 64-colour palette to stay small.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter
    from PIL import Image

    figure, axes = plt.subplots(
        len(reports), len(FACTORS), figsize=(2.3 * len(FACTORS), 1.9 * len(reports)), squeeze=False
    )
    for row, (method, report) in enumerate(reports.items()):
        correlations = {c.factor: c for c in report.validation}
        sensitivity = np.array([layer.sensitivity for layer in report.layers])
        for column, (factor, field) in enumerate(FACTORS.items()):
            axis = axes[row, column]
            axis.scatter([getattr(layer, field) for layer in report.layers], sensitivity, s=9)
            if factor != "D":
                axis.set_xscale("log")
            if sensitivity.min() > 0:
                axis.set_yscale("log")
            else:
                axis.axhline(0, color="grey", linewidth=0.6, linestyle="--")
            axis.xaxis.set_minor_formatter(NullFormatter())
            axis.yaxis.set_minor_formatter(NullFormatter())
            rho = correlations[factor].spearman
            axis.set_title(f"{factor}: ρ={rho:+.2f}" if rho is not None else f"{factor}: ρ —", fontsize=8)
            axis.tick_params(labelsize=6)
            axis.yaxis.get_offset_text().set_fontsize(6)
            if column == 0:
                axis.set_ylabel(method, fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    buffer.seek(0)
    small = Image.open(buffer).convert("RGB").quantize(colors=64)
    atomic_write(path, lambda handle: small.save(handle, format="PNG", optimize=True))


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}"


def _interval(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "—"
    return f"{value:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else f"{value:+.2f} [—]"


def markdown(summary: dict) -> str:
    """The tables of docs/validation.md."""
    lines = []
    for model in summary["models"]:
        lines += [f"### {model['slug']} (`{model['spec']}`)", "",
                  f"{model['layers']} weight GEMMs; trained {model['epochs']} epochs in full precision to "
                  f"{model['accuracy']:.1f}% test accuracy. Scatter grids: "
                  + ", ".join(f"`{image}`" for image in model["images"]) + ".", ""]
        for statistic in ("spearman", "kendall"):
            symbol = "Spearman ρ" if statistic == "spearman" else "Kendall τ"
            lines += [f"{symbol} [95% CI] between each factor and the measured sensitivity:", "",
                      "| weights | method | " + " | ".join(FACTORS) + " | seconds |",
                      "|---|---|" + "---|" * len(FACTORS) + "---:|"]
            for run in model["runs"]:
                cells = [_interval(c[statistic], c[f"{statistic}_ci"]) for c in run["validation"]]
                lines.append(f"| {run['weights']} | {run['method']} | " + " | ".join(cells) + f" | {run['seconds']:.1f} |")
            lines.append("")
        interior_layers = model["runs"][0]["interior"][0]["layers"]
        if interior_layers < MIN_LAYERS:
            lines += [f"Interior layers (first and last weight GEMM left out): only {interior_layers}, too few to "
                      "correlate.", ""]
        else:
            lines += ["Interior layers only (first and last weight GEMM left out), Spearman ρ [95% CI]:", "",
                      "| weights | method | " + " | ".join(RULES) + " |", "|---|---|" + "---|" * len(RULES)]
            for run in model["runs"]:
                cells = [_interval(c["spearman"], c["spearman_ci"]) for c in run["interior"]]
                lines.append(f"| {run['weights']} | {run['method']} | " + " | ".join(cells) + " |")
            lines.append("")
        methods = list(model["agreement"]["trained"])
        lines += ["Agreement between methods (Spearman ρ of the per-layer scores; trained above the "
                  "diagonal, random init below):", "", "| | " + " | ".join(methods) + " |",
                  "|---|" + "---|" * len(methods)]
        for i, first in enumerate(methods):
            cells = []
            for j, second in enumerate(methods):
                value = model["agreement"]["trained" if j > i else "random"][first][second]
                cells.append("" if i == j else _number(value))
            lines.append(f"| {first} | " + " | ".join(cells) + " |")
        lines += ["", "Same method, trained against random-init weights (Spearman ρ of the per-layer scores): "
                  + ", ".join(f"{method} {_number(rho)}" for method, rho in model["trained_vs_random"].items()) + ".", ""]
    lines += ["### Tally over all models and methods", "",
              "Number of measurements (model × method) whose 95% CI of Spearman ρ lies wholly below zero, "
              f"spans zero, or lies wholly above zero; layer sets of fewer than {MIN_LAYERS} layers and factors "
              "constant over the set are left out.", "",
              "| factor | paper's rule | layers | weights | ρ < 0 | CI spans 0 | ρ > 0 |", "|---|---|---|---|---:|---:|---:|"]
    for row in summary["tally"]:
        lines.append(f"| {row['factor']} | {row['rule']} | {row['layers']} | {row['weights']} | {row['negative']} | "
                     f"{row['spans 0']} | {row['positive']} |")
    return "\n".join(lines) + "\n"


def tally(models: list[dict]) -> list[dict]:
    """Per factor, layer set and kind of weights: how many Spearman CIs lie below, across, above zero.

    Layer sets smaller than ``MIN_LAYERS``, and factors constant over the set, are not counted.
    """
    rows = []
    for factor, rule in RULES.items():
        for layer_set, key in (("all", "validation"), ("interior", "interior")):
            for weights in WEIGHTS:
                counts = {"negative": 0, "spans 0": 0, "positive": 0}
                for model in models:
                    for run in model["runs"]:
                        if run["weights"] == weights:
                            record = next(c for c in run[key] if c["factor"] == factor)
                            if record["layers"] >= MIN_LAYERS and record["spearman"] is not None:
                                counts[side(record["spearman_ci"])] += 1
                rows.append({"factor": factor, "rule": rule, "layers": layer_set, "weights": weights, **counts})
    return rows


def stored_report(path: Path, args: argparse.Namespace) -> SensitivityReport | None:
    """A validated report from an earlier run with the same measuring settings, else None."""
    if not path.is_file():
        return None
    report = SensitivityReport.model_validate_json(path.read_text())
    same = (report.bits, report.batch_size, report.validation is not None) == (args.bits, args.batch_size, True)
    return report if same and report.batches == args.batches else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/validation"), help="Checkpoints, reports, summary.")
    parser.add_argument("--img-dir", type=Path, default=None, help="Scatter grids (default: OUT/img).")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="Comma-separated model specs.")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--epochs", type=int, default=6, help="Full-precision training epochs per model.")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--probes", type=int, default=8, help="Hutchinson probes per batch (hessian).")
    parser.add_argument("--resamples", type=int, default=1000, help="Bootstrap resamples per CI.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dpi", type=int, default=70)
    parser.add_argument("--reuse", action="store_true",
                        help="Read reports already in OUT (same bits, batches, batch size) instead of measuring again.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    img_dir = args.img_dir or args.out / "img"
    methods = args.methods.split(",")
    started, cpu_started = time.perf_counter(), time.process_time()
    models = []
    for spec in args.models.split(","):
        name = slug(spec)
        trained = train_checkpoint(spec, args.data, args.out / name, args.epochs, args.threads)
        print(f"{name}: trained to {trained['accuracy']:.1f}% in {trained['train_seconds']:.0f} s", flush=True)
        runs, reports = [], {weights: {} for weights in WEIGHTS}
        for weights in WEIGHTS:
            for method in methods:
                path = args.out / name / f"{weights}-{method}.json"
                report = stored_report(path, args) if args.reuse else None
                if report is None:
                    report = measure_sensitivity(
                        spec, args.data, method=method, bits=args.bits, batches=args.batches,
                        batch_size=args.batch_size, seed=0, probes=args.probes,
                        checkpoint=trained["checkpoint"] if weights == "trained" else None,
                    )
                    report = report.model_copy(update={"validation": validate(report, resamples=args.resamples, seed=0)})
                    atomic_write_text(path, report.model_dump_json(indent=2))
                reports[weights][method] = report
                runs.append({"weights": weights, "method": method, "seconds": report.seconds,
                             "sensitivity": report.by_name(),
                             "validation": [c.model_dump(mode="json") for c in report.validation],
                             "interior": interior(report, args.resamples)})
                print(f"  {weights:7s} {method:10s} {report.seconds:6.1f} s  ρ_A={_interval(report.validation[0].spearman, report.validation[0].spearman_ci)}", flush=True)
        images = [img_dir / f"validation-{name}-{weights}.png" for weights in WEIGHTS]
        for weights, image in zip(WEIGHTS, images):
            scatter_grid(reports[weights], f"{name} on {args.data}, {args.bits}-bit weights, {weights} weights",
                         image, args.dpi)
        models.append({"spec": spec, "slug": name, "layers": len(runs[0]["sensitivity"]), **trained,
                       "images": [str(image) for image in images], "runs": runs,
                       "agreement": {w: method_agreement(reports[w]) for w in WEIGHTS},
                       "trained_vs_random": {m: method_agreement({"trained": reports["trained"][m], "random":
                                                                  reports["random"][m]})["trained"]["random"]
                                             for m in methods}})
    summary = {
        "settings": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
        "machine": {"torch": torch.__version__, "python": platform.python_version(), "threads": args.threads},
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "models": models,
        "tally": tally(models),
    }
    atomic_write_text(args.out / "validation.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(args.out / "validation.md", markdown(summary))
    print(markdown(summary))
    print(f"total {summary['seconds']:.0f} s ({summary['cpu_seconds']:.0f} s CPU); wrote {args.out / 'validation.json'} and {args.out / 'validation.md'}")


if __name__ == "__main__":
    main()
