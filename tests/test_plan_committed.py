"""The plans committed in plans/: regenerated in memory they must not drift, and each checks clean."""

from __future__ import annotations

import pytest

from bitplan.plan import check_plan, load_plan
from regenerate_plans import PLAN_SETS, PLANS_DIR, committed_plans, drift
from bitplan.profile.schema import ModelProfile


@pytest.fixture(scope="module")
def profiles() -> dict[str, ModelProfile]:
    from bitplan.spec import profile_spec

    return {plan_set.model: profile_spec(plan_set.model) for plan_set in PLAN_SETS}


def test_committed_plans_match_a_fresh_regeneration(profiles: dict[str, ModelProfile]) -> None:
    stale = drift(PLANS_DIR, profiles)
    assert stale == [], f"plans drifted: {stale}; run `python scripts/regenerate_plans.py` and commit plans/"


def test_the_set_covers_the_paper_grid_and_dpc(profiles: dict[str, ModelProfile]) -> None:
    names = set(committed_plans(profiles))
    for factor in "AFD":
        for strategy in ("U", "Cplus", "Cminus", "R"):
            assert f"resnet20_{factor}_{strategy}_4-8.json" in names
            assert f"transformer_lm_{factor}_{strategy}_6-8.json" in names
            assert f"lstm2_{factor}_{strategy}_6-8.json" in names
    assert "resnet20_dpc-capacity_4-8.json" in names


def test_every_committed_plan_checks_clean(profiles: dict[str, ModelProfile]) -> None:
    paths = sorted(PLANS_DIR.glob("*.json"))
    assert len(paths) == len(committed_plans(profiles))
    for path in paths:
        plan = load_plan(path)
        report = check_plan(path, profile=profiles[plan.model])
        assert report.ok, (path.name, report.violations)
