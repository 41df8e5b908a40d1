"""The language-model benchmark at a tiny size: the standard-library corpus, a transformer LM, a PTQ sweep."""

from __future__ import annotations

import math
import sysconfig
from pathlib import Path

import pytest
from stdlib_corpus import VALID_EVERY, stdlib_files, write_corpus

from bitplan.pareto import ParetoConfig, run_pareto
from bitplan.train import TrainConfig, evaluate_model, train_run

TINY_LM = "zoo:transformer_lm?d_model=16&n_layers=1&n_heads=2&d_ff=32&seq_len=16"


def test_the_corpus_is_this_pythons_standard_library_in_sorted_order(tmp_path: Path) -> None:
    files = stdlib_files()
    assert files == sorted(files, key=lambda p: p.name) and len(files) > 100
    assert all(path.parent == Path(sysconfig.get_paths()["stdlib"]) for path in files)
    train, valid = write_corpus(tmp_path / "a", train_chars=5000, valid_chars=1000)
    again = write_corpus(tmp_path / "b", train_chars=5000, valid_chars=1000)
    assert train.read_bytes() == again[0].read_bytes() and valid.read_bytes() == again[1].read_bytes()
    assert len(train.read_text()) == 5000 and len(valid.read_text()) == 1000
    first_train = files[0].read_text(encoding="utf-8", errors="replace")
    first_valid = files[VALID_EVERY - 1].read_text(encoding="utf-8", errors="replace")
    assert train.read_text().startswith((first_train + "\n")[:5000])  # the 1st file opens the training split
    assert valid.read_text().startswith((first_valid + "\n")[:1000])  # the 10th opens the validation split  # the 10th file opens the validation split


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> tuple[str, Path]:
    corpus = tmp_path_factory.mktemp("corpus")
    write_corpus(corpus, train_chars=12_000, valid_chars=3_000)
    data = f"text:{corpus}?level=char"
    out = tmp_path_factory.mktemp("lm") / "run"
    config = TrainConfig(model=TINY_LM, data=data, epochs=1, batch_size=16, optimizer="adamw", lr=0.01,
                         weight_decay=0.0, threads=1, out=out)
    assert train_run(config, progress=False).status == "ok"
    return data, out / "checkpoint.pt"


@pytest.mark.slow
def test_a_tiny_lm_sweep_reports_perplexity_and_its_points_reevaluate(tiny_lm, tmp_path: Path) -> None:
    data, checkpoint = tiny_lm
    config = ParetoConfig(model=TINY_LM, data=data, checkpoint=checkpoint, levels=[1, 2, 4, 8], budgets=[2.0, 3.0],
                          methods=["uniform", "random", "A:C-", "sqnr"], random_plans=2, weight_only=True,
                          sensitivity_batches=1, out=tmp_path / "sweep")
    result = run_pareto(config, progress=False)
    assert result.metric_name.value == "perplexity"
    assert result.baseline.metric == pytest.approx(math.exp(result.baseline.loss))
    for point in result.points:
        assert point.metric == pytest.approx(math.exp(point.loss)) and point.avg_bits <= point.budget + 1e-9
    uniform = {p.budget: p for p in result.points if p.method == "uniform"}
    assert set(uniform) == {2.0}  # 3 is no level of 1,2,4,8
    assert uniform[2.0].metric > result.baseline.metric  # 2-bit weights cost perplexity
    point = next(p for p in result.points if p.method == "sqnr")
    independent = evaluate_model(TINY_LM, data, checkpoint=checkpoint, plan=config.out / point.plan)
    assert independent.metric == point.metric and independent.predictions == point.predictions


def test_hessian_sensitivity_differentiates_attention_twice() -> None:
    """The Hutchinson probes need a second derivative, which torch's fused CPU attention kernel lacks."""
    from bitplan.sensitivity_analysis import measure_sensitivity

    report = measure_sensitivity(TINY_LM, "synthetic?task=language_model&vocab=20&shape=16", method="hessian",
                                 batches=1, probes=1, batch_size=8)
    assert len(report.layers) == 8 and all(math.isfinite(layer.sensitivity) for layer in report.layers)  # 7 GEMMs, 1 lookup
