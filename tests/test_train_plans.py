"""Every committed plan in ``plans/`` trains one step on synthetic data shaped like its model's input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bitplan.plan import load_plan
from bitplan.spec import split_spec
from bitplan.train import TrainConfig, train_run
from bitplan.zoo import info

PLANS = sorted((Path(__file__).resolve().parent.parent / "plans").glob("*.json"))


def synthetic_spec(model: str) -> str:
    """Synthetic data sized for the model: its class count or vocabulary, two samples."""
    base, options = split_spec(model)
    defaults = {option.name: option.default for option in info(base.removeprefix("zoo:"), options).options}
    if "vocab" in defaults:
        return f"synthetic?n=2&test_n=2&vocab={defaults['vocab']}"
    return f"synthetic?n=2&test_n=2&classes={defaults['num_classes']}"


@pytest.mark.parametrize("path", PLANS, ids=[path.stem for path in PLANS])
def test_committed_plan_trains_one_step(path, tmp_path):
    plan = load_plan(path)
    config = TrainConfig(
        model=plan.model, data=synthetic_spec(plan.model), plan=plan, epochs=1, batch_size=2, lr=0.01,
        clip_grad_norm=1.0, threads=1, out=tmp_path,
    )
    result = train_run(config, progress=False)
    assert result.status == "ok", result.message
    assert math.isfinite(result.train_loss) and math.isfinite(result.test_loss)
