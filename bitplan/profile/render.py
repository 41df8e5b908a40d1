"""Render a ModelProfile as a rich table, CSV, Markdown or JSON, and plot it (Figures 2–3 style)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rich.table import Table

from bitplan.profile.schema import LOOKUP_ZERO, ModelProfile
from bitplan.profile.summary import GemmGroup, index_ranges

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
    shown = ["#", "name", "op", "depth", "accumulation", "weight_frequency", "activation_frequency", "params", "macs"]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for index, (row, layer) in enumerate(zip(rows(profile), profile.layers)):
        cells = [index if key == "#" else "–" if layer.op.lookup and key in LOOKUP_ZERO and key != "macs" else row[key] for key in shown]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines.append("")
    lines.append(_summary(profile))
    return "\n".join(lines) + "\n"


def _summary(profile: ModelProfile) -> str:
    lookups = len(profile.lookups)
    gemms = len(profile.layers) - lookups
    tables = f" and {lookups} lookup{'s' if lookups > 1 else ''}" if lookups else ""
    return (
        f"{gemms} GEMMs ({len(profile.weight_layers) - lookups} with weights){tables}, "
        f"{profile.gemm_params:,} {'planned' if lookups else 'GEMM'} weight params of {profile.total_params:,} total, "
        f"{profile.total_macs:,} MACs, batch {profile.batch}, tracer {profile.tracer.value}"
    )


def to_table(profile: ModelProfile) -> Table:
    """Every GEMM as a rich table row; ``#`` is its 0-based position in ``profile.layers``."""
    table = Table(title=f"{profile.model} — GEMM profile", caption=_summary(profile))
    for column, justify in [
        ("#", "right"), ("name", "left"), ("op", "left"), ("depth", "right"), ("A (K)", "right"),
        ("F (M)", "right"), ("N", "right"), ("groups", "right"), ("params", "right"), ("MACs", "right"),
        ("dX K", "right"), ("dW K", "right"),
    ]:
        table.add_column(column, justify=justify)
    for index, layer in enumerate(profile.layers):
        name = layer.name + (" [shared]" if layer.shared else "")
        # a lookup has no reduction, no frequency and no dX/dW GEMM: its table is V rows × D
        stats = (
            ["–", "–", "–", str(layer.groups), f"{layer.params:,}", "0", "–", "–"]
            if layer.op.lookup
            else [
                f"{layer.accumulation:,}", f"{layer.weight_frequency:,}", f"{layer.activation_frequency:,}",
                str(layer.groups), f"{layer.params:,}", f"{layer.macs:,}", f"{layer.grad_input_accumulation:,}",
                f"{layer.grad_weight_accumulation:,}",
            ]
        )
        table.add_row(str(index), name, layer.op.value, str(layer.depth), *stats)
    return table


GROUP_COLUMNS = ["#", "module", "GEMMs", "params", "MACs", "% MACs", "A (K)", "F (M)"]


def group_rows(profile: ModelProfile, groups: list[GemmGroup]) -> list[list[str]]:
    """One row of ``GROUP_COLUMNS`` per group: GEMM indices, counts, sums and K/M ranges."""
    total = max(profile.total_macs, 1)
    return [
        [
            index_ranges(group.indices), group.prefix, str(group.count), f"{group.params:,}", f"{group.macs:,}",
            f"{group.macs / total:.1%}", _span(group.k_range), _span(group.m_range),
        ]
        for group in groups
    ]


def groups_table(profile: ModelProfile, groups: list[GemmGroup], how: str) -> Table:
    """``group_rows`` as a rich table; ``how`` says how the groups were chosen (the caption's start)."""
    table = Table(title=f"{profile.model} — GEMM profile", caption=f"{how}; {_summary(profile)}")
    for column in GROUP_COLUMNS:
        table.add_column(column, justify="left" if column == "module" else "right")
    for row in group_rows(profile, groups):
        table.add_row(*row)
    return table


GROUP_CSV_COLUMNS = ["indices", "module", "gemms", "params", "macs", "macs_share", "k_min", "k_max", "m_min", "m_max"]


def groups_csv(profile: ModelProfile, groups: list[GemmGroup]) -> str:
    """The groups with plain numbers (``indices`` as in the table, e.g. ``3-8``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(GROUP_CSV_COLUMNS)
    for group in groups:
        writer.writerow([
            index_ranges(group.indices), group.prefix, group.count, group.params, group.macs,
            repr(group.macs / max(profile.total_macs, 1)), *group.k_range, *group.m_range,
        ])
    return buffer.getvalue()


def groups_markdown(profile: ModelProfile, groups: list[GemmGroup], how: str) -> str:
    lines = ["| " + " | ".join(GROUP_COLUMNS) + " |", "|" + "---|" * len(GROUP_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in group_rows(profile, groups)]
    return "\n".join([*lines, "", f"{how}; {_summary(profile)}"]) + "\n"


def _span(bounds: tuple[int, int]) -> str:
    low, high = bounds
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def plot(profile: ModelProfile, path: Path) -> Path:
    """Accumulation K and weight usage frequency M per GEMM on a log axis, as the paper's Figures 2–3
    (lookups have neither, so they are not drawn)."""
    from bitplan.figures import layer_axis_width, log_ticks, layer_ticks, new_figure, save_png

    layers = [layer for layer in profile.layers if not layer.op.lookup]
    width = layer_axis_width(len(layers))
    figure = new_figure(width, 4.8 if len(layers) <= 60 else 4.0)
    axis = figure.subplots()
    index = list(range(len(layers)))
    axis.plot(index, [layer.accumulation for layer in layers], "o-", label="accumulation (K)")
    axis.plot(index, [layer.weight_frequency for layer in layers], "s--", label="usage frequency (M)")
    axis.set_yscale("log")
    log_ticks(axis, "y")
    axis.set_ylabel("count (log scale)")
    axis.set_title(f"{profile.model}: accumulation and usage frequency per GEMM")
    axis.grid(True, which="major", alpha=0.3)
    axis.legend()
    layer_ticks(axis, [layer.name for layer in layers], width)
    return save_png(figure, path)
