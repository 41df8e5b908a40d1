"""Every committed plan in ``plans/`` trains one step on synthetic data shaped like its model's input.

Each model is built once; every plan for it is applied, takes one SGD step on a synthetic batch
and is stripped again, so the whole folder costs a few seconds. The first plan of each model also
checks the fingerprint; the others share it (asserted).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from bitplan import quant
from bitplan.qat import apply, strip
from bitplan.data import Task, load_data
from bitplan.plan import load_plan
from bitplan.spec import load_model
from bitplan.train.loop import batch_loss

PLANS = sorted((Path(__file__).resolve().parent.parent / "plans").glob("*.json"))
_models: dict[str, tuple] = {}


def model_and_batch(spec: str) -> tuple:
    """The plan's model (built once), its initial weights, a synthetic batch of two, and the fingerprint."""
    if spec not in _models:
        torch.manual_seed(0)
        loaded = load_model(spec)
        data = load_data("synthetic?n=2&test_n=2", example_inputs=loaded.example_inputs)
        inputs, target = zip(*(data.train[i] for i in range(2)))
        batch = (torch.stack(inputs), torch.stack(target), data.task)
        if data.task is Task.classification:  # synthetic classes (10) fit any classifier head
            batch = (batch[0], batch[1] % 10, data.task)
        _models[spec] = (loaded, {k: v.clone() for k, v in loaded.model.state_dict().items()}, batch, set())
    return _models[spec]


@pytest.mark.parametrize("path", PLANS, ids=[path.stem for path in PLANS])
def test_committed_plan_trains_one_step(path):
    plan = load_plan(path)
    loaded, initial, (inputs, target, task), verified = model_and_batch(plan.model)
    model = loaded.model
    model.load_state_dict(initial)
    model.train()
    apply(model, plan, loaded.example_inputs, verify=plan.fingerprint not in verified)
    verified.add(plan.fingerprint)
    assert verified == {plan.fingerprint}, "plans of one model spec share its fingerprint"
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with quant.kernel_policy(compile=False):  # one step: a kernel compile would cost more than it saves
        loss, _, _ = batch_loss(model(inputs), target, task)
        loss.backward()
    optimizer.step()
    strip(model)
    assert math.isfinite(loss.item())
    moved = [name for name, value in model.state_dict().items() if value.is_floating_point() and not torch.equal(value, initial[name])]
    assert moved, "the step changed no weight"
