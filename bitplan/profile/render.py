"""Render a ModelProfile as a rich table, CSV, Markdown or JSON, and plot it (Figures 2–3 style)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rich.table import Table

from bitplan.profile.schema import ModelProfile

COLUMNS = [
    "name", "weight", "op", "depth", "m", "k", "n", "groups", "accumulation", "weight_frequency",
    "activation_frequency", "params", "macs", "grad_input_accumulation", "grad_weight_accumulation", "shared",
]


def rows(profile: ModelProfile) -> list[dict[str, object]]:
    """One flat dict per GEMM with every column of ``COLUMNS``."""
    return [
        {key: (value.value if hasattr(value, "value") else value) for key, value in layer.model_dump().items()}
        for layer in profile.layers
    ]


def to_csv(profile: ModelProfile) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows(profile))
    return buffer.getvalue()


def to_markdown(profile: ModelProfile) -> str:
    shown = ["name", "op", "depth", "accumulation", "weight_frequency", "activation_frequency", "params", "macs"]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for row in rows(profile):
        lines.append("| " + " | ".join(str(row[key]) for key in shown) + " |")
    lines.append("")
    lines.append(_summary(profile))
    return "\n".join(lines) + "\n"


def _summary(profile: ModelProfile) -> str:
    return (
        f"{len(profile.layers)} GEMMs ({len(profile.weight_layers)} with weights), "
        f"{profile.gemm_params:,} GEMM weight params of {profile.total_params:,} total, "
        f"{profile.total_macs:,} MACs, batch {profile.batch}, tracer {profile.tracer.value}"
    )


def to_table(profile: ModelProfile) -> Table:
    table = Table(title=f"{profile.model} — GEMM profile", caption=_summary(profile))
    for column, justify in [
        ("#", "right"), ("name", "left"), ("op", "left"), ("depth", "right"), ("A (K)", "right"),
        ("F (M)", "right"), ("N", "right"), ("groups", "right"), ("params", "right"), ("MACs", "right"),
        ("dX K", "right"), ("dW K", "right"),
    ]:
        table.add_column(column, justify=justify)
    for index, layer in enumerate(profile.layers, 1):
        name = layer.name + (" [shared]" if layer.shared else "")
        table.add_row(
            str(index), name, layer.op.value, str(layer.depth), f"{layer.accumulation:,}",
            f"{layer.weight_frequency:,}", f"{layer.activation_frequency:,}", str(layer.groups),
            f"{layer.params:,}", f"{layer.macs:,}", f"{layer.grad_input_accumulation:,}",
            f"{layer.grad_weight_accumulation:,}",
        )
    return table


def plot(profile: ModelProfile, path: Path) -> Path:
    """Accumulation and weight usage frequency per layer on log axes, as the paper's Figures 2–3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bitplan.atomic import atomic_write

    layers = profile.layers
    index = list(range(1, len(layers) + 1))
    figure, axis = plt.subplots(figsize=(max(6.0, 0.18 * len(layers)), 4.0))
    axis.plot(index, [layer.accumulation for layer in layers], "o-", label="accumulation (K)")
    axis.plot(index, [layer.weight_frequency for layer in layers], "s--", label="usage frequency (M)")
    axis.set_yscale("log")
    axis.set_xlabel("GEMM (execution order)")
    axis.set_ylabel("count (log scale)")
    axis.set_title(f"{profile.model}: accumulation and usage frequency per layer")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=120))
    plt.close(figure)
    return path
