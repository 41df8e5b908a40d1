"""The committed plans in ``plans/``: how they are made, and a drift check.

Run ``python scripts/regenerate_plans.py`` to rewrite them, ``--check`` to exit 1 when any differs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitplan.plan.grid import plan_filename
from bitplan.atomic import atomic_write_text
from bitplan.plan.io import plan_to_json
from bitplan.plan.planner import make_plan
from bitplan.plan.schema import BitPlan, Factor, Strategy
from bitplan.profile.schema import ModelProfile

PLANS_DIR = Path(__file__).resolve().parents[1] / "plans"
PAPER_FACTORS = (Factor.A, Factor.F, Factor.D)


@dataclass(frozen=True)
class PlanSet:
    """Plans of one model: the paper's factor × strategy grid at one range, plus DPC presets."""

    model: str
    bits: tuple[int, int]
    dpc_capacities: tuple[str, ...] = ("params",)
    options: dict[str, Any] = field(default_factory=dict)


PLAN_SETS = (
    PlanSet("zoo:resnet20", (4, 8), dpc_capacities=("params", "macs")),
    PlanSet("zoo:transformer_lm", (6, 8)),
    PlanSet("zoo:lstm2", (6, 8)),
)


def plans_of(plan_set: PlanSet, profile: ModelProfile | None = None) -> Iterator[BitPlan]:
    """Every committed plan of one model (profiles it once unless ``profile`` is given)."""
    if profile is None:
        from bitplan.spec import profile_spec

        profile = profile_spec(plan_set.model)
    for factor in PAPER_FACTORS:
        for strategy in Strategy.paper():
            yield make_plan(profile, factor=factor, strategy=strategy, bits=plan_set.bits, **plan_set.options)
    for capacity in plan_set.dpc_capacities:
        yield make_plan(profile, preset="dpc", capacity=capacity, bits=plan_set.bits, **plan_set.options)


def committed_plans(profiles: Mapping[str, ModelProfile] | None = None) -> dict[str, str]:
    """File name -> exact file text of every plan that belongs in ``plans/``.

    Args:
        profiles: Profiles by model spec, to skip profiling (tests share them).
    """
    profiles = profiles or {}
    return {
        plan_filename(plan): plan_to_json(plan)
        for plan_set in PLAN_SETS
        for plan in plans_of(plan_set, profiles.get(plan_set.model))
    }


def drift(directory: Path = PLANS_DIR, profiles: Mapping[str, ModelProfile] | None = None) -> list[str]:
    """Names of plan files that are missing, stale, or not produced by ``PLAN_SETS``."""
    expected = committed_plans(profiles)
    present = {path.name for path in directory.glob("*.json")}
    stale = [
        name
        for name, text in expected.items()
        if name not in present or (directory / name).read_text(encoding="utf-8") != text
    ]
    return sorted(stale + [name for name in present if name not in expected])


def regenerate(directory: Path = PLANS_DIR) -> list[Path]:
    """Rewrite every committed plan; remove plan files no plan set produces."""
    expected = committed_plans()
    for path in directory.glob("*.json"):
        if path.name not in expected:
            path.unlink()
    return [atomic_write_text(directory / name, text) for name, text in expected.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", nargs="?", type=Path, default=PLANS_DIR)
    parser.add_argument("--check", action="store_true", help="Exit 1 when a committed plan drifted.")
    args = parser.parse_args(argv)
    if args.check:
        stale = drift(args.directory)
        for name in stale:
            print(f"drifted: {args.directory / name}")
        return 1 if stale else 0
    for path in regenerate(args.directory):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
