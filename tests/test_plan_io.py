"""Plan files: round trips, refusal of unknown versions and malformed files, fingerprints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bitplan.errors import PlanError
from bitplan.plan import BitPlan, load_plan, make_plan, save_plan, verify_fingerprint
from bitplan.plan.synthetic import GemmShape, profile_from_gemms, resnet20_profile
from bitplan.schemas import SCHEMAS, schema_of

RESNET20 = resnet20_profile()


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    plan = make_plan(RESNET20, factor="A", strategy="R", seed=3, keep=["last"])
    path = save_plan(plan, tmp_path / "sub" / "plan.json")
    assert load_plan(path) == plan
    assert json.loads(path.read_text())["schema_version"] == 1
    assert not list((tmp_path / "sub").glob(".*.tmp"))  # atomic write left no temporary file


def test_bits_by_weight_and_by_name() -> None:
    plan = make_plan(RESNET20, factor="A", strategy="C-")
    assert plan.bits_by_weight()["layer1.0.conv1.weight"] == 6
    assert plan.bits_by_name()["layer1.0.conv1"] == 6
    assert len(plan.bits_by_weight()) == len(plan.bits_by_name()) == 20


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    data = make_plan(RESNET20, factor="A", strategy="U").model_dump(mode="json")
    with pytest.raises(PlanError, match="schema_version 2, but this bitplan reads version 1"):
        load_plan(write(tmp_path, {**data, "schema_version": 2}))


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"not valid JSON \(line 1, column 2"):
        load_plan(write(tmp_path, "{oops"))


def test_invalid_field_shows_the_pydantic_path(tmp_path: Path) -> None:
    data = make_plan(RESNET20, factor="A", strategy="U").model_dump(mode="json")
    data["layers"][3]["bits"] = 40
    data["strategy"] = "sideways"
    with pytest.raises(PlanError) as error:
        load_plan(write(tmp_path, data))
    assert "layers.3.bits: Input should be less than or equal to 32" in str(error.value)
    assert "strategy: Input should be 'U', 'C+', 'C-', 'R' or 'opt'" in str(error.value)


def test_unknown_fields_are_refused(tmp_path: Path) -> None:
    data = make_plan(RESNET20, factor="A", strategy="U").model_dump(mode="json")
    with pytest.raises(PlanError, match="colour: Extra inputs are not permitted"):
        load_plan(write(tmp_path, {**data, "colour": "red"}))


def test_missing_file_is_a_plan_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="does not exist. Make one with `bitplan plan"):
        load_plan(tmp_path / "nope.json")


def test_a_shared_weight_with_two_widths_is_invalid() -> None:
    profile = profile_from_gemms(
        "tied", [GemmShape("a", 2, 4, 4, 1, weight="w"), GemmShape("b", 2, 4, 4, 2, weight="w")]
    )
    data = make_plan(profile, factor="D", strategy="C+").model_dump()
    data["layers"][1]["bits"] = 5
    with pytest.raises(ValueError, match="weight `w` is shared by several GEMMs with different bits"):
        BitPlan.model_validate(data)


def test_verify_fingerprint_refuses_another_model() -> None:
    plan = make_plan(RESNET20, factor="A", strategy="C-")
    verify_fingerprint(plan, RESNET20)
    other = profile_from_gemms("other", [GemmShape("fc", 1, 64, 10, 1)])
    with pytest.raises(PlanError, match="made for model `zoo:resnet20` .* but this model `other` has fingerprint"):
        verify_fingerprint(plan, other)


def test_plan_is_frozen() -> None:
    plan = make_plan(RESNET20, factor="A", strategy="U")
    with pytest.raises(ValueError):
        plan.seed = 4  # type: ignore[misc]


@pytest.mark.parametrize("name", ["plan", "plan_grid", "plan_check"])
def test_schemas_are_registered(name: str) -> None:
    assert name in SCHEMAS
    assert schema_of(name)["type"] == "object"
