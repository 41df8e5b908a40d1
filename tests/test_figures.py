"""Every figure bitplan draws, rendered headless and inspected with matplotlib's own API.

Each figure is captured as it is saved; then: its size is sane (not a strip), every title and axis
label lies inside the figure, no two tick labels of an axis overlap (window extents), index and
epoch axes carry whole numbers only, layer axes show names when there are at most 60 layers, and
bar labels sit above their error bars.
"""

from __future__ import annotations

import math

import pytest
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from bitplan.compare.figures import curves_figure, factor_bars, variance_figure
from bitplan.compare.result import CellRow, GridResult, SeedRun
from bitplan.plan import make_plan
from bitplan.plan.plot import plot_plan
from bitplan.plan.synthetic import GemmShape, profile_from_gemms, resnet20_profile
from bitplan.profile.render import plot as plot_profile
from bitplan.sensitivity_analysis import LayerSensitivity, SensitivityReport
from bitplan.sensitivity_analysis.validate import scatter, validate
from bitplan.study import StudyConfig, render_factor_png, run_study
from bitplan.train import MetricName

MAX_PIXELS = (1800, 1300)
MAX_ASPECT = 3.2


@pytest.fixture
def drawn(monkeypatch) -> list[Figure]:
    """Every matplotlib figure saved while the test runs, in order."""
    figures: list[Figure] = []
    save = Figure.savefig

    def recording(self, *args, **kwargs):
        figures.append(self)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording)
    return figures


def overlap_area(a: Bbox, b: Bbox) -> float:
    inside = Bbox.intersection(a, b)
    return 0.0 if inside is None else inside.width * inside.height


def visible_tick_labels(axis) -> list:
    """Tick labels that are drawn (a twin axes hides its shared axis, labels and all)."""
    if not axis.get_visible():
        return []
    return [label for label in axis.get_ticklabels(which="both") if label.get_visible() and label.get_text()]


def assert_readable(figure: Figure) -> None:
    """Size, text inside the figure, and tick labels that do not overlap, for every axes of ``figure``."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    width, height = figure.get_size_inches() * figure.dpi
    assert width <= MAX_PIXELS[0] and height <= MAX_PIXELS[1], f"figure is {width:.0f}×{height:.0f} px"
    assert width / height <= MAX_ASPECT, f"figure is a {width:.0f}×{height:.0f} strip"
    frame = figure.bbox.padded(1.0)
    texts = [figure._suptitle] if figure._suptitle is not None else []
    for axes in figure.axes:
        texts += [axes.title, axes.xaxis.label, axes.yaxis.label]
        for axis in (axes.xaxis, axes.yaxis):
            labels = visible_tick_labels(axis)
            boxes = [label.get_window_extent(renderer) for label in labels]
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    assert overlap_area(boxes[i], boxes[j]) <= 1.0, (
                        f"tick labels {labels[i].get_text()!r} and {labels[j].get_text()!r} overlap")
    for text in texts:
        if text.get_visible() and text.get_text():
            box = text.get_window_extent(renderer)
            assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), (
                f"{text.get_text()!r} is clipped: {box} outside {figure.bbox}")


def assert_integer_ticks(axis) -> None:
    """Every tick of ``axis`` inside its view is a whole number."""
    low, high = sorted(axis.get_view_interval())
    ticks = [tick for tick in axis.get_ticklocs() if low <= tick <= high]
    assert ticks, "no ticks"
    assert all(math.isclose(tick, round(tick)) for tick in ticks), f"fractional ticks {ticks}"


def tick_texts(axis) -> list[str]:
    return [label.get_text() for label in visible_tick_labels(axis)]


def test_profile_plot_names_layers_up_to_sixty(drawn, tmp_path):
    profile = resnet20_profile()
    plot_profile(profile, tmp_path / "profile.png")
    (figure,) = drawn
    assert_readable(figure)
    assert tick_texts(figure.axes[0].xaxis) == [f"{i} {layer.name}" for i, layer in enumerate(profile.layers)]


def test_profile_plot_of_many_layers_has_integer_index_ticks(drawn, tmp_path):
    profile = profile_from_gemms("deep", [GemmShape(f"block{i}.fc", 8, 16 + i, 16, i + 1) for i in range(75)])
    plot_profile(profile, tmp_path / "deep.png")
    (figure,) = drawn
    assert_readable(figure)
    assert_integer_ticks(figure.axes[0].xaxis)
    assert "index" in figure.axes[0].get_xlabel()


def test_plan_plot_has_integer_bits_names_and_k_m_lines(drawn, tmp_path):
    profile = resnet20_profile()
    plan = make_plan(profile, factor="A", strategy="C-", bits=(4, 8), keep=["first"], keep_bits=32)
    written = plot_plan(plan, profile, tmp_path / "plan.png")
    assert written.read_bytes().startswith(b"\x89PNG")
    (figure,) = drawn
    assert_readable(figure)
    bits_axes, shape_axes = figure.axes
    assert_integer_ticks(bits_axes.yaxis)
    assert [bar.get_height() for bar in bits_axes.patches][1:] == [layer.bits for layer in plan.layers][1:]
    assert bits_axes.patches[0].get_height() == 9 and "32" in [text.get_text() for text in bits_axes.texts]
    lines = {line.get_label(): list(line.get_ydata()) for line in shape_axes.get_lines()}
    assert lines["accumulation K"] == [layer.accumulation for layer in profile.layers]
    assert lines["usage frequency M"] == [layer.weight_frequency for layer in profile.layers]
    assert tick_texts(bits_axes.xaxis)[19] == "19 fc"


def test_plan_plot_refuses_a_profile_of_another_model(tmp_path):
    from bitplan.errors import PlanError

    plan = make_plan(resnet20_profile(), factor="A", strategy="U", levels=[8])
    other = profile_from_gemms("other", [GemmShape("fc", 1, 4, 4, 1)])
    with pytest.raises(PlanError, match="not in the profile"):
        plot_plan(plan, other, tmp_path / "x.png")


def grid_result() -> GridResult:
    """A hand-made grid: factor A, strategies U, C+, C-, three seeds with large spreads."""
    from bitplan.compare.config import GridConfig
    from bitplan.train import TrainConfig

    config = GridConfig(train=TrainConfig(model="zoo:resnet20", data="digits", epochs=3), factors=["A"],
                        strategies=["U", "C+", "C-"], seeds=[0, 1, 2])
    rows = []
    for strategy, seeds in (("U", [90.0, 92.0, 94.0]), ("C+", [85.0, 91.0, 88.0]), ("C-", [93.0, 93.5, 92.5])):
        mean = sum(seeds) / 3
        variance = sum((value - mean) ** 2 for value in seeds) / 3
        runs = [SeedRun(seed=seed, status="ok", metric=value, epochs_done=3, seconds=1.0, run_dir=f"r{seed}")
                for seed, value in enumerate(seeds)]
        rows.append(CellRow(
            factor="A", strategy=strategy, shared=strategy == "U", plan_file="p.json", bits="4 to 8", mean=mean,
            variance=variance, std=math.sqrt(variance), ok=3, failed=0, pending=0, avg_bits=6.0, mbit=1.0,
            size_ratio_fp32=0.2, size_ratio_uniform=1.0, bitops_forward_ratio_fp32=0.1,
            bitops_training_ratio_fp32=0.2, bitops_training_ratio_uniform=1.0, histogram={6: 20}, runs=runs))
    return GridResult(bitplan_version="test", config=config, model="zoo:resnet20", data="digits",
                      metric_name=MetricName.accuracy, runs_total=9, runs_finished=9, rows=rows)


def test_compare_bar_labels_sit_above_their_error_bars(drawn):
    result = grid_result()
    factor_bars(result, "A")
    (figure,) = drawn
    assert_readable(figure)
    axes = figure.axes[0]
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    assert len(axes.texts) == 3
    for position, (row, label) in enumerate(zip(result.rows, axes.texts)):
        assert label.get_text() == f"{row.mean:.2f}"
        cap = axes.transData.transform((position, row.mean + row.std))[1]
        assert label.get_window_extent(renderer).y0 >= cap, f"label {label.get_text()} hides behind its error bar"
        assert axes.bbox.contains(*label.get_window_extent(renderer).p1), "label pushed out of the axes"


def test_compare_variance_figure_is_readable(drawn):
    variance_figure(grid_result())
    (figure,) = drawn
    assert_readable(figure)
    assert tick_texts(figure.axes[0].xaxis) == ["U", "C+", "C-"]


def test_training_curves_have_integer_epoch_ticks(drawn):
    lines = [{"epoch": epoch, "train_loss": 2.0 / epoch, "test_loss": 2.2 / epoch, "metric": 50.0 + epoch}
             for epoch in (1, 2, 3)]
    curves_figure({"seed 0": lines, "seed 1": lines}, MetricName.accuracy)
    (figure,) = drawn
    assert_readable(figure)
    for axes in figure.axes:
        assert_integer_ticks(axes.xaxis)


def test_sensitivity_scatter_is_a_grid_not_a_strip(drawn, tmp_path):
    layers = [LayerSensitivity(name=f"layer{i}", weight=f"layer{i}.weight", sensitivity=1.0 / (i + 1),
                               accumulation=9 * 2**i, weight_frequency=64 * (i + 1), depth=i + 1, params=16 * 2**i,
                               macs=1000 * (6 - i)) for i in range(6)]
    report = SensitivityReport(model="zoo:toy", fingerprint="f" * 16, data="digits", method="fisher", bits=4,
                               batches=2, batch_size=8, seed=0, initialization="random", seconds=0.1, layers=layers)
    report = report.model_copy(update={"validation": validate(report, resamples=20)})  # few resamples: fast
    scatter(report, tmp_path / "scatter.png")
    (figure,) = drawn
    assert_readable(figure)
    assert sum(axes.get_visible() and axes.axison for axes in figure.axes) == 5


@pytest.mark.parametrize("factor", ["accumulation", "frequency", "depth"])
def test_study_figures_are_readable(drawn, factor):
    config = StudyConfig(factors=[factor], bits=[4, 2], trials=2, size=8, accumulation=[9, 36, 144],
                         frequency=[64, 16, 9], depth=3)
    result = run_study(config)
    render_factor_png(result.factors[0], config)
    (figure,) = drawn
    assert_readable(figure)
    if factor == "depth":
        assert_integer_ticks(figure.axes[0].xaxis)


def test_the_suffix_picks_the_figure_format(tmp_path):
    """`--plot x.pdf` writes a PDF, `.svg` an SVG: PNG bytes under another suffix would not open."""
    from bitplan.figures import new_figure, save_png

    figure = new_figure(2, 2)
    figure.add_subplot().plot([0, 1], [1, 0])
    assert save_png(figure, tmp_path / "x.pdf").read_bytes().startswith(b"%PDF")
    assert b"<svg" in save_png(figure, tmp_path / "x.svg").read_bytes()[:400]
    assert save_png(figure, tmp_path / "x.PNG").read_bytes().startswith(b"\x89PNG")


def test_a_lookup_is_left_out_of_a_and_f_but_ranked_by_capacity(drawn, tmp_path):
    """An embedding table has no reduction or reuse (K = M = 0): A and F rank the GEMMs only."""
    gemms = [LayerSensitivity(name=f"fc{i}", weight=f"fc{i}.weight", sensitivity=float(i + 1), accumulation=8 * (i + 1),
                              weight_frequency=4 * (i + 1), depth=i + 2, params=64 * (i + 1), macs=512 * (i + 1))
             for i in range(4)]
    lookup = LayerSensitivity(name="tok_emb", weight="tok_emb.weight", sensitivity=100.0, accumulation=0,
                              weight_frequency=0, depth=1, params=4096, macs=0)
    report = SensitivityReport(model="zoo:toy", fingerprint="f" * 16, data="digits", method="fisher", bits=4,
                               batches=2, batch_size=8, seed=0, initialization="random", seconds=0.1,
                               layers=[lookup, *gemms])
    rows = {row.factor: row for row in validate(report, resamples=20)}
    assert rows["A"].layers == rows["F"].layers == 4 and rows["A"].spearman == pytest.approx(1.0)
    assert rows["capacity"].layers == 5 and rows["capacity"].spearman == pytest.approx(1.0)
    scatter(report, tmp_path / "scatter.png")
    (figure,) = drawn
    assert [len(axes.collections[0].get_offsets()) for axes in figure.axes[:5]] == [4, 4, 5, 5, 5]
